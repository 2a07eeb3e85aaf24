"""Members of the linear diffusion family as operator choices: DDPM and Scale Space Diffusion."""

from __future__ import annotations

import numpy as np
import torch

import linops

from ._checks import check_int
from ._process import LinearDiffusion
from ._schedules import (
    alphas_cumprod,
    bd_alpha_sigma,
    bd_dissipation,
    convex_decay_levels,
    cosine_betas,
    equal_levels,
    linear_betas,
    pyramid,
)

__all__ = ["DDPM", "VE", "BlurringDiffusion", "ScaleSpaceDiffusion", "custom"]


def _betas(schedule: str, T: int, where: str) -> torch.Tensor:
    if schedule == "linear":
        return linear_betas(T)
    if schedule == "cosine":
        return cosine_betas(T)
    raise ValueError(f"{where}: expected schedule 'linear' or 'cosine', got {schedule!r}")


class DDPM(LinearDiffusion):
    """DDPM (Ho et al. 2020): ``M_t = sqrt(alpha_t) I``, ``sigma_t^2 = 1 - alphabar_t``.

    Parameters
    ----------
    shape : sequence of int
        Per-sample shape, e.g. ``(C, H, W)``.
    T : int, optional
        Number of steps: 1000 by default, ``len(betas)`` with explicit betas (a different
        ``T`` with them is an error).
    schedule : {"linear", "cosine"}, default "linear"
        Linear betas from 1e-4 to 0.02 (Ho et al.) or the cosine schedule
        (Nichol & Dhariwal).
    betas : Tensor, shape (T,), optional
        Explicit betas (overrides ``schedule``).

    Examples
    --------
    >>> import torch, lineardiff
    >>> p = lineardiff.DDPM((1, 8, 8), T=100)
    >>> x0 = torch.zeros(2, 1, 8, 8)
    >>> p.q_sample(x0, 50).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self, shape, *, T: int | None = None, schedule: str = "linear", betas=None
    ) -> None:
        if betas is None:
            betas = _betas(schedule, 1000 if T is None else T, "DDPM")
        else:
            if isinstance(betas, np.ndarray | list | tuple):
                betas = torch.as_tensor(betas, dtype=torch.float64)
            if not isinstance(betas, torch.Tensor):
                raise TypeError(
                    f"DDPM: expected betas as a tensor or a sequence, got {type(betas).__name__}"
                )
            if betas.dim() != 1:
                raise ValueError(
                    f"DDPM: expected betas of shape (T,), got {tuple(betas.shape)}"
                )
            betas = betas.to(torch.float64)
            if T is not None and check_int("DDPM", "T", T, 1) != len(betas):
                raise ValueError(
                    f"DDPM: expected T equal to len(betas) = {len(betas)} (or T left out), got "
                    f"T={T}"
                )
        abar = alphas_cumprod(betas)
        sigmas = torch.cat([torch.zeros(1, dtype=torch.float64), (1 - abar).sqrt()])
        super().__init__(
            (1 - betas).sqrt().tolist(), [None] * len(betas), sigmas, shape, name="DDPM"
        )
        self.betas = betas
        self.alphas_cumprod = abar


class ScaleSpaceDiffusion(LinearDiffusion):
    """Scale Space Diffusion (SSD): noise and downsample together.

    ``M_t = sqrt(alphabar_t / alphabar_{t-1}) R_{r(t) <- r(t-1)}`` with ``R`` the
    antialiased bilinear resize (identity while the resolution stays), so that
    ``A_t = sqrt(alphabar_t)`` times the *chain* of resizes, and
    ``sigma_t^2 = 1 - alphabar_t`` (linear betas, T = 1000 by default).

    Parameters
    ----------
    shape : (C, H, W)
        Per-sample shape of clean images (``H = W = max_res``).
    n_levels : int, default 4
        Resolutions ``max_res / 2^i``, ``i < n_levels``.
    T : int, default 1000
    resolution_schedule : {"convex_decay", "equal"}, default "convex_decay"
    gamma : float, default 0.5
        Exponent of ConvexDecay_gamma.
    schedule : {"linear", "cosine"}, default "linear"

    Notes
    -----
    The resolution schedules are defined on code timesteps ``0..T-1``
    (the SSD paper's schedule: with 4 levels at 64 px, ``[0, 437] -> 64``, ...); state ``x_t``
    (``t = 1..T``) has the resolution of code timestep ``t - 1`` and ``x_0`` the
    finest one.

    Examples
    --------
    >>> import lineardiff
    >>> p = lineardiff.ScaleSpaceDiffusion((1, 16, 16), n_levels=3, T=100)
    >>> p.shape_at(0), p.shape_at(100)
    ((1, 16, 16), (1, 4, 4))
    """

    def __init__(
        self,
        shape,
        *,
        n_levels: int = 4,
        T: int = 1000,
        resolution_schedule: str = "convex_decay",
        gamma: float = 0.5,
        schedule: str = "linear",
    ) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ValueError(f"ScaleSpaceDiffusion: expected a square shape (C, H, H), got {shape}")
        resolutions = pyramid(shape[1], n_levels)
        if resolution_schedule == "convex_decay":
            levels = convex_decay_levels(T, n_levels, gamma=gamma)
        elif resolution_schedule == "equal":
            levels = equal_levels(T, n_levels)
        else:
            raise ValueError(
                "ScaleSpaceDiffusion: expected resolution_schedule 'convex_decay' or 'equal', "
                f"got {resolution_schedule!r}"
            )
        res_of_state = [shape[1]] + [resolutions[int(i)] for i in levels]
        betas = _betas(schedule, T, "ScaleSpaceDiffusion")
        abar = alphas_cumprod(betas)
        sigmas = torch.cat([torch.zeros(1, dtype=torch.float64), (1 - abar).sqrt()])
        resizes: dict[tuple[int, int], linops.Resize] = {}
        bases = []
        for t in range(1, T + 1):
            a, b = res_of_state[t - 1], res_of_state[t]
            if a == b:
                bases.append(None)
                continue
            if (a, b) not in resizes:
                resizes[(a, b)] = linops.Resize(
                    (shape[0], a, a), (b, b), mode="bilinear", antialias=True
                )
            bases.append(resizes[(a, b)])
        super().__init__(
            (1 - betas).sqrt().tolist(), bases, sigmas, shape, name="ScaleSpaceDiffusion"
        )
        self.betas = betas
        self.alphas_cumprod = abar
        self.resolutions = resolutions
        self.resolution_of_state = res_of_state

    def resolution_changes(self) -> list[int]:
        """The steps ``t`` with ``r(t) != r(t-1)`` (kept by every respacing)."""
        r = self.resolution_of_state
        return [t for t in range(1, self.T + 1) if r[t] != r[t - 1]]


class VE(LinearDiffusion):
    """Variance exploding (EDM-style): ``M_t = I``, increasing ``sigma_t``.

    ``sigma_t`` for ``t = 1..T`` follows Karras et al.'s discretisation
    ``(sigma_min^(1/rho) + (t-1)/(T-1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho``
    (the DFU paper's process).

    Parameters
    ----------
    shape : sequence of int
    T : int, default 1000
    sigma_min, sigma_max : float, default 0.002, 80.0
    rho : float, default 7.0

    Examples
    --------
    >>> import lineardiff
    >>> p = lineardiff.VE((1, 4, 4), T=10)
    >>> round(p.sigma(1), 3), round(p.sigma(10), 1)
    (0.002, 80.0)
    """

    def __init__(
        self,
        shape,
        *,
        T: int = 1000,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
    ) -> None:
        if not (0 < sigma_min < sigma_max) or rho <= 0 or T < 2:
            raise ValueError(
                "VE: expected 0 < sigma_min < sigma_max, rho > 0 and T >= 2, "
                f"got sigma_min={sigma_min}, sigma_max={sigma_max}, rho={rho}, T={T}"
            )
        u = torch.linspace(0, 1, T, dtype=torch.float64)
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        sig = (lo + u * (hi - lo)) ** rho
        sigmas = torch.cat([torch.zeros(1, dtype=torch.float64), sig])
        super().__init__([1.0] * T, [None] * T, sigmas, shape, name="VE")


class BlurringDiffusion(LinearDiffusion):
    """Blurring Diffusion (Hoogeboom & Salimans 2023): heat dissipation in DCT space plus noise.

    ``A_t = V^T diag(a_t d_t) V`` with the orthonormal DCT ``V``,
    ``d_t = (1 - d_min) exp(-lambda tau_t) + d_min``, ``tau_t = sigma_B(t)^2 / 2``,
    ``sigma_B(t) = sigma_B_max sin^2(pi t / 2)``, ``lambda_ij = (pi i/H)^2 + (pi j/W)^2``, and
    ``a_t = sqrt(sigmoid(l_t))``, ``sigma_t = sqrt(sigmoid(-l_t))`` from the truncated
    cosine log-SNR. States ``t = 1..T`` sit at times ``t / T``; ``x_0`` is the clean image.
    Each step is ``M_t = (a_t / a_{t-1}) V^T diag(d_t / d_{t-1}) V`` (``a_0 = d_0 = 1``),
    a :class:`linops.BasisDiagonal`, so posteriors are diagonal in DCT space and exact.

    Parameters
    ----------
    shape : (C, H, W)
    T : int, default 1000
    sigma_b_max : float, default 20.0
        ``0`` gives no blur: a DDPM-like process with the same ``a_t`` and ``sigma_t``.
    d_min : float, default 0.001
    l_min, l_max : float, default -10, 10

    Examples
    --------
    >>> import lineardiff
    >>> p = lineardiff.BlurringDiffusion((1, 8, 8), T=50)
    >>> p.shape_at(50)
    (1, 8, 8)
    """

    def __init__(
        self,
        shape,
        *,
        T: int = 1000,
        sigma_b_max: float = 20.0,
        d_min: float = 0.001,
        l_min: float = -10.0,
        l_max: float = 10.0,
    ) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3:
            raise ValueError(f"BlurringDiffusion: expected shape (C, H, W), got {shape}")
        times = torch.arange(1, T + 1, dtype=torch.float64) / T
        a, sig = bd_alpha_sigma(times, l_min=l_min, l_max=l_max)
        d = bd_dissipation(times, shape[1:], sigma_b_max=sigma_b_max, d_min=d_min)  # (T, H, W)
        a_prev = torch.cat([torch.ones(1, dtype=torch.float64), a[:-1]])
        d_prev = torch.cat([torch.ones(1, *shape[1:], dtype=torch.float64), d[:-1]])
        dct = linops.DCT2(shape)
        bases = []
        for t in range(T):
            ratio = d[t] / d_prev[t]
            bases.append(None if bool((ratio == 1).all()) else linops.BasisDiagonal(dct, ratio))
        sigmas = torch.cat([torch.zeros(1, dtype=torch.float64), sig])
        super().__init__((a / a_prev).tolist(), bases, sigmas, shape, name="BlurringDiffusion")
        self.a = torch.cat([torch.ones(1, dtype=torch.float64), a])
        self.dissipation = torch.cat([torch.ones(1, *shape[1:], dtype=torch.float64), d])


def custom(steps, sigmas, shape, *, name: str = "custom") -> LinearDiffusion:
    """A process from your own per-step operators ``M_1..M_T`` and noise levels.

    Parameters
    ----------
    steps : sequence of LinearOperator or None
        ``M_t`` for ``t = 1..T`` (``None``: identity); shapes must chain.
    sigmas : sequence of float
        ``sigma_1..sigma_T`` (``sigma_0 = 0`` is prepended) or ``sigma_0..sigma_T``.
    shape : sequence of int
        Per-sample shape of ``x_0``.
    name : str, default "custom"

    Returns
    -------
    LinearDiffusion
        Validated: shapes chain and every step is feasible.

    Examples
    --------
    >>> import linops, lineardiff
    >>> R = linops.Resize((1, 8, 8), (4, 4))
    >>> p = lineardiff.custom([None, R, None], [0.1, 0.2, 0.3], (1, 8, 8))
    >>> p.shape_at(3)
    (1, 4, 4)
    """
    steps = list(steps)
    sigmas = [float(v) for v in sigmas]
    if len(sigmas) == len(steps):
        sigmas = [0.0, *sigmas]
    return LinearDiffusion([1.0] * len(steps), steps, sigmas, shape, name=name)
