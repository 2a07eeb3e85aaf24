"""Schedules of the linear diffusion family: noise, resolution, blur and damping.

Free functions of the timestep that return tensors; the processes combine
them with :mod:`linops` operators. Everything is computed in float64.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_int, check_real, check_shape2, check_time

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
    "truncated_cosine_logsnr",
]

# Relative slack when a resolution level boundary falls exactly on a timestep (see
# convex_decay_levels). Distinct timesteps put x * n at least ~1e-6 from an integer for
# T <= 1e5 and n <= 64, so the slack never moves a timestep that is off a boundary.
_BOUNDARY_SLACK = 1e-9


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
    T = check_int(where, "T", T, 1)
    beta_start = check_real(where, "beta_start", beta_start, low=0.0, high=1.0)
    beta_end = check_real(where, "beta_end", beta_end, low=0.0, high=1.0)
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
    T = check_int(where, "T", T, 1)
    s = check_real(where, "s", s, low=0.0, open_low=False)
    max_beta = check_real(where, "max_beta", max_beta, low=0.0, high=1.0, open_high=False)
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


def min_snr_weight(snr: torch.Tensor, *, gamma: float = 5.0, floor: float = 0.0) -> torch.Tensor:
    """Min-SNR-gamma loss weight, ``min(SNR, gamma)``, optionally floored: ``max(., floor)``.

    Parameters
    ----------
    snr : Tensor, any shape
        Signal-to-noise ratio, ``SNR_t = alphabar_t / (1 - alphabar_t)``; ``inf`` allowed.
    gamma : float, default 5.0
        The clip; positive.
    floor : float, default 0.0
        The smallest weight, in ``[0, gamma]``. ``0`` is min-SNR exactly, whose weight of the
        high-noise states (``SNR -> 0``) vanishes; a positive floor keeps training the
        states where the image's coarsest structure is decided (docs/processes.rst,
        "Loss weight of the high-noise states").

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
    >>> min_snr_weight(torch.tensor([0.001, 0.5, 80.0]), floor=1.0)
    tensor([1., 1., 5.])
    """
    where = "min_snr_weight"
    if not isinstance(snr, torch.Tensor) or not snr.is_floating_point():
        raise TypeError(f"{where}: expected snr as a floating tensor, got {snr!r}")
    gamma = check_real(where, "gamma", gamma, low=0.0)
    floor = check_real(where, "floor", floor, low=0.0, high=gamma, open_low=False,
                       open_high=False)
    if bool((snr < 0).any()) or bool(snr.isnan().any()):
        raise ValueError(f"{where}: expected snr >= 0, got a minimum of {snr.min().item()!r}")
    return torch.clamp(snr, min=floor, max=gamma)


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
    max_res = check_int(where, "max_res", max_res, 1)
    n_levels = check_int(where, "n_levels", n_levels, 1)
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
    T = check_int(where, "T", T, 1)
    n = check_int(where, "n_levels", n_levels, 1)
    gamma = check_real(where, "gamma", gamma, low=0.0)
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
    T = check_int(where, "T", T, 1)
    n = check_int(where, "n_levels", n_levels, 1)
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
    t64, dtype = check_time(where, "t", t)
    l_min = check_real(where, "l_min", l_min)
    l_max = check_real(where, "l_max", l_max)
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
    t64, dtype = check_time(where, "t", t)
    sigma_b_max = check_real(where, "sigma_b_max", sigma_b_max, low=0.0, open_low=False)
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
    t64, dtype = check_time(where, "t", t)
    H, W = check_shape2(where, "shape", shape)
    sigma_b_max = check_real(where, "sigma_b_max", sigma_b_max, low=0.0, open_low=False)
    d_min = check_real(where, "d_min", d_min, low=0.0, high=1.0, open_low=False)
    sigma_b = bd_blur_sigma(t64, sigma_b_max=sigma_b_max)
    tau = (sigma_b**2 / 2)[..., None, None]
    fh = (math.pi * torch.arange(H, dtype=torch.float64, device=t64.device) / H) ** 2
    fw = (math.pi * torch.arange(W, dtype=torch.float64, device=t64.device) / W) ** 2
    lam = fh[:, None] + fw[None, :]
    return ((1 - d_min) * torch.exp(-lam * tau) + d_min).to(dtype)
