"""Schedules of the linear diffusion family: noise, resolution, blur and damping.

Free functions of the timestep that return tensors; the processes combine
them with :mod:`linops` operators. Everything is computed in float64.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "alphas_cumprod",
    "bd_alpha_sigma",
    "bd_blur_sigma",
    "bd_dissipation",
    "convex_decay_levels",
    "cosine_betas",
    "equal_levels",
    "linear_betas",
    "min_snr_weight",
    "pyramid",
    "skild_alphabar",
    "skild_effective_band",
    "skild_lambda",
    "skild_wavenumber2",
    "truncated_cosine_logsnr",
]

# Relative slack when a resolution level boundary falls exactly on a timestep (see
# convex_decay_levels). Distinct timesteps put x * n at least ~1e-6 from an integer for
# T <= 1e5 and n <= 64, so the slack never moves a timestep that is off a boundary.
_BOUNDARY_SLACK = 1e-9


# ---------------------------------------------------------------------------------------------
# argument checks shared by the schedule and spectrum functions
# ---------------------------------------------------------------------------------------------


def _int(value, where: str, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: expected {what} as an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: expected {what} >= {minimum}, got {value!r}")
    return int(value)


def _real(value, where: str, what: str, *, low=None, high=None, open_low=True, open_high=True):
    """A finite Python float within an interval (open or closed at each end)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: expected {what} as a real number, got {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad = bad or (value <= low if open_low else value < low)
    if high is not None:
        bad = bad or (value >= high if open_high else value > high)
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = ("(" if open_low else "[") + f"{lo}, {hi}" + (")" if open_high else "]")
        raise ValueError(f"{where}: expected {what} in {interval}, got {value!r}")
    return value


def _shape2(shape, where: str) -> tuple[int, int]:
    """An ``(H, W)`` image shape of positive ints."""
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(
            f"{where}: expected shape as (H, W), got {shape!r}. Pass x.shape[-2:] for an image x"
        )
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"{where}: expected shape as (H, W) of positive ints, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _time(t, where: str) -> tuple[torch.Tensor, torch.dtype]:
    """Continuous time in [0, 1] as float64, and the dtype to return results in.

    A floating tensor keeps its dtype and device for the result; a Python number or an
    integer tensor gives float64.
    """
    if isinstance(t, torch.Tensor):
        if t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{where}: expected t as a real tensor or number, got dtype {t.dtype}")
        out_dtype = t.dtype if t.is_floating_point() else torch.float64
        t64 = t.to(torch.float64)
    elif isinstance(t, numbers.Real) and not isinstance(t, bool):
        out_dtype = torch.float64
        t64 = torch.tensor(float(t), dtype=torch.float64)
    else:
        raise TypeError(f"{where}: expected t as a real tensor or number, got {t!r}")
    if t64.numel() and not bool(((t64 >= 0) & (t64 <= 1)).all()):
        bad = t64[~((t64 >= 0) & (t64 <= 1))].flatten()[0].item()
        raise ValueError(f"{where}: expected t in [0, 1], got a value {bad!r}")
    return t64, out_dtype


# ---------------------------------------------------------------------------------------------
# noise schedules (DDPM, iDDPM)
# ---------------------------------------------------------------------------------------------


def linear_betas(
    T: int = 1000, *, beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """DDPM's linear variance schedule.

    Parameters
    ----------
    T : int, default 1000
        Number of diffusion steps.
    beta_start, beta_end : float, default 1e-4 and 0.02
        ``beta_1`` and ``beta_T``, with ``0 < beta_start <= beta_end < 1``.

    Returns
    -------
    Tensor, shape (T,), float64
        ``betas[i] = beta_{i+1}``: index 0 is step 1.

    Notes
    -----
    Ho et al. (2020), Sec. 4: ``beta_t`` linear from ``1e-4`` to ``0.02`` over ``T = 1000``.
    The endpoints are used as given (guided-diffusion rescales them by ``1000 / T``; pass
    scaled values for that convention).

    Examples
    --------
    >>> b = linear_betas(1000)
    >>> b.shape, b.dtype, b[0].item(), b[-1].item()
    (torch.Size([1000]), torch.float64, 0.0001, 0.02)
    """
    where = "linear_betas"
    T = _int(T, where, "T")
    beta_start = _real(beta_start, where, "beta_start", low=0.0, high=1.0)
    beta_end = _real(beta_end, where, "beta_end", low=0.0, high=1.0)
    if beta_end < beta_start:
        raise ValueError(
            f"{where}: expected beta_start <= beta_end, got beta_start={beta_start!r}, "
            f"beta_end={beta_end!r}"
        )
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int = 1000, *, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule of improved DDPM.

    Parameters
    ----------
    T : int, default 1000
        Number of diffusion steps.
    s : float, default 0.008
        Offset that keeps ``beta_1`` from being vanishingly small; ``s >= 0``.
    max_beta : float, default 0.999
        Clip on each ``beta_t`` (the last steps would otherwise reach 1); in ``(0, 1]``.

    Returns
    -------
    Tensor, shape (T,), float64
        ``betas[i] = beta_{i+1}``: index 0 is step 1.

    Notes
    -----
    Nichol & Dhariwal (2021), Eq. 17: ``f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2)``,
    ``alphabar_t = f(t) / f(0)``, ``beta_t = min(1 - alphabar_t / alphabar_{t-1}, max_beta)``.

    Examples
    --------
    >>> b = cosine_betas(1000)
    >>> b.shape, round(b[0].item(), 8), b[-1].item()
    (torch.Size([1000]), 4.128e-05, 0.999)
    """
    where = "cosine_betas"
    T = _int(T, where, "T")
    s = _real(s, where, "s", low=0.0, open_low=False)
    max_beta = _real(max_beta, where, "max_beta", low=0.0, high=1.0, open_high=False)
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * (math.pi / 2)) ** 2
    alphabar = f / f[0]
    return torch.clamp(1 - alphabar[1:] / alphabar[:-1], max=max_beta)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """``alphabar_t = prod_{i <= t} (1 - beta_i)``.

    Parameters
    ----------
    betas : Tensor, shape (T,)
        Floating, each in ``(0, 1]``.

    Returns
    -------
    Tensor, shape (T,)
        Same dtype and device as ``betas`` (the product runs in float64).

    Examples
    --------
    >>> alphas_cumprod(torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64))
    tensor([0.5000, 0.2500, 0.1250], dtype=torch.float64)
    """
    where = "alphas_cumprod"
    if not isinstance(betas, torch.Tensor):
        raise TypeError(f"alphas_cumprod: expected betas as a Tensor, got {type(betas).__name__}")
    if betas.ndim != 1 or not betas.is_floating_point():
        raise ValueError(
            f"{where}: expected betas as a floating 1-D tensor, got shape "
            f"{tuple(betas.shape)} and dtype {betas.dtype}"
        )
    b = betas.to(torch.float64)
    if not bool(((b > 0) & (b <= 1)).all()):
        bad = b[~((b > 0) & (b <= 1))][0].item()
        raise ValueError(f"{where}: expected every beta in (0, 1], got {bad!r}")
    return torch.cumprod(1 - b, dim=0).to(betas.dtype)


def min_snr_weight(snr: torch.Tensor, *, gamma: float = 5.0) -> torch.Tensor:
    """Min-SNR-gamma loss weight, ``min(SNR, gamma)``.

    Parameters
    ----------
    snr : Tensor, any shape
        Signal-to-noise ratio, ``SNR_t = alphabar_t / (1 - alphabar_t)``; ``inf`` allowed.
    gamma : float, default 5.0
        The clip; positive.

    Returns
    -------
    Tensor, same shape and dtype as ``snr``

    Notes
    -----
    Hang et al. (2023); SSD Eq. 7 uses it with ``gamma = 5``. The weight multiplies the
    squared error of the **clean-image (x0) prediction** (for SSD: the image at the next
    resolution, ``A_{t-1} x_0 / a_{t-1}``), with the SNR taken at the input step ``t``. Under
    x0-prediction the plain SNR weight is equivalent to epsilon-prediction's unweighted loss;
    an epsilon-prediction loss would need ``min(SNR, gamma) / SNR`` instead.

    Examples
    --------
    >>> min_snr_weight(torch.tensor([0.5, 5.0, 80.0, float("inf")]))
    tensor([0.5000, 5.0000, 5.0000, 5.0000])
    """
    where = "min_snr_weight"
    if not isinstance(snr, torch.Tensor) or not snr.is_floating_point():
        raise TypeError(f"{where}: expected snr as a floating tensor, got {snr!r}")
    gamma = _real(gamma, where, "gamma", low=0.0)
    if bool((snr < 0).any()) or bool(snr.isnan().any()):
        raise ValueError(f"{where}: expected snr >= 0, got a minimum of {snr.min().item()!r}")
    return torch.clamp(snr, max=gamma)


# ---------------------------------------------------------------------------------------------
# resolution schedules (Scale Space Diffusion)
# ---------------------------------------------------------------------------------------------


def pyramid(max_res: int, n_levels: int) -> tuple[int, ...]:
    """The resolutions ``max_res / 2^i``, ``i = 0 .. n_levels - 1``, in ascending order.

    Parameters
    ----------
    max_res : int
        The finest resolution; divisible by ``2^(n_levels - 1)``.
    n_levels : int
        Number of levels, ``>= 1``.

    Returns
    -------
    tuple of int, length n_levels
        Ascending, so index ``n_levels - 1`` is ``max_res`` (the convention of
        :func:`convex_decay_levels`).

    Examples
    --------
    >>> pyramid(64, 4)
    (8, 16, 32, 64)
    """
    where = "pyramid"
    max_res = _int(max_res, where, "max_res")
    n_levels = _int(n_levels, where, "n_levels")
    factor = 2 ** (n_levels - 1)
    if max_res % factor:
        raise ValueError(
            f"{where}: expected max_res divisible by 2^(n_levels - 1) = {factor}, got "
            f"max_res={max_res}. Use fewer levels or a resolution divisible by {factor}"
        )
    return tuple(max_res // 2**i for i in reversed(range(n_levels)))


def convex_decay_levels(T: int, n_levels: int, *, gamma: float = 0.5) -> torch.Tensor:
    """SSD's ``ConvexDecay_gamma`` resolution schedule: the level of each timestep.

    Parameters
    ----------
    T : int
        Number of timesteps (code timesteps ``t = 0 .. T - 1``).
    n_levels : int
        Number of resolution levels ``n``.
    gamma : float, default 0.5
        Positive; ``gamma < 1`` keeps more steps at the finest level. ``gamma = 1`` is
        :func:`equal_levels`.

    Returns
    -------
    LongTensor, shape (T,)
        Index into the resolutions sorted ascending (:func:`pyramid`): ``n - 1`` is the finest.
        Non-increasing in ``t``.

    Notes
    -----
    ``tau = t / (T - 1)``, ``x = 1 - (1 - tau)^gamma``,
    ``level = n - 1 - min(floor(x n), n - 1)`` (SSD code ``get_resolution_scale_space``;
    ``T = 1`` gives the finest level). With 4 levels and ``T = 1000``:
    ``t in [0, 437]`` -> 3, ``[438, 749]`` -> 2, ``[750, 936]`` -> 1, ``[937, 999]`` -> 0.

    Boundaries: computed in float64. Where ``x n`` is mathematically an integer ``k`` (e.g.
    ``T = 17``, ``gamma = 0.5``, ``t = 7``: ``x = 1/4``), the timestep belongs to the coarser
    side, as ``floor`` says; a relative slack of 1e-9 makes this hold when rounding leaves
    ``x n`` a few ulps below ``k``. Timesteps off a boundary are never moved by it. The
    result equals the rule evaluated in exact arithmetic; SSD's code (plain Python floats)
    can land on either side of an exact boundary: with 6 levels and ``T = 1000``, ``t = 888``
    (``x = 2/3``) is level 1 here and level 2 there, the only difference at that size.

    Examples
    --------
    >>> lv = convex_decay_levels(1000, 4)
    >>> [int(lv[t]) for t in (0, 437, 438, 749, 750, 936, 937, 999)]
    [3, 3, 2, 2, 1, 1, 0, 0]
    """
    where = "convex_decay_levels"
    T = _int(T, where, "T")
    n = _int(n_levels, where, "n_levels")
    gamma = _real(gamma, where, "gamma", low=0.0)
    if T == 1:
        return torch.full((1,), n - 1, dtype=torch.long)
    tau = torch.arange(T, dtype=torch.float64) / (T - 1)
    x = 1 - (1 - tau) ** gamma
    k = torch.floor(x * n + _BOUNDARY_SLACK * n).long().clamp(0, n - 1)
    return n - 1 - k


def equal_levels(T: int, n_levels: int) -> torch.Tensor:
    """SSD's ``equal`` resolution schedule: equal shares of timesteps per level.

    Parameters
    ----------
    T : int
        Number of timesteps (``t = 0 .. T - 1``).
    n_levels : int
        Number of resolution levels ``n``.

    Returns
    -------
    LongTensor, shape (T,)
        Index into the ascending resolutions; ``n - 1`` (finest) for the smallest ``t``.

    Notes
    -----
    :func:`convex_decay_levels` with ``gamma = 1``, ``level = n - 1 - min(floor(t n / (T - 1)),
    n - 1)``, evaluated in integer arithmetic (no rounding at boundaries). The shares differ by
    at most one step, and are all ``T / n`` when ``n`` divides ``T``.

    Examples
    --------
    >>> equal_levels(8, 4)
    tensor([3, 3, 2, 2, 1, 1, 0, 0])
    """
    where = "equal_levels"
    T = _int(T, where, "T")
    n = _int(n_levels, where, "n_levels")
    if T == 1:
        return torch.full((1,), n - 1, dtype=torch.long)
    t = torch.arange(T, dtype=torch.long)
    return n - 1 - torch.div(t * n, T - 1, rounding_mode="floor").clamp(max=n - 1)


# ---------------------------------------------------------------------------------------------
# Blurring Diffusion (Hoogeboom & Salimans, 2023)
# ---------------------------------------------------------------------------------------------


def truncated_cosine_logsnr(t, *, l_min: float = -10.0, l_max: float = 10.0) -> torch.Tensor:
    """Truncated cosine log-SNR schedule for continuous time.

    Parameters
    ----------
    t : float or Tensor, any shape
        Time in ``[0, 1]``.
    l_min, l_max : float, default -10 and 10
        Log-SNR at ``t = 1`` and ``t = 0``; ``l_min < l_max``.

    Returns
    -------
    Tensor, shape of ``t``
        ``l_t``, float64 (or ``t``'s floating dtype), decreasing from ``l_max`` to ``l_min``.

    Notes
    -----
    ``l_t = -2 log tan(c1 t + c0)``, ``c0 = arctan(exp(-l_max / 2))``,
    ``c1 = arctan(exp(-l_min / 2)) - c0`` (Blurring Diffusion pseudo-code).

    Examples
    --------
    >>> l = truncated_cosine_logsnr(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    >>> [round(v, 9) for v in l.tolist()]
    [10.0, 0.0, -10.0]
    """
    where = "truncated_cosine_logsnr"
    t64, dtype = _time(t, where)
    l_min = _real(l_min, where, "l_min")
    l_max = _real(l_max, where, "l_max")
    if not l_min < l_max:
        raise ValueError(f"{where}: expected l_min < l_max, got l_min={l_min!r}, l_max={l_max!r}")
    c0 = math.atan(math.exp(-l_max / 2))
    c1 = math.atan(math.exp(-l_min / 2)) - c0
    return (-2 * torch.log(torch.tan(c1 * t64 + c0))).to(dtype)


def bd_alpha_sigma(
    t, *, l_min: float = -10.0, l_max: float = 10.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blurring Diffusion's signal and noise scales ``(a_t, sigma_t)``.

    Parameters
    ----------
    t : float or Tensor, any shape
        Time in ``[0, 1]``.
    l_min, l_max : float
        See :func:`truncated_cosine_logsnr`.

    Returns
    -------
    a_t, sigma_t : Tensor, shape of ``t``
        ``a_t = sqrt(sigmoid(l_t))``, ``sigma_t = sqrt(sigmoid(-l_t))``; ``a^2 + sigma^2 = 1``.

    Examples
    --------
    >>> a, s = bd_alpha_sigma(0.5)
    >>> round(a.item() ** 2, 12), round(s.item() ** 2, 12)
    (0.5, 0.5)
    """
    logsnr = truncated_cosine_logsnr(t, l_min=l_min, l_max=l_max)
    l64 = logsnr.to(torch.float64)
    a = torch.sqrt(torch.sigmoid(l64)).to(logsnr.dtype)
    sigma = torch.sqrt(torch.sigmoid(-l64)).to(logsnr.dtype)
    return a, sigma


def bd_blur_sigma(t, *, sigma_b_max: float = 20.0) -> torch.Tensor:
    """Blurring Diffusion's blur width ``sigma_B(t) = sigma_b_max sin^2(pi t / 2)``.

    Parameters
    ----------
    t : float or Tensor, any shape
        Time in ``[0, 1]``.
    sigma_b_max : float, default 20.0
        Blur width at ``t = 1``, in pixels; ``>= 0``.

    Returns
    -------
    Tensor, shape of ``t``
        Increasing from 0 to ``sigma_b_max``.

    Examples
    --------
    >>> s = bd_blur_sigma(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    >>> [round(v, 12) for v in s.tolist()]
    [0.0, 10.0, 20.0]
    """
    where = "bd_blur_sigma"
    t64, dtype = _time(t, where)
    sigma_b_max = _real(sigma_b_max, where, "sigma_b_max", low=0.0, open_low=False)
    return (sigma_b_max * torch.sin(math.pi * t64 / 2) ** 2).to(dtype)


def bd_dissipation(t, shape, *, sigma_b_max: float = 20.0, d_min: float = 0.001) -> torch.Tensor:
    """Blurring Diffusion's per-DCT-mode dissipation ``d_t``.

    Parameters
    ----------
    t : float or Tensor, shape (\\*batch)
        Time in ``[0, 1]``.
    shape : (int, int)
        Image size ``(H, W)``.
    sigma_b_max : float, default 20.0
        See :func:`bd_blur_sigma`.
    d_min : float, default 0.001
        Floor of the dissipation, in ``[0, 1)``.

    Returns
    -------
    Tensor, shape (\\*batch, H, W)
        ``d_t`` per mode of the orthonormal DCT (:func:`linops.dct2`); ``1`` at ``t = 0``
        and for the DC mode. ``A_t = V diag(a_t d_t) V^T``.

    Notes
    -----
    ``d_t = (1 - d_min) exp(-lambda tau_t) + d_min``, ``tau_t = sigma_B(t)^2 / 2``,
    ``lambda_ij = (pi i / H)^2 + (pi j / W)^2``, ``i, j = 0 .. H - 1, 0 .. W - 1``:
    ``exp(-lambda tau)`` is the heat equation with Neumann boundaries run for time ``tau``,
    i.e. a Gaussian blur of standard deviation ``sigma_B`` pixels (Hoogeboom & Salimans 2023).

    Examples
    --------
    >>> d = bd_dissipation(torch.tensor([0.0, 1.0], dtype=torch.float64), (4, 4))
    >>> d.shape, d[0].min().item(), d[1, 0, 0].item(), round(d[1, 3, 3].item(), 6)
    (torch.Size([2, 4, 4]), 1.0, 1.0, 0.001)
    """
    where = "bd_dissipation"
    t64, dtype = _time(t, where)
    H, W = _shape2(shape, where)
    sigma_b_max = _real(sigma_b_max, where, "sigma_b_max", low=0.0, open_low=False)
    d_min = _real(d_min, where, "d_min", low=0.0, high=1.0, open_low=False)
    sigma_b = bd_blur_sigma(t64, sigma_b_max=sigma_b_max)
    tau = (sigma_b**2 / 2)[..., None, None]
    fh = (math.pi * torch.arange(H, dtype=torch.float64, device=t64.device) / H) ** 2
    fw = (math.pi * torch.arange(W, dtype=torch.float64, device=t64.device) / W) ** 2
    lam = fh[:, None] + fw[None, :]
    return ((1 - d_min) * torch.exp(-lam * tau) + d_min).to(dtype)


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
    t64, dtype = _time(t, where)
    H = _int(H, where, "H")
    lambda_f = _real(lambda_f, where, "lambda_f", low=0.0)
    theta = _real(theta, where, "theta", low=0.0)
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
    H, W = _shape2(shape, "skild_wavenumber2")
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
    H, W = _shape2(shape, where)
    k_c = _real(k_c, where, "k_c", low=0.0, open_low=False)
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
    tau = _real(tau, where, "tau", low=0.0)
    lam = skild_lambda(t, H, lambda_f=lambda_f, theta=theta)
    lam64 = lam.to(torch.float64)
    r = torch.sqrt(math.log1p(1 / tau) / lam64) / (math.sqrt(2) * math.pi)
    return r.to(lam.dtype)
