"""The error of a denoiser per state, and the reverse variance that accounts for it.

An ancestral step draws ``x_s`` from the exact Gaussian ``q(x_s | x_t, x0_hat)`` with the
predicted clean image in place of the true one. The true reverse transition
``p(x_s | x_t) = E[q(x_s | x_t, x_0) | x_t]`` is wider: its mean is linear in ``x_0``,
``mean = P x_t + J x_0``, so it adds ``J Cov(x_0 | x_t) J^T`` to the posterior's covariance.
Analytic-DPM (Bao et al. 2022) estimates that term from the denoiser's mean squared error,
which for the posterior-mean denoiser is the trace of ``Cov(x_0 | x_t)``; with an isotropic
error of variance ``m_t`` per element the step draws

``x_s = mean + noise + J e``, ``e ~ N(0, m_t I)``.

The error of a denoiser is far from isotropic: at a noisy state it misses the large scales,
which hold most of the data's power. For data that are (nearly) stationary on a periodic grid
``Cov(x_0 | x_t)`` is (nearly) diagonal in Fourier space, so the table also keeps the error's
power spectrum per radial wavenumber, and ``e`` is drawn with that spectrum
(``e = F^-1 (P^(1/2) F xi)``): the diagonal-covariance refinement of Analytic-DPM (Bao et al.
2022b) in the Fourier basis.

``J`` shrinks with the step (for DDPM ``J = sqrt(abar_s) (1 - rho c^2)``, zero for a step of
length zero), so the term is negligible when every state is visited and decisive for large
steps: without it a 30-step walk of a critical Ising model comes out too smooth and too
ordered (docs/processes.rst, "Reverse variance from the denoiser's error").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ._calibration import check_held_out
from ._checks import check_bool, check_generator, check_int, check_real
from ._process import DiffusionProcess

__all__ = ["SignalMSE", "measure_signal_mse"]

_PREDICTIONS = ("signal", "eps")


def measure_signal_mse(
    denoiser: Callable,
    process: DiffusionProcess,
    x0: torch.Tensor,
    timesteps: Sequence[int] | None = None,
    *,
    prediction: str = "signal",
    clip: float | None = 1.0,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> SignalMSE:
    """Measure a denoiser's mean squared error per state on held-out images.

    For each state ``t``: ``x_t = q_sample(x0, t)`` and the signal the samplers would use,
    ``z`` (the network's prediction at ``t``, clamped to ``[-clip, clip]``; from a noise
    prediction through :meth:`~DiffusionProcess.signal_from_noise`), against the training
    target ``process.signal_target(x0, t)``; the error is the mean of ``(z - target)^2`` over
    every element of every image, and its power spectrum the mean of ``|F (z - target)|^2 /
    (H W)`` over images and channels per radial wavenumber ``round(|k|)`` of the 2-D FFT of
    the last two axes (``|k|`` in grid units; the spectrum's mean over the modes is the
    error).

    Parameters
    ----------
    denoiser : callable
        ``denoiser(x_t, t, out_shape)`` as :func:`ancestral_sample` calls it.
    process : DiffusionProcess
    x0 : Tensor, shape (N, \\*process.shape_at(0))
        Held-out images, ``N >= 2`` (not the training set: the error would flatter it).
    timesteps : sequence of int, optional
        Distinct states to measure, each in ``[1, T]``. Default :func:`respace` ``(process,
        100)``: every resolution change and evenly spaced states between; states in between
        are interpolated (:meth:`SignalMSE.__call__`).
    prediction : {"signal", "eps"}, default "signal"
    clip : float or None, default 1.0
        As the sampler's ``clip`` (measure what the walk uses).
    batch_size : int, default 256
    generator : torch.Generator, optional
        For the forward noise.
    progress : bool, default True

    Returns
    -------
    SignalMSE

    Examples
    --------
    >>> import torch, lineardiff
    >>> p = lineardiff.DDPM((1, 8, 8), T=20)
    >>> x0 = torch.randn(64, 1, 8, 8).clamp(-1, 1)
    >>> zero = lambda x, t, shape: torch.zeros(x.shape[0], *shape)  # predicts nothing
    >>> mse = lineardiff.measure_signal_mse(zero, p, x0, [20, 10], progress=False)
    >>> bool(torch.isclose(mse.mse[0], x0.double().square().mean()))
    True
    """
    where = "measure_signal_mse"
    x0 = check_held_out(where, denoiser, process, x0)
    if timesteps is None:
        from ._sampling import respace

        timesteps = respace(process, min(100, process.T))
    if isinstance(timesteps, (str, bytes)) or not hasattr(timesteps, "__iter__"):
        raise TypeError(f"{where}: expected timesteps as a sequence of ints, got {timesteps!r}")
    steps = sorted(check_int(where, "timesteps", t, 1, process.T) for t in timesteps)
    if not steps or len(set(steps)) != len(steps):
        raise ValueError(f"{where}: expected distinct timesteps, at least one, got {steps}")
    if prediction not in _PREDICTIONS:
        raise ValueError(f"{where}: expected prediction in {_PREDICTIONS}, got {prediction!r}")
    if clip is not None:
        clip = check_real(where, "clip", clip, low=0)
    batch_size = check_int(where, "batch_size", batch_size, 1)
    check_generator(where, "generator", generator)
    check_bool(where, "progress", progress)
    mse, errors, spectra = [], [], []
    with torch.no_grad():
        for t in tqdm(steps, disable=not progress, desc="denoiser error", leave=False):
            target = process.signal_target(x0, t)
            xt = process.q_sample(x0, t, generator=generator)
            per_image, power = [], 0.0
            for chunk, goal in zip(xt.split(batch_size), target.split(batch_size), strict=True):
                t_batch = torch.full((len(chunk),), t, dtype=torch.long, device=chunk.device)
                z = _signal(denoiser, process, chunk, t_batch, t, tuple(goal.shape[1:]),
                            prediction, where)
                if clip is not None:
                    z = z.clamp(-clip, clip)
                diff = z.double() - goal.double()
                per_image.append(diff.square().flatten(1).mean(1))
                if diff.ndim >= 3:
                    modes = torch.fft.fft2(diff).abs().square().flatten(0, -3).sum(0)
                    power = power + modes / (diff.shape[-1] * diff.shape[-2])
            per_image = torch.cat(per_image)
            mse.append(per_image.mean())
            errors.append(per_image.std(unbiased=True) / per_image.numel() ** 0.5)
            if target.ndim >= 3:
                power = power / (target.numel() // (target.shape[-1] * target.shape[-2]))
                spectra.append(_radial_mean(power))
    return SignalMSE(process, steps, torch.stack(mse), torch.stack(errors), x0.shape[0], clip,
                     spectra=spectra if len(spectra) == len(steps) else None)


def _radial_bins(shape: tuple[int, int]) -> torch.Tensor:
    """Radial wavenumber ``round(|k|)`` (grid units) of each mode of an FFT grid."""
    ky = torch.fft.fftfreq(shape[0], dtype=torch.float64) * shape[0]
    kx = torch.fft.fftfreq(shape[1], dtype=torch.float64) * shape[1]
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).round().long()


def _radial_mean(power: torch.Tensor) -> dict:
    """``{"shape": [H, W], "power": [...]}``: the mean of a per-mode map per radial bin."""
    bins = _radial_bins(tuple(power.shape)).flatten()
    sums = torch.zeros(int(bins.max()) + 1, dtype=torch.float64).index_add_(0, bins,
                                                                               power.flatten())
    counts = torch.bincount(bins, minlength=sums.numel()).to(torch.float64)
    return {"shape": list(power.shape), "power": (sums / counts).tolist()}


def _signal(denoiser, process, x, t_batch, t, shape, prediction, where):
    """The signal a sampler uses at state ``t``: predicted, or derived from predicted noise."""
    if prediction == "signal":
        z = denoiser(x, t_batch, shape)
        expected = (x.shape[0], *shape)
    else:
        z = denoiser(x, t_batch, tuple(x.shape[1:]))
        expected = tuple(x.shape)
    if not isinstance(z, torch.Tensor) or tuple(z.shape) != expected:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"{where}: expected denoiser output of shape {expected} at t={t}, "
                         f"got {got}")
    return z if prediction == "signal" else process.signal_from_noise(x, z, t, t - 1)


class SignalMSE:
    """A denoiser's mean squared error per state (:func:`measure_signal_mse`).

    Call it with a state for the error there: ``mse_table(t)``. Between measured states it
    interpolates linearly in ``t``, only among states of the same resolution step (the
    state's shape and its target's: a resolution change is its own segment); outside a
    segment's measured range it takes the nearest measured state of that segment.

    Attributes
    ----------
    process : DiffusionProcess
    timesteps : tuple of int
        Increasing.
    mse : Tensor, shape (len(timesteps),), float64
    standard_errors : Tensor, same shape
        Of ``mse``, over the images.
    n : int
        Images measured.
    clip : float or None
    spectra : list of dict or None
        Per state, the error's power per radial wavenumber of its target's FFT grid
        (``{"shape": [H, W], "power": [p_0, p_1, ...]}``, ``p_j`` the mean of
        ``|F e|^2 / (H W)`` over the modes with ``round(|k|) = j``); None when not measured.
        :meth:`spectrum` reads it.
    """

    def __init__(self, process, timesteps, mse, standard_errors, n: int, clip, *,
                 spectra=None) -> None:
        self.process = process
        self.timesteps = tuple(int(t) for t in timesteps)
        self.mse = torch.as_tensor(mse, dtype=torch.float64)
        self.standard_errors = torch.as_tensor(standard_errors, dtype=torch.float64)
        self.n = int(n)
        self.clip = clip
        self.spectra = None if spectra is None else [
            {"shape": [int(v) for v in d["shape"]], "power": [float(v) for v in d["power"]]}
            for d in spectra]
        self._segments: dict = {}
        for i, t in enumerate(self.timesteps):
            self._segments.setdefault(self._segment(t), []).append(i)

    def _segment(self, t: int):
        return self.process.shape_at(t), self.process.shape_at(t - 1)

    def _weights(self, t: int, where: str) -> list[tuple[int, float]]:
        """``[(index, weight)]`` of the measured states that interpolate state ``t``."""
        t = check_int(where, "t", t, 1, self.process.T)
        members = self._segments.get(self._segment(t))
        if members is None:
            raise ValueError(f"{where}: expected a state measured at the resolution step of "
                             f"t={t} (shapes {self._segment(t)}), got none; measure it")
        steps = [self.timesteps[i] for i in members]
        if t <= steps[0]:
            return [(members[0], 1.0)]
        if t >= steps[-1]:
            return [(members[-1], 1.0)]
        j = next(k for k, u in enumerate(steps) if u >= t)
        w = (t - steps[j - 1]) / (steps[j] - steps[j - 1])
        return [(members[j - 1], 1 - w), (members[j], w)]

    def __call__(self, t: int) -> float:
        """The error at state ``t`` (``1 <= t <= T``)."""
        return sum(w * float(self.mse[i]) for i, w in self._weights(t, "SignalMSE"))

    def spectrum(self, t: int, shape) -> torch.Tensor | None:
        """The error's power per Fourier mode at state ``t``, a ``shape = (H, W)`` map on the
        FFT grid (float64; its mean is :meth:`__call__` up to the binning), or None when no
        spectra were measured.

        Raises
        ------
        ValueError
            When the state's target was measured on another grid than ``shape``.
        """
        where = "SignalMSE.spectrum"
        pairs = self._weights(t, where)
        if self.spectra is None:
            return None
        shape = [int(v) for v in shape]
        got = self.spectra[pairs[0][0]]["shape"]
        if got != shape:
            raise ValueError(f"{where}: expected a grid of shape {got} at t={t} (what was "
                             f"measured there), got {shape}")
        power = sum(w * torch.tensor(self.spectra[i]["power"], dtype=torch.float64)
                    for i, w in pairs)
        return power[_radial_bins(tuple(shape))]

    def to_dict(self) -> dict:
        """JSON-able record (what a model file stores; :meth:`from_dict` reads it back)."""
        return {"timesteps": list(self.timesteps), "mse": self.mse.tolist(),
                "standard_errors": self.standard_errors.tolist(), "n": self.n,
                "clip": self.clip, "spectra": self.spectra}

    @classmethod
    def from_dict(cls, process: DiffusionProcess, record) -> SignalMSE:
        """Rebuild from :meth:`to_dict`'s record for ``process``.

        Raises
        ------
        ValueError
            When the record lacks a field, its lengths differ or a state is outside
            ``[1, T]``.
        """
        where = "SignalMSE.from_dict"
        keys = ("timesteps", "mse", "standard_errors", "n", "clip")
        if not isinstance(record, dict) or any(k not in record for k in keys):
            got = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"{where}: expected a record with the fields {list(keys)}, "
                             f"got {got}")
        steps = [check_int(where, "timesteps", t, 1, process.T) for t in record["timesteps"]]
        if not steps or not len(steps) == len(record["mse"]) == len(record["standard_errors"]):
            raise ValueError(f"{where}: expected timesteps, mse and standard_errors of one "
                             f"length >= 1, got {len(steps)}, {len(record['mse'])} and "
                             f"{len(record['standard_errors'])}")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"{where}: expected increasing timesteps, got {steps}")
        mse = [float(v) for v in record["mse"]]
        if not all(math.isfinite(v) and v >= 0 for v in mse):
            raise ValueError(f"{where}: expected finite mse values >= 0, got {mse}")
        spectra = record.get("spectra")
        if spectra is not None:
            ok = isinstance(spectra, list) and len(spectra) == len(steps) and all(
                isinstance(d, dict) and len(d.get("shape", ())) == 2 and d.get("power")
                and all(math.isfinite(float(v)) and float(v) >= 0 for v in d["power"])
                for d in spectra)
            if not ok:
                raise ValueError(f"{where}: expected spectra as one {{'shape': [H, W], "
                                 f"'power': [finite values >= 0]}} per state, got "
                                 f"{str(spectra)[:80]}")
        return cls(process, steps, record["mse"], record["standard_errors"], record["n"],
                   record["clip"], spectra=spectra)

    def __repr__(self) -> str:
        return (f"SignalMSE({len(self.timesteps)} states, n={self.n}, "
                f"mse {float(self.mse.min()):.3g}..{float(self.mse.max()):.3g})")
