"""SKILD's schedules (Chen et al., 2026): damping time, wavenumbers, per-mode signal fraction
and the effective resolution."""

from __future__ import annotations

import math

import torch

from ._checks import check_int, check_real, check_shape2, check_time

__all__ = ["skild_alphabar", "skild_effective_band", "skild_lambda", "skild_wavenumber2"]


# ---------------------------------------------------------------------------------------------
# SKILD (Chen et al., 2026)
# ---------------------------------------------------------------------------------------------


def skild_lambda(t, H: int, *, lambda_f: float = 1.57, theta: float = 5.0) -> torch.Tensor:
    """SKILD's damping time ``lambda(t)``, the schedule linear in wavenumber.

    Parameters
    ----------
    t : float or Tensor, any shape
        Time ``t = n / N`` in ``[0, 1]``.
    H : int
        Image height; sets ``lambda_i = sqrt(2) pi (H - 1)``, the largest ``|k|`` of an
        ``H x H`` grid.
    lambda_f : float, default 1.57
        Cutoff wavenumber at ``t = 1``; positive.
    theta : float, default 5.0
        Positive scale.

    Returns
    -------
    Tensor, shape of ``t``
        ``lambda(t) = theta t / (lambda_i (1 - t) + lambda_f)^2``: 0 at ``t = 0``, increasing.

    Notes
    -----
    SKILD code ``compute_lambda_schedule(schedule="linear")``; the cutoff
    ``k_f(t) = lambda_i (1 - t) + lambda_f`` falls linearly in ``t``. Defaults are the
    generation config (CIFAR-10).

    Examples
    --------
    >>> round(skild_lambda(1.0, 32).item(), 6)  # theta / lambda_f^2
    2.02848
    """
    where = "skild_lambda"
    t64, dtype = check_time(where, "t", t)
    H = check_int(where, "H", H, 1)
    lambda_f = check_real(where, "lambda_f", lambda_f, low=0.0)
    theta = check_real(where, "theta", theta, low=0.0)
    lambda_i = math.sqrt(2) * math.pi * (H - 1)
    return (theta * t64 / (lambda_i * (1 - t64) + lambda_f) ** 2).to(dtype)


def skild_wavenumber2(shape) -> torch.Tensor:
    """Squared modal wavenumbers ``|k|^2`` of the DCT grid, ``k = (pi u, pi v)``.

    Parameters
    ----------
    shape : (int, int)
        Image size ``(H, W)``.

    Returns
    -------
    Tensor, shape (H, W), float64
        ``(pi u)^2 + (pi v)^2``, ``u = 0 .. H - 1``, ``v = 0 .. W - 1`` (SKILD
        ``make_k_grid_dct``: Neumann modes of the unit square, no ``1 / H``).

    Examples
    --------
    >>> skild_wavenumber2((2, 3)) / torch.pi**2
    tensor([[0., 1., 4.],
            [1., 2., 5.]], dtype=torch.float64)
    """
    H, W = check_shape2("skild_wavenumber2", "shape", shape)
    u = (math.pi * torch.arange(H, dtype=torch.float64)) ** 2
    v = (math.pi * torch.arange(W, dtype=torch.float64)) ** 2
    return u[:, None] + v[None, :]


def skild_alphabar(
    t, shape, *, k_c: float = 3.0, lambda_f: float = 1.57, theta: float = 5.0
) -> torch.Tensor:
    """SKILD's per-mode signal fraction ``alphabar_t(k) = exp(-max(|k|^2, k_c^2) lambda(t))``.

    Parameters
    ----------
    t : float or Tensor, shape (\\*batch)
        Time ``t = n / N`` in ``[0, 1]``.
    shape : (int, int)
        Image size ``(H, W)``; ``lambda_i`` is taken from ``H`` (:func:`skild_lambda`).
    k_c : float, default 3.0
        Floor on ``|k|`` so that the DC and lowest modes are damped too; ``>= 0``.
    lambda_f, theta : float
        See :func:`skild_lambda`.

    Returns
    -------
    Tensor, shape (\\*batch, H, W)
        Per mode of the orthonormal DCT; 1 at ``t = 0``, strictly decreasing in ``t`` for
        every mode with ``max(|k|, k_c) > 0``. The marginal is
        ``X_t(k) = sqrt(alphabar) X_0(k) + sqrt((1 - alphabar) S_0(k)) eps(k)``.

    Examples
    --------
    >>> ab = skild_alphabar(torch.tensor([0.0, 0.5, 1.0]), (8, 8))
    >>> ab.shape, ab[0].min().item(), bool((ab[1] > ab[2]).all())
    (torch.Size([3, 8, 8]), 1.0, True)
    """
    where = "skild_alphabar"
    H, W = check_shape2(where, "shape", shape)
    k_c = check_real(where, "k_c", k_c, low=0.0, open_low=False)
    lam = skild_lambda(t, H, lambda_f=lambda_f, theta=theta)
    k2 = skild_wavenumber2((H, W)).to(lam.device).clamp(min=k_c**2)
    return torch.exp(-k2 * lam.to(torch.float64)[..., None, None]).to(lam.dtype)


def skild_effective_band(
    t, H: int, *, tau: float = 0.1, lambda_f: float = 1.57, theta: float = 5.0
) -> torch.Tensor:
    """SKILD's effective resolution ``r_eff(t)``: the band still above a per-mode SNR.

    Parameters
    ----------
    t : float or Tensor, any shape
        Time ``t = n / N`` in ``[0, 1]``.
    H : int
        Image height (see :func:`skild_lambda`).
    tau : float, default 0.1
        SNR threshold; positive.
    lambda_f, theta : float
        See :func:`skild_lambda`.

    Returns
    -------
    Tensor, shape of ``t``
        ``r_eff(t) = sqrt(ln(1 + 1/tau) / lambda(t)) / (sqrt(2) pi)``, in pixels of
        resolution; ``inf`` at ``t = 0``, decreasing.

    Notes
    -----
    With ``S_0`` the data's per-mode power, the per-mode SNR is ``alphabar / (1 - alphabar)``;
    it is ``>= tau`` exactly for ``|k|^2 <= ln(1 + 1/tau) / lambda(t)``. Dividing ``|k|`` by
    ``sqrt(2) pi`` turns the diagonal wavenumber of an ``r x r`` grid into ``r - 1 ~ r``.
    Super-resolution from an ``r``-pixel input starts where ``r_eff`` first drops to ``r``.

    Examples
    --------
    >>> # SKILD's ImageNet-128 8x config: the end of the chain is the 16-pixel band
    >>> r = skild_effective_band(1.0, 128, lambda_f=102.6489, theta=5.0)
    >>> round(r.item(), 3)
    16.0
    """
    where = "skild_effective_band"
    tau = check_real(where, "tau", tau, low=0.0)
    lam = skild_lambda(t, H, lambda_f=lambda_f, theta=theta)
    lam64 = lam.to(torch.float64)
    r = torch.sqrt(math.log1p(1 / tau) / lam64) / (math.sqrt(2) * math.pi)
    return r.to(lam.dtype)
