"""A calibrated SKILD entry state: ``q(x_n0 | y)`` for measurements that are not the DCT low-pass.

SKILD enters its chain at ``n0`` with ``X_in = embed(y)``: it takes ``y`` for the lowest
DCT modes of the clean image, exactly, and the modes above for zero. When ``y`` is a
different measurement - Ising majority-rule block spins, a blur-and-subsample, a noisy
camera - that is wrong in both directions: measured modes carry an error the chain treats
as signal, and unmeasured ones lack the data's own variance. The exact entry draws
``x_n0`` from ``q(x_n0 | y) = int q(x_n0 | x_0) p(x_0 | y) dx_0``. With ``p(x_0 | y)``
replaced by its per-mode linear (Wiener) approximation - mean ``g_k Y_k``, variance
``R_k`` in the orthonormal DCT of the full grid, ``Y = dct(embed(y))`` - that is

``X_n0(k) = sqrt(alphabar_k) g_k Y_k + sqrt((1 - alphabar_k) S_0(k) + alphabar_k R_k) eps_k``

with ``g_k = E[X_k Y_k] / E[Y_k^2]`` and ``R_k = E[X_k^2] - g_k E[X_k Y_k]`` estimated from
pairs ``(x_0, y)`` of training data (:func:`fit_entry_calibration`). A mode that ``y`` does
not see gets ``g = 0``, ``R = E[X_k^2]`` (the prior); a mode it measures exactly gets
``g = 1``, ``R = 0``, and the plain entry is the case ``g = 1, R = 0`` everywhere below the
band and ``R = 0`` above. For Gaussian data and a linear measurement the formula is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import linops

from ._checks import check_real_tensor

__all__ = ["EntryCalibration", "fit_entry_calibration"]


@dataclass(frozen=True)
class EntryCalibration:
    """Per-mode linear estimate of the clean image's DCT from a measurement (see module doc).

    Attributes
    ----------
    gain : Tensor, shape (C, H, W)
        ``g_k``, per mode of the full grid's orthonormal DCT.
    residual : Tensor, shape (C, H, W)
        ``R_k``: the variance the estimate leaves, per mode.
    input_size : tuple of int
        ``(h, w)`` of the measurements it was fitted on.
    n : int
        Number of pairs it was fitted on.
    """

    gain: torch.Tensor
    residual: torch.Tensor
    input_size: tuple[int, int]
    n: int


def fit_entry_calibration(process, x0: torch.Tensor, y: torch.Tensor) -> EntryCalibration:
    """Fit :class:`EntryCalibration` on pairs of clean images and their measurements.

    Parameters
    ----------
    process : SKILD
        The process whose entry it calibrates (its :meth:`~lineardiff.SKILD.embed`).
    x0 : Tensor, shape (N, C, H, W)
        Clean images of the data (training or held-out; add symmetric copies for more).
    y : Tensor, shape (N, C, h, w)
        Their measurements, as they will be given to the sampler.

    Returns
    -------
    EntryCalibration

    Examples
    --------
    A measurement that *is* the low-pass view gets gain 1 and no residual on the modes it
    sees, and the prior (gain 0, the data's variance) above:

    >>> import torch
    >>> from lineardiff import SKILD, PowerSpectrumFit, fit_entry_calibration
    >>> p = SKILD((1, 8, 8), PowerSpectrumFit(C=1.0, k0=1.0, alpha=2.0))
    >>> x0 = torch.randn(500, 1, 8, 8, dtype=torch.float64)
    >>> cal = fit_entry_calibration(p, x0, p.low_res(x0, 4))
    >>> round(float(cal.gain[0, :4, :4].mean()), 6)
    1.0
    >>> float(cal.residual[0, :4, :4].abs().max()) < 1e-9
    True
    >>> float(cal.gain[0, 4:, 4:].abs().max())
    0.0
    """
    where = "fit_entry_calibration"
    if not hasattr(process, "embed"):
        raise TypeError(
            f"{where}: expected a process that super-resolves from any size (SKILD), got "
            f"{type(process).__name__}"
        )
    shape = tuple(process.shape)
    for name, t in (("x0", x0), ("y", y)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{where}: expected {name} as a tensor (N, C, H, W), got {got}")
    x0 = check_real_tensor(where, "x0", x0)
    y = check_real_tensor(where, "y", y)
    if tuple(x0.shape[1:]) != shape:
        raise ValueError(
            f"{where}: expected x0 of shape (N, {', '.join(map(str, shape))}), "
            f"got {tuple(x0.shape)}"
        )
    h, w = y.shape[-2:]
    if y.shape[0] != x0.shape[0] or y.shape[1] != shape[0] or h > shape[1] or w > shape[2]:
        raise ValueError(
            f"{where}: expected y of shape ({x0.shape[0]}, {shape[0]}, h, w) with h <= "
            f"{shape[1]}, w <= {shape[2]} (one measurement per image), got {tuple(y.shape)}"
        )
    if x0.shape[0] < 2:
        raise ValueError(f"{where}: expected at least 2 pairs, got {x0.shape[0]}")
    X = linops.dct2(x0.to(torch.float64))
    Y = linops.dct2(process.embed(y.to(torch.float64)))
    xy, yy, xx = (X * Y).mean(0), (Y * Y).mean(0), (X * X).mean(0)
    seen = yy > 1e-12 * yy.max().clamp_min(1e-300)
    gain = torch.where(seen, xy / torch.where(seen, yy, 1.0), 0.0)
    residual = (xx - gain * xy).clamp_min(0)
    return EntryCalibration(gain, residual, (int(h), int(w)), int(x0.shape[0]))


def calibrated_entry(process, y, start: int, calibration: EntryCalibration, generator=None):
    """``X_n0`` drawn from the calibrated ``q(x_n0 | y)`` (module doc); ``y`` (N, C, h, w)."""
    where = "SKILD.super_resolution_entry"
    if not isinstance(calibration, EntryCalibration):
        raise TypeError(
            f"{where}: expected calibration as an EntryCalibration (from "
            f"fit_entry_calibration), got {type(calibration).__name__}"
        )
    if tuple(y.shape[-2:]) != calibration.input_size or tuple(calibration.gain.shape) != tuple(
        process.shape
    ):
        raise ValueError(
            f"{where}: expected inputs of size {calibration.input_size} on a grid "
            f"{tuple(calibration.gain.shape)} (what the calibration was fitted on), got y of "
            f"shape {tuple(y.shape)} for a process of shape {tuple(process.shape)}"
        )
    f64 = {"dtype": torch.float64, "device": y.device}
    ab = process.alphabar[start].to(**f64)
    gain = calibration.gain.to(**f64)
    var = process.variance[start].to(**f64) + ab * calibration.residual.to(**f64)
    Y = linops.dct2(process.embed(y.to(torch.float64)))
    eps = torch.randn(Y.shape, generator=generator, **f64)
    return linops.idct2(ab.sqrt() * gain * Y + var.sqrt() * eps).to(y.dtype)
