"""Per-mode DCT power of a data set and SKILD's offset power-law fit ``C (|k|^2 + k0^2)^-alpha``."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from scipy.optimize import curve_fit

import linops

from ._checks import check_finite, check_real, check_shape2
from ._skild_schedules import skild_wavenumber2

__all__ = ["PowerSpectrumFit", "dct_mode_variance", "fit_power_spectrum", "power_law_spectrum"]

# Samples transformed at once by dct_mode_variance: bounds the float64 working copy.
_CHUNK = 1024


def power_law_spectrum(shape, C: float, k0: float, alpha: float) -> torch.Tensor:
    """The offset power law ``S(k) = C (|k|^2 + k0^2)^(-alpha)`` on the DCT modes.

    Parameters
    ----------
    shape : (int, int)
        Image size ``(H, W)``.
    C : float
        Amplitude, positive.
    k0 : float
        Offset wavenumber, ``>= 0`` (SKILD's code stores ``k02 = k0^2``). With ``k0 = 0`` the
        DC mode is ``inf`` for ``alpha > 0``.
    alpha : float
        Exponent; real.

    Returns
    -------
    Tensor, shape (H, W), float64
        ``S`` at ``k = (pi u, pi v)`` (:func:`skild_wavenumber2`), the variance of each
        coefficient of the orthonormal DCT (:func:`linops.dct2`).

    Examples
    --------
    >>> S = power_law_spectrum((4, 4), 2.0, 1.0, 1.0)
    >>> S[0, 0].item(), round(S[0, 1].item() * (torch.pi**2 + 1), 12)
    (2.0, 2.0)
    """
    where = "power_law_spectrum"
    H, W = check_shape2(where, "shape", shape)
    C = check_real(where, "C", C, low=0.0)
    k0 = check_real(where, "k0", k0, low=0.0, open_low=False)
    alpha = check_real(where, "alpha", alpha)
    return C * (skild_wavenumber2((H, W)) + k0**2) ** (-alpha)


def dct_mode_variance(data) -> torch.Tensor:
    """Per-mode power of the orthonormal DCT of a data set.

    Parameters
    ----------
    data : Tensor or ndarray, shape (N, H, W) or (N, C, H, W)
        Real samples; ``N >= 1``.

    Returns
    -------
    Tensor, shape (H, W), float64
        ``mean_{n, c} X_{n,c}(k)^2`` with ``X = dct2(x)`` (:func:`linops.dct2`), averaged over
        samples and channels.

    Notes
    -----
    Not centred: this is the second moment ``E[X(k)^2]``, which is the variance for zero-mean
    data. It is the quantity SKILD's spectrum-matched noise must equal: with
    ``S_0 = E[X_0(k)^2]`` the marginal
    ``X_t = sqrt(alphabar) X_0 + sqrt((1 - alphabar) S_0) eps`` keeps ``E[X_t(k)^2] = S_0(k)``
    at every ``t`` and its prior matches the data's power. By Parseval the modes sum to
    ``E ||x||^2`` per channel. For images whose mean is not zero the DC mode (and, for data
    with a mean image, a few low modes) carries the mean; :func:`fit_power_spectrum` leaves
    out the DC mode by default.

    Examples
    --------
    >>> x = torch.ones(5, 3, 4, 4)  # DC coefficient sqrt(HW) = 4
    >>> v = dct_mode_variance(x)
    >>> v[0, 0].item(), v.sum().item()
    (16.0, 16.0)
    """
    where = "dct_mode_variance"
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"{where}: expected data as a Tensor or ndarray, got {type(data).__name__}")
    if data.ndim not in (3, 4) or data.shape[0] < 1 or data.numel() == 0:
        raise ValueError(
            f"{where}: expected data of shape (N, H, W) or (N, C, H, W) with N >= 1, got "
            f"{tuple(data.shape)}"
        )
    if data.is_complex() or data.dtype == torch.bool:
        raise TypeError(f"{where}: expected real data, got dtype {data.dtype}")
    if data.device.type == "meta":
        raise ValueError(f"{where}: expected data holding values, got a meta tensor")
    check_finite(where, "data", data)
    if data.ndim == 3:
        data = data.unsqueeze(1)
    total = torch.zeros(data.shape[-2:], dtype=torch.float64, device=data.device)
    for start in range(0, data.shape[0], _CHUNK):
        coeffs = linops.dct2(data[start : start + _CHUNK].to(torch.float64))
        total += (coeffs**2).sum(dim=(0, 1))
    return total / (data.shape[0] * data.shape[1])


@dataclasses.dataclass(frozen=True)
class PowerSpectrumFit:
    """An offset power law ``S(k) = C (|k|^2 + k0^2)^(-alpha)`` fitted to a data set.

    Attributes
    ----------
    C : float
        Amplitude, in the power of one orthonormal-DCT coefficient (:func:`linops.dct2`).
    k0 : float
        Offset wavenumber (``k0^2`` is SKILD's ``k02``).
    alpha : float
        Exponent; the field's power falls like ``|k|^(-2 alpha)``.
    rms_log_residual : float
        Root mean square of ``log S_data - log S_fit`` over the fitted modes: ~``sqrt(2 / N)``
        for ``N`` Gaussian samples that follow the law; much more means the law does not fit.
    mean_square : float or None
        ``E[mean(x)^2]``, the second moment of an image's mean. When set, the DC mode
        ``(0, 0)`` gets the data's own power ``H W mean_square`` instead of the law's value
        (see Notes). ``None`` (a fit that included the DC mode, or a model file written before
        this field) keeps the law there.

    Notes
    -----
    The law is fitted without the DC mode, which carries the image mean and does not follow
    it: for critical Ising configurations at L = 32 the law's ``C k0^(-2 alpha)`` gives the
    magnetisation mode about 1/20 of the data's power (1/19.5 on 4,000 configurations).
    SKILD's noise at that mode would then be 20x too weak, its prior samples nearly
    unmagnetised, and the network would have to create ``|m|`` from almost nothing. The
    data's own power fixes that mode.
    """

    C: float
    k0: float
    alpha: float
    rms_log_residual: float = 0.0
    mean_square: float | None = None

    def __post_init__(self) -> None:
        where = "PowerSpectrumFit"
        check_real(where, "C", self.C, low=0)
        check_real(where, "k0", self.k0, low=0, open_low=False)
        check_real(where, "alpha", self.alpha)
        check_real(where, "rms_log_residual", self.rms_log_residual, low=0, open_low=False)

    def spectrum(self, shape) -> torch.Tensor:
        """The fitted law on the DCT modes of an ``(H, W)`` image (:func:`power_law_spectrum`).

        Examples
        --------
        >>> PowerSpectrumFit(C=1.0, k0=2.0, alpha=0.5).spectrum((2, 2))[0, 0].item()
        0.5
        >>> PowerSpectrumFit(1.0, 2.0, 0.5, mean_square=0.25).spectrum((2, 2))[0, 0].item()
        1.0
        """
        S = power_law_spectrum(shape, self.C, self.k0, self.alpha)
        if self.mean_square is not None:
            ms = check_real("PowerSpectrumFit.spectrum", "mean_square", self.mean_square, low=0)
            S[0, 0] = S.shape[0] * S.shape[1] * ms
        return S


def _log_model(k2, log_c, alpha, k02):
    return log_c - alpha * np.log(k2 + k02)


def fit_power_spectrum(data, *, exclude_dc: bool = True) -> PowerSpectrumFit:
    """Fit ``C (|k|^2 + k0^2)^(-alpha)`` to a data set's per-mode DCT power.

    Parameters
    ----------
    data : Tensor or ndarray, shape (N, H, W) or (N, C, H, W)
        Samples; see :func:`dct_mode_variance`.
    exclude_dc : bool, default True
        Leave out the ``(0, 0)`` mode, which carries the data's mean, from the law, and keep
        its measured power instead (:attr:`PowerSpectrumFit.mean_square`).

    Returns
    -------
    PowerSpectrumFit

    Notes
    -----
    Least squares in log space, one residual per mode: ``log S(k) = log C -
    alpha log(|k|^2 + k0^2)`` against ``log`` of :func:`dct_mode_variance`, so every mode
    counts by its relative error (the power spans decades) and the many high modes weigh in
    as they would in a per-mode Gaussian likelihood. Unlike SKILD's code, modes are not
    binned radially. ``k0^2`` is the free parameter (bounded at 0; small ``k0`` is poorly
    determined because the smallest nonzero ``|k|`` is ``pi``). Start: for ``k0^2`` on a
    log grid, ``log C`` and ``alpha`` by linear least squares; the best of those seeds
    ``scipy.optimize.curve_fit``. The constants hold for the orthonormal DCT at this
    resolution; SKILD's published ones (non-orthonormal DCT) do not transfer.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> S = power_law_spectrum((16, 16), 3.0, 2.0, 1.5)
    >>> x = linops.idct2(S.sqrt() * torch.randn(4000, 16, 16, dtype=torch.float64, generator=g))
    >>> fit = fit_power_spectrum(x)
    >>> round(fit.alpha, 1), round(fit.k0, 0), round(fit.C, 0)
    (1.5, 2.0, 3.0)
    """
    where = "fit_power_spectrum"
    if not isinstance(exclude_dc, bool):
        raise TypeError(f"{where}: expected exclude_dc as a bool, got {exclude_dc!r}")
    power = dct_mode_variance(data)
    H, W = power.shape
    k2 = skild_wavenumber2((H, W)).cpu().numpy().ravel()
    p = power.cpu().numpy().ravel()
    keep = np.ones_like(p, dtype=bool)
    if exclude_dc:
        keep[0] = False
    k2, p = k2[keep], p[keep]
    if p.size < 3:
        raise ValueError(
            f"{where}: expected at least 3 modes to fit 3 parameters, got {p.size} from "
            f"images of shape ({H}, {W})"
        )
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError(
            f"{where}: expected positive finite power in every fitted mode, got a minimum of "
            f"{float(p.min())!r}. Constant or degenerate data have no power-law spectrum"
        )
    logp = np.log(p)
    # k2 = 0 (the DC mode, when kept) needs k0^2 > 0; otherwise 0 is allowed.
    k02_min = 0.0 if np.all(k2 > 0) else 1e-12
    k02_grid = np.concatenate([[max(k02_min, 1e-12)], np.geomspace(1e-2, 1e2, 41) * math.pi**2])
    best = None
    for k02 in k02_grid:
        design = np.stack([np.ones_like(k2), -np.log(k2 + k02)], axis=1)
        coef, *_ = np.linalg.lstsq(design, logp, rcond=None)
        sse = float(np.sum((design @ coef - logp) ** 2))
        if best is None or sse < best[0]:
            best = (sse, coef[0], coef[1], k02)
    _, log_c0, alpha0, k02_0 = best
    params, _ = curve_fit(
        _log_model,
        k2,
        logp,
        p0=[log_c0, alpha0, max(k02_0, k02_min)],
        bounds=([-np.inf, -np.inf, k02_min], [np.inf, np.inf, np.inf]),
        max_nfev=10_000,
    )
    log_c, alpha, k02 = (float(v) for v in params)
    residual = logp - _log_model(k2, log_c, alpha, k02)
    return PowerSpectrumFit(
        C=math.exp(log_c),
        k0=math.sqrt(k02),
        alpha=alpha,
        rms_log_residual=float(np.sqrt(np.mean(residual**2))),
        # the DC coefficient of an orthonormal DCT is sqrt(HW) mean(x): power HW E[mean^2]
        mean_square=float(power[0, 0]) / (H * W) if exclude_dc else None,
    )
