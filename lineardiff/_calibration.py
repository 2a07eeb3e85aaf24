"""Band calibration of a denoiser: the best per-frequency-band rescaling of its predictions.

A posterior-mean denoiser ``z(x_t) = E[target | x_t]`` is calibrated: regressing the target on
the prediction gives slope 1, ``E[target | z] = z``, in every Fourier mode. A trained network
is not, at the noisy states where it has learnt little: it predicts structure the state does
not hold (slope below 1, the samples come out too ordered) or too little (above 1). Measured
on held-out data, per state ``t`` and radial band of the (periodic) Fourier modes, the slope
``c = <T, Z> / <Z, Z>`` is the least-squares rescaling of the prediction in that band, and the
rescaled denoiser ``F^-1 (c F z)`` has the smallest error of all such rescalings on that data:
a training-free correction in the spirit of epsilon scaling (Ning et al. 2024), fitted by
regression rather than tuned on samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ._checks import (
    check_callable,
    check_generator,
    check_int,
    check_real,
    check_real_tensor,
)
from ._process import DiffusionProcess

__all__ = ["BandCalibration", "band_calibration"]


def _band_index(size: int, edges: tuple[float, ...]) -> torch.Tensor:
    """Band of each mode of a ``size x size`` FFT grid by radial wavenumber ``|k|``."""
    k = torch.fft.fftfreq(size, dtype=torch.float64) * size
    radius = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    return torch.bucketize(radius, torch.tensor(edges, dtype=torch.float64), right=True)


def band_calibration(
    denoiser: Callable,
    process: DiffusionProcess,
    x0: torch.Tensor,
    timesteps: Sequence[int],
    *,
    edges: Sequence[float] = (0.5, 1.5, 3.0, 6.0, 12.0),
    pool: int = 2,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> BandCalibration:
    """Fit per-state, per-band slopes of a signal denoiser on held-out images.

    For each state ``t``: ``x_t = q_sample(x0, t)``, the prediction ``z = denoiser(x_t, t,
    shape)`` against the training target ``T = process.signal_target(x0, t)``, and per radial
    band of the 2-D Fourier modes of the last two axes (``|k|`` in grid units, bands split at
    ``edges``; the first band is ``k = 0`` with the default edges) the slope
    ``c = sum Re(conj(F T) F z) / sum |F z|^2``, pooled over the ``pool`` neighbouring
    entries of ``timesteps`` on each side that share the state's and the target's shapes
    (a resolution-change step pools with none). A band with no prediction power gets 1.

    Parameters
    ----------
    denoiser : callable
        ``denoiser(x_t, t, out_shape)`` predicting the signal (``as_denoiser(net)``,
        ``TrainedModel.denoiser``).
    process : DiffusionProcess
    x0 : Tensor, shape (N, \\*process.shape_at(0))
        Held-out images, ``N >= 2`` (not the training set: the slopes would flatter it).
    timesteps : sequence of int
        States to fit, each in ``[1, T]`` (e.g. those :func:`respace` visits).
    edges : sequence of float, default (0.5, 1.5, 3, 6, 12)
        Increasing positive band edges in ``|k|``.
    pool : int, default 2
        Neighbouring fitted states pooled on each side (``0``: none).
    batch_size : int, default 256
    generator : torch.Generator, optional
        For the forward noise.

    Returns
    -------
    BandCalibration

    Examples
    --------
    >>> import torch, lineardiff
    >>> p = lineardiff.DDPM((1, 8, 8), T=20)
    >>> x0 = torch.randn(64, 1, 8, 8)
    >>> zero = lambda x, t, shape: torch.zeros(x.shape[0], *shape)  # predicts nothing
    >>> gen = torch.Generator().manual_seed(0)
    >>> cal = lineardiff.band_calibration(zero, p, x0, [20, 10], generator=gen)
    >>> cal.slopes.shape, bool((cal.slopes == 1).all())  # nothing to rescale
    (torch.Size([2, 6]), True)
    """
    where = "band_calibration"
    x0 = check_held_out(where, denoiser, process, x0)
    if isinstance(timesteps, (str, bytes)) or not hasattr(timesteps, "__iter__"):
        raise TypeError(f"{where}: expected timesteps as a sequence of ints, got {timesteps!r}")
    steps = [check_int(where, "timesteps", t, 1, process.T) for t in timesteps]
    if not steps or len(set(steps)) != len(steps):
        raise ValueError(f"{where}: expected distinct timesteps, at least one, got {steps}")
    edges = tuple(float(e) for e in edges)
    if (not edges or edges[0] <= 0 or not all(math.isfinite(e) for e in edges)
            or any(b <= a for a, b in zip(edges, edges[1:], strict=False))):
        raise ValueError(f"{where}: expected increasing positive finite edges, got {edges}")
    pool = check_int(where, "pool", pool, 0)
    batch_size = check_int(where, "batch_size", batch_size, 1)
    check_generator(where, "generator", generator)
    n_bands = len(edges) + 1
    sums, sizes = {}, {}
    with torch.no_grad():
        for t in steps:
            target = process.signal_target(x0, t)
            xt = process.q_sample(x0, t, generator=generator)
            t_batch = torch.full((batch_size,), t, dtype=torch.long, device=x0.device)
            z = torch.cat([denoiser(chunk, t_batch[: len(chunk)], tuple(target.shape[1:]))
                           for chunk in xt.split(batch_size)])
            if z.shape != target.shape:
                raise ValueError(f"{where}: expected denoiser output of shape "
                                 f"{tuple(target.shape)} at t={t}, got {tuple(z.shape)}")
            ft, fz = torch.fft.fft2(target.double()), torch.fft.fft2(z.double())
            size = ft.shape[-1]
            band = _band_index(size, edges).flatten()
            cross = (ft.conj() * fz).real.flatten(0, -3).reshape(x0.shape[0], -1, size * size)
            power = fz.abs().square().flatten(0, -3).reshape(x0.shape[0], -1, size * size)
            num = torch.zeros(x0.shape[0], n_bands, dtype=torch.float64)
            den = torch.zeros_like(num)
            num.index_add_(1, band, cross.sum(1))
            den.index_add_(1, band, power.sum(1))
            sums[t] = (num, den)
            sizes[t] = (tuple(xt.shape[1:]), tuple(target.shape[1:]))
    slopes = torch.ones(len(steps), n_bands, dtype=torch.float64)
    errors = torch.zeros_like(slopes)
    for i, t in enumerate(steps):
        window = steps[max(0, i - pool): i + pool + 1]
        mates = [t] if _changes(process, t) else [
            u for u in window if sizes[u] == sizes[t] and not _changes(process, u)]
        num = torch.cat([sums[u][0] for u in mates])
        den = torch.cat([sums[u][1] for u in mates])
        total = den.sum(0)
        ok = total > 0
        c = torch.where(ok, num.sum(0) / total.clamp(min=1e-300), torch.ones_like(total))
        resid = num - c * den
        se = resid.std(0, unbiased=True) * math.sqrt(num.shape[0]) / total.clamp(min=1e-300)
        slopes[i] = c
        errors[i] = torch.where(ok, se, torch.zeros_like(se))
    return BandCalibration(tuple(steps), edges, slopes, errors)


def check_held_out(where: str, denoiser, process, x0) -> torch.Tensor:
    """The arguments every measurement of a denoiser on held-out images takes: a callable,
    a process and ``x0`` of shape ``(N, *shape_at(0))``, ``N >= 2`` (returned checked)."""
    check_callable(where, "denoiser", denoiser)
    if not isinstance(process, DiffusionProcess):
        raise TypeError(f"{where}: expected a diffusion process, got {type(process).__name__}")
    if not isinstance(x0, torch.Tensor) or tuple(x0.shape[1:]) != tuple(process.shape_at(0)):
        got = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise ValueError(f"{where}: expected x0 of shape (N, *{tuple(process.shape_at(0))}), "
                         f"got {got}")
    x0 = check_real_tensor(where, "x0", x0)
    if x0.shape[0] < 2:
        raise ValueError(f"{where}: expected at least 2 images in x0, got {x0.shape[0]}")
    return x0


def _changes(process, t: int) -> bool:
    return process.shape_at(t) != process.shape_at(t - 1)


class BandCalibration:
    """Per-state, per-band slopes of a denoiser (:func:`band_calibration`).

    Attributes
    ----------
    timesteps : tuple of int
    edges : tuple of float
        Band edges in ``|k|``; band ``j`` holds ``edges[j-1] <= |k| < edges[j]``.
    slopes : Tensor, shape (len(timesteps), len(edges) + 1), float64
        1 for a calibrated denoiser; below 1: it predicts more of the band than the state
        holds.
    standard_errors : Tensor, same shape
        Of the slopes, over the images (ratio estimator).
    """

    def __init__(self, timesteps, edges, slopes, standard_errors) -> None:
        self.timesteps = tuple(timesteps)
        self.edges = tuple(edges)
        self.slopes = slopes
        self.standard_errors = standard_errors
        self._index = {t: i for i, t in enumerate(self.timesteps)}
        self._maps: dict = {}

    def factors(self, t: int, size: int) -> torch.Tensor | None:
        """The ``(size, size)`` slopes on the FFT grid at state ``t`` (None if not fitted)."""
        i = self._index.get(int(t))
        if i is None:
            return None
        key = (i, int(size))
        if key not in self._maps:
            self._maps[key] = self.slopes[i][_band_index(int(size), self.edges)]
        return self._maps[key]

    def wrap(self, denoiser: Callable, *, low: float = 0.0,
             high: float = math.inf) -> Callable:
        """``denoiser`` with each prediction at a fitted state rescaled band by band.

        The batch must share one state (as the samplers call it); other states and
        non-square outputs pass through. Slopes are clamped to ``[low, high]``: a negative
        slope is noise (or a band the network has inverted), not a sign to impose.
        """
        where = "BandCalibration.wrap"
        check_callable(where, "denoiser", denoiser)
        low = check_real(where, "low", low, open_low=False)
        if high != math.inf:
            high = check_real(where, "high", high, low=low, open_low=False)

        def calibrated(x, t, out_shape):
            z = denoiser(x, t, out_shape)
            square = z.shape[-1] == z.shape[-2]
            c = self.factors(int(t.reshape(-1)[0]), z.shape[-1]) if square else None
            if c is None:
                return z
            c = c.clamp(low, high).to(device=z.device, dtype=z.dtype)
            return torch.fft.ifft2(torch.fft.fft2(z) * c).real.to(z.dtype)

        return calibrated

    def __repr__(self) -> str:
        worst = float((self.slopes - 1).abs().max())
        return (f"BandCalibration({len(self.timesteps)} states, {len(self.edges) + 1} bands, "
                f"largest |slope - 1| = {worst:.3g})")
