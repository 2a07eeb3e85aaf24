"""Generation and super-resolution with a trained model, in batches, seeded, with progress."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ._checks import (
    check_bool,
    check_int,
    check_real,
    check_real_tensor,
    check_seed,
)
from ._guidance import BlockMeanVariance, block_sign_likelihood
from ._sampling import ancestral_sample, respace, upscale

__all__ = ["generate", "super_resolve"]


def _steps(where: str, process, steps) -> int:
    return min(check_int(where, "steps", steps, 1), process.T)


def _check_model(where: str, model) -> None:
    """A trained model: what :func:`~lineardiff.pretrained.load_model` returns."""
    if not all(hasattr(model, a) for a in ("process", "denoiser", "prediction")):
        raise TypeError(
            f"{where}: expected model as a TrainedModel (lineardiff.pretrained.load_model), got "
            f"{type(model).__name__}; for a bare network use ancestral_sample with "
            "as_denoiser(net)"
        )


def generate(
    model,
    n: int,
    *,
    steps: int = 200,
    seed: int = 0,
    batch_size: int = 64,
    clip: float | None = 1.0,
    spin_flip: bool = False,
    signal_mse="auto",
    progress: bool = True,
) -> torch.Tensor:
    """Draw ``n`` samples from a :class:`~lineardiff.pretrained.TrainedModel`.

    Parameters
    ----------
    model : TrainedModel
    n : int
    steps : int, default 200
        Respaced reverse steps (:func:`~lineardiff.respace`; resolution changes are kept);
        more than the process's ``T`` runs every step.
    seed : int, default 0
        Seeds one generator for the whole run: the same call gives the same samples.
    batch_size : int, default 64
    clip : float or None, default 1.0
        x0-clipping of the predicted signal (data lie in ``[-1, 1]``).
    spin_flip : bool, default False
        Multiply each sample by a random sign (exact symmetrisation for Ising spins,
        docs/ising.rst, "Practical notes").
    signal_mse : "auto", SignalMSE, callable or None, default "auto"
        The denoiser's error per state, drawn into every step (``ancestral_sample``'s
        ``signal_mse``: the reverse variance of Analytic-DPM). ``"auto"``: the one the model
        file records (:attr:`~lineardiff.pretrained.TrainedModel.signal_mse`; none if it
        records none); ``None``: the exact posterior's variance only.
    progress : bool, default True

    Returns
    -------
    Tensor, shape (n, C, H, W)
    """
    where = "generate"
    _check_model(where, model)
    n = check_int(where, "n", n, 1)
    batch_size = check_int(where, "batch_size", batch_size, 1)
    seed = check_seed(where, "seed", seed)
    spin_flip = check_bool(where, "spin_flip", spin_flip)
    signal_mse = _signal_mse(where, model, signal_mse)
    check_bool(where, "progress", progress)
    process = model.process
    timesteps = respace(process, _steps(where, process, steps))
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    with torch.no_grad(), tqdm(total=n, disable=not progress, desc="generating") as bar:
        for start in range(0, n, batch_size):
            k = min(batch_size, n - start)
            x = ancestral_sample(
                model.denoiser, process, k, timesteps=timesteps, prediction=model.prediction,
                clip=clip, progress=False, generator=gen, signal_mse=signal_mse,
            )
            if spin_flip:
                signs = torch.randint(0, 2, (k,), generator=gen).mul(2).sub(1)
                x = x * signs.view(-1, 1, 1, 1).to(x.dtype)
            out.append(x)
            bar.update(k)
    return torch.cat(out)


def _signal_mse(where: str, model, signal_mse):
    if isinstance(signal_mse, str):
        if signal_mse != "auto":
            raise ValueError(f"{where}: expected signal_mse 'auto', a SignalMSE, a callable or "
                             f"None, got {signal_mse!r}")
        return getattr(model, "signal_mse", None)
    if signal_mse is not None and not callable(signal_mse):
        raise TypeError(f"{where}: expected signal_mse 'auto', a SignalMSE, a callable or None, "
                        f"got {type(signal_mse).__name__}")
    return signal_mse


def _check_size(process, size: int, where: str) -> None:
    sizes = process.sr_sizes
    if sizes is None:
        if not 1 <= size <= process.shape_at(0)[-1]:
            raise ValueError(
                f"{where}: expected inputs at most {process.shape_at(0)[-1]} wide, got {size}"
            )
    elif not sizes:
        raise ValueError(
            f"{where}: expected a model whose process super-resolves (SSD, SKILD), got "
            f"{process.name}"
        )
    elif size not in sizes:
        raise ValueError(
            f"{where}: expected inputs at one of the model's resolutions {sorted(sizes)}, "
            f"got {size}"
        )


def super_resolve(
    model,
    y: torch.Tensor,
    *,
    steps: int = 200,
    seed: int = 0,
    batch_size: int = 64,
    clip: float | None = 1.0,
    consistency: bool = False,
    ilvr: bool = False,
    ilvr_nsr: float = 1.5,
    guidance: float = 0.0,
    particles: int = 1,
    block_variance=None,
    calibration=None,
    tau: float | None = None,
    signal_mse="auto",
    progress: bool = True,
) -> torch.Tensor:
    """Super-resolve low-resolution images with an SSD or SKILD model.

    SSD enters its chain at the input's level (:func:`~lineardiff.upscale`; sizes on the
    pyramid); SKILD starts where its effective band drops to the input's resolution
    (:func:`~lineardiff.skild_upscale`; any size up to the training size, non-integer
    factors included).

    Parameters
    ----------
    model : TrainedModel
    y : Tensor, shape (N, C, h, h)
        The low-resolution images as the process sees them: the chain of resizes applied to a
        clean image (see :func:`~lineardiff.pretrained.TrainedModel` and the SR protocol in
        the docs for Ising block spins).
    steps : int, default 200
        Respaced steps of the whole chain; those below the entry state are run.
    seed, batch_size, clip, progress
        As for :func:`generate`.
    consistency : bool, default False
        Data-consistency projection (:func:`~lineardiff.upscale`).
    ilvr : bool, default False
        SSD: condition every state on ``y``, not only the entry (:func:`~lineardiff.upscale`).
        It raises the block consistency of Ising super-resolution (0.79 -> 0.87 at
        ``ilvr_nsr=3``, 0.95 at 1.5) but, with block-spin inputs, costs physics: measured
        trade-off in docs/processes.rst.
    ilvr_nsr : float, default 1.5
        Condition the states whose noise-to-signal ratio ``sigma_s / a_s`` is at least this
        (:func:`~lineardiff.upscale`): block-spin inputs are only a proxy of the low-pass
        view, and conditioning the low-noise states too imposes the proxy's error.
    guidance : float, default 0.0
        SSD: when > 0, read the signs of ``y`` as majority-rule block spins of the output
        (Ising super-resolution; a zero observes nothing) and guide every full-resolution
        step with their likelihood (:func:`~lineardiff.block_sign_likelihood`) at this scale
        (``ancestral_sample``'s ``guidance_scale``; 1 is the plain approximation). One
        backward pass of the network per step (about 3x the sampling time). Measured in
        docs/processes.rst.
    particles : int, default 1
        With ``guidance``: walk this many weighted particles per input and return one by
        its weight (twisted sequential Monte Carlo, :func:`~lineardiff.twisted_sample`),
        which removes guidance's approximation as the count grows; ``particles`` times the
        guided sampling time. A batch then holds ``batch_size // particles`` inputs.
    block_variance : BlockMeanVariance, optional
        With ``guidance``: the posterior variance of a block mean given the state
        (:func:`~lineardiff.block_mean_variance`, measured on held-out data); the likelihood
        is then the majority rule marginalised over it, spread over the blocks by each
        block's spin variance (:func:`~lineardiff.block_sign_likelihood` with ``spins=True``;
        the output is +-1 spins) instead of the plain ``sigmoid(8 s mean)`` of the predicted
        signal (docs/processes.rst). Its ``beta`` is the majority rule softened by the
        smallest measured variance ``v_min`` (``8 / (pi beta^2) = v_min``): no block is held
        more sharply than the denoiser can resolve, which keeps the gradients of a block
        decided against its input finite.
    calibration : EntryCalibration, optional
        Draw the entry state from the calibrated ``q(x_start | y)``
        (:func:`~lineardiff.fit_entry_calibration`), for inputs that are not the process's
        own low-resolution view (SKILD: the lowest DCT modes; SSD: the resized image), such
        as Ising majority blocks. Measured in docs/processes.rst.
    tau : float, optional
        SKILD: the per-mode SNR that defines the entry state (:meth:`~lineardiff.SKILD.start_step`).
        Smaller enters later, at more noise: less of the input kept, less of its error
        imposed. Default: the one the model file recommends
        (:attr:`~lineardiff.pretrained.TrainedModel.sr_tau`), else 0.1.
    signal_mse : "auto", SignalMSE, callable or None, default "auto"
        As for :func:`generate`.

    Returns
    -------
    Tensor, shape (N, C, H, H)
    """
    where = "super_resolve"
    _check_model(where, model)
    if not isinstance(y, torch.Tensor) or y.ndim != 4:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{where}: expected y as a tensor (N, C, h, h), got {got}")
    if y.shape[0] == 0:
        raise ValueError(f"{where}: expected at least one input, got y of shape "
                         f"{tuple(y.shape)}")
    y = check_real_tensor(where, "y", y)
    seed = check_seed(where, "seed", seed)
    check_bool(where, "progress", progress)
    signal_mse = _signal_mse(where, model, signal_mse)
    process = model.process
    if y.shape[1] != process.shape_at(0)[0]:
        raise ValueError(
            f"{where}: expected inputs with {process.shape_at(0)[0]} channel(s), got "
            f"{tuple(y.shape)}"
        )
    _check_size(process, int(y.shape[-1]), where)
    batch_size = check_int(where, "batch_size", batch_size, 1)
    guidance = check_real(where, "guidance", guidance, low=0, open_low=False)
    entry = {}
    if tau is None and process.sr_sizes is None:
        tau = getattr(model, "sr_tau", None)
    if tau is not None:
        if process.sr_sizes is not None:
            raise ValueError(f"{where}: expected tau=None for a model on a resolution pyramid "
                             f"(SSD enters at the input's level), got {tau!r}")
        entry["tau"] = check_real(where, "tau", tau, low=0)
    if block_variance is not None and not isinstance(block_variance, BlockMeanVariance):
        raise TypeError(f"{where}: expected block_variance as a BlockMeanVariance "
                        f"(lineardiff.block_mean_variance), got {type(block_variance).__name__}")
    if block_variance is not None and guidance == 0:
        raise ValueError(f"{where}: expected block_variance only with guidance > 0, got "
                         "guidance = 0")
    particles = check_int(where, "particles", particles, 1)
    if particles > 1 and guidance == 0:
        raise ValueError(f"{where}: expected particles > 1 only with guidance > 0, got "
                         f"particles={particles} and guidance 0")
    if guidance > 0 and process.sr_sizes is None:
        raise ValueError(f"{where}: expected guidance = 0 for a model that super-resolves "
                         f"from any size (SKILD), got {guidance}")
    num = _steps(where, process, steps)
    if block_variance is not None:  # never sharper than the denoiser's own smallest error
        beta = math.sqrt(8 / (math.pi * min(block_variance.values)))
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    with torch.no_grad(), tqdm(total=y.shape[0], disable=not progress, desc="upscaling") as bar:
        per = max(1, batch_size // particles)  # batch_size rows of particles at a time
        for i in range(0, y.shape[0], per):
            chunk = y[i : i + per].to(torch.float32)
            guide = {}
            if guidance > 0:
                seen = chunk.repeat_interleave(particles, 0)
                like = block_sign_likelihood(seen) if block_variance is None else \
                    block_sign_likelihood(seen, beta=beta, variance=block_variance, spins=True)
                guide = {"log_likelihood": like, "guidance_scale": guidance,
                         "particles": particles}
            out.append(upscale(model.denoiser, process, chunk, num_steps=num,
                               consistency=consistency, ilvr=ilvr, ilvr_nsr=ilvr_nsr,
                               generator=gen, clip=clip, prediction=model.prediction,
                               calibration=calibration, progress=False, signal_mse=signal_mse,
                               **entry, **guide))
            bar.update(chunk.shape[0])
    return torch.cat(out)
