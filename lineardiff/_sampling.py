"""Ancestral sampling from the exact posterior, with respacing."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ._checks import (
    check_bool,
    check_callable,
    check_device,
    check_finite,
    check_float_dtype,
    check_generator,
    check_int,
    check_real,
    check_real_tensor,
    check_timesteps,
)
from ._entry import calibrated_view
from ._guidance import guidable, guided_signal
from ._process import DiffusionProcess

__all__ = ["ancestral_sample", "respace", "skild_upscale", "upscale"]

_PREDICTIONS = ("signal", "eps")


def respace(process: DiffusionProcess, num_steps: int) -> list[int]:
    """A decreasing subsequence of ``T..1`` with about ``num_steps`` evenly spaced steps.

    Every step where the state's shape changes (SSD's resolution changes) is kept,
    together with the step before it, so that the network is only asked to predict
    one resolution ahead.

    Parameters
    ----------
    process : LinearDiffusion
    num_steps : int
        Number of evenly spaced steps (at least 1; at most ``T``).

    Returns
    -------
    list of int
        Strictly decreasing, starting at ``T`` and ending at 1.

    Examples
    --------
    >>> import lineardiff
    >>> lineardiff.respace(lineardiff.DDPM((1, 4, 4), T=100), 5)
    [100, 75, 50, 26, 1]
    """
    if not isinstance(process, DiffusionProcess):
        raise TypeError(f"respace: expected a diffusion process, got {type(process).__name__}")
    T = process.T
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= T:
        raise ValueError(f"respace: expected num_steps in [1, {T}], got {num_steps!r}")
    if num_steps == 1:
        steps = {T}
    else:
        steps = {round(1 + i * (T - 1) / (num_steps - 1)) for i in range(num_steps)}
    for t in range(1, T + 1):
        if process.shape_at(t) != process.shape_at(t - 1):
            steps.update({t, max(t - 1, 1)})
    steps.update({T, 1})
    return sorted(steps, reverse=True)


def ancestral_sample(
    model: Callable,
    process: DiffusionProcess,
    n: int,
    *,
    timesteps: Sequence[int] | None = None,
    prediction: str = "signal",
    clip: float | None = None,
    callback: Callable | None = None,
    progress: bool = True,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
    guide: Callable | None = None,
    log_likelihood: Callable | None = None,
    guidance_scale: float = 1.0,
    signal_mse: Callable | None = None,
) -> torch.Tensor:
    """Sample by walking the exact posterior ``q(x_s | x_t, x0_hat)`` from ``T`` to ``0``.

    Parameters
    ----------
    model : callable
        ``model(x_t, t, out_shape) -> prediction`` with ``x_t`` of shape
        ``(n, *shape_at(t))``, ``t`` a long tensor ``(n,)`` and ``out_shape`` the
        per-sample shape the prediction must have. With ``prediction="signal"`` it
        returns the clean image carried to the next state ``s``,
        ``B_{0->s} x_0`` of shape ``shape_at(s)`` (x0 itself for DDPM, VE; SSD's clean
        image at the next resolution); with ``"eps"`` the noise of shape
        ``shape_at(t)``.
    process : LinearDiffusion
    n : int
        Number of samples.
    timesteps : sequence of int, optional
        Decreasing states to visit, from ``T`` (default: all of ``T..1``; see
        :func:`respace`). The walk ends at state 0.
    prediction : {"signal", "eps"}, default "signal"
    clip : float, optional
        Clamp the predicted signal to ``[-clip, clip]`` (x0-clipping).
    callback : callable, optional
        ``callback(t, s, x_s, signal_s)`` after each step.
    progress : bool, default True
        A tqdm progress bar.
    generator : torch.Generator, optional
    x_T : Tensor, optional
        Start state at ``timesteps[0]`` (default: :meth:`LinearDiffusion.prior_sample`
        at ``T``). Super-resolution starts inside the chain this way.
    dtype, device
        Of the samples.
    guide : callable, optional
        ``guide(s, x_s) -> x_s`` applied to every new state before the next step (e.g. the
        low-frequency replacement of :func:`upscale` with ``ilvr=True``).
    log_likelihood : callable, optional
        ``log_likelihood(x0) -> Tensor (n,)``: the log-likelihood of an observation given a
        clean image (e.g. :func:`block_sign_likelihood`). Each step's predicted signal
        ``z(x_t)`` becomes ``z + guidance_scale (sigma_t^2 / a_t) grad_{x_t}
        log_likelihood(z(x_t))`` (Tweedie's formula with diffusion posterior sampling's
        approximation ``p(y | x_t) ~ p(y | z(x_t))``; one backward pass of the network per
        step), at the states ``x_t = a_t x_0 + sigma_t eps`` of the full shape (DDPM, VE,
        SSD at its last resolution); other states are walked unguided. A likelihood whose
        attribute ``time_dependent`` is True is called as ``log_likelihood(z, t)`` (e.g.
        :func:`block_sign_likelihood` with ``variance``: ``p(y | x_t)`` marginalised over
        the prediction's posterior uncertainty at state ``t``).
    guidance_scale : float, default 1.0
        The factor ``zeta`` above (1: the plain approximation).
    signal_mse : callable, optional
        ``signal_mse(t) -> float``: the denoiser's mean squared error per element at state
        ``t`` (a :class:`SignalMSE` from :func:`measure_signal_mse`). Each step then also
        draws the prediction's error through the posterior mean: ``x_s = mean + noise +
        J e``, ``e ~ N(0, signal_mse(t) I)``, ``J`` the mean's linear dependence on the
        signal (Analytic-DPM's reverse variance, Bao et al. 2022). When it also has a method
        ``spectrum(t, (H, W))`` that returns a per-mode power map (:meth:`SignalMSE.spectrum`),
        ``e`` is drawn with that power spectrum instead of white. Without it a walk with
        large steps is too narrow: its samples come out too smooth.

    Returns
    -------
    Tensor, shape (n, \\*shape_at(0))

    Examples
    --------
    >>> import torch, lineardiff
    >>> p = lineardiff.DDPM((1, 4, 4), T=50)
    >>> target = torch.full((1, 4, 4), 0.5)
    >>> oracle = lambda x, t, shape: target.expand(x.shape[0], *shape)
    >>> x = lineardiff.ancestral_sample(oracle, p, 3, timesteps=lineardiff.respace(p, 10),
    ...                                 progress=False)
    >>> torch.allclose(x, target.expand(3, 1, 4, 4))
    True
    """
    where = "ancestral_sample"
    if not isinstance(process, DiffusionProcess):
        raise TypeError(f"{where}: expected a diffusion process, got {type(process).__name__}")
    check_callable(where, "model", model)
    if prediction not in _PREDICTIONS:
        raise ValueError(f"{where}: expected prediction in {_PREDICTIONS}, got {prediction!r}")
    n = check_int(where, "n", n, 1)
    check_generator(where, "generator", generator)
    if clip is not None:
        clip = check_real(where, "clip", clip, low=0)
    check_callable(where, "callback", callback, optional=True)
    check_callable(where, "guide", guide, optional=True)
    check_callable(where, "log_likelihood", log_likelihood, optional=True)
    check_callable(where, "signal_mse", signal_mse, optional=True)
    if log_likelihood is not None:
        guidance_scale = check_real(where, "guidance_scale", guidance_scale, low=0,
                                    open_low=False)
        if not hasattr(process, "transition"):
            raise ValueError(f"{where}: expected a process with states a_t x_0 + sigma_t eps "
                             f"for log_likelihood guidance, got {type(process).__name__}")
    check_bool(where, "progress", progress)
    check_float_dtype(where, "dtype", dtype)
    if device is not None:
        check_device(where, "device", device)
    steps, x = _start(where, process, n, timesteps, x_T, generator, dtype, device)
    pairs = list(zip(steps, steps[1:] + [0], strict=True))
    for t, s in tqdm(pairs, disable=not progress, desc="sampling", leave=False):
        predict = _predictor(model, process, prediction, t, s, where)
        factor = None if log_likelihood is None else guidable(process, t, s)
        if factor is None:
            signal = predict(x)
        else:
            signal = guided_signal(predict, x, log_likelihood, guidance_scale * factor,
                                   where, t)
        if clip is not None:
            signal = signal.clamp(-clip, clip)
        post = process.posterior_from_signal(x, signal, t, s)
        x_t, x = x, post.mean if s == 0 else post.sample(generator)
        if signal_mse is not None and s > 0:
            x = x + _signal_error(process, signal_mse, signal, x_t, t, s, generator, where)
        if guide is not None:
            x = guide(s, x)
        if callback is not None:
            callback(t, s, x, signal)
    return x


def _start(where, process, n, timesteps, x_T, generator, dtype, device):
    """The validated states to visit and the start state (``x_T`` or a prior draw)."""
    if timesteps is None:
        steps = list(range(process.T, 0, -1))
    else:
        if isinstance(timesteps, (str, bytes)) or not hasattr(timesteps, "__iter__"):
            raise TypeError(f"{where}: expected timesteps as a sequence of ints (see respace), "
                            f"got {timesteps!r}")
        if isinstance(timesteps, torch.Tensor):
            timesteps = check_timesteps(where, "timesteps", timesteps.reshape(-1), 0, process.T)
            timesteps = timesteps.tolist()
        steps = [check_int(where, "timesteps", t) for t in timesteps]
    top = process.T if x_T is None or not steps else steps[0]
    if (
        not steps
        or steps[0] != top
        or steps[0] > process.T
        or any(a <= b for a, b in zip(steps, steps[1:], strict=False))
        or steps[-1] < 1
    ):
        raise ValueError(
            f"{where}: expected strictly decreasing timesteps from T={process.T} (or from the "
            "state of a given x_T) down to >= 1, "
            f"got {steps[:5]}{'...' if len(steps) > 5 else ''}"
        )
    if x_T is None:
        x = process.prior_sample(n, generator=generator, dtype=dtype, device=device)
    else:
        expected = (n, *process.shape_at(steps[0]))
        if not isinstance(x_T, torch.Tensor) or tuple(x_T.shape) != expected:
            got = tuple(x_T.shape) if isinstance(x_T, torch.Tensor) else type(x_T).__name__
            raise ValueError(f"{where}: expected x_T of shape {expected} (n samples at state "
                             f"{steps[0]}), got {got}")
        x = check_real_tensor(where, "x_T", x_T)
    return steps, x


def _predictor(model, process, prediction, t, s, where):
    """``predict(x_t)``: the network's signal for state ``s`` (from a noise prediction too)."""

    def predict(x):
        n = x.shape[0]
        t_batch = torch.full((n,), t, dtype=torch.long, device=x.device)
        if prediction == "signal":
            return _check_output(model(x, t_batch, process.shape_at(s)),
                                 (n, *process.shape_at(s)), where, t, x.dtype)
        eps = _check_output(model(x, t_batch, process.shape_at(t)),
                            (n, *process.shape_at(t)), where, t, x.dtype)
        return process.signal_from_noise(x, eps, t, s)

    return predict


def _signal_error(process, signal_mse, signal, x_t, t, s, generator, where):
    """``J e``, ``e ~ N(0, signal_mse(t) I)``: a prediction error carried to ``x_s``.

    The posterior mean is linear in ``(x_t, signal)``, so ``J e`` is the mean with ``x_t = 0``
    and ``e`` as the signal.
    """
    m = signal_mse(t)
    if isinstance(m, torch.Tensor):
        m = m.item() if m.numel() == 1 else m
    if not isinstance(m, (int, float)) or not math.isfinite(m) or m < 0:
        raise ValueError(f"{where}: expected signal_mse({t}) to be a finite number >= 0, "
                         f"got {m!r}")
    if m == 0:
        return 0.0
    e = torch.randn(signal.shape, dtype=signal.dtype, device=signal.device, generator=generator)
    spectrum = getattr(signal_mse, "spectrum", None)
    power = spectrum(t, signal.shape[-2:]) if callable(spectrum) and signal.ndim >= 3 else None
    if power is None:
        e = math.sqrt(m) * e
    else:  # coloured: F^-1 (P^(1/2) F xi), P(k) = P(-k) keeps it real
        root = power.sqrt().to(device=signal.device)
        e = torch.fft.ifft2(torch.fft.fft2(e.double()) * root).real.to(signal.dtype)
    return process.posterior_from_signal(torch.zeros_like(x_t), e, t, s).mean


def _check_output(out, shape, where, t, dtype):
    """The model's prediction: of the expected shape, real and finite, in the state's dtype
    (a half-precision output, e.g. under autocast, is widened: exact)."""
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{where}: expected the model to return shape {tuple(shape)} at t={t}, got {got}"
        )
    if out.is_complex():
        raise TypeError(f"{where}: expected a real model output at t={t}, got {out.dtype}")
    if out.device.type == "meta":
        raise ValueError(f"{where}: expected model output with data at t={t}, got a meta tensor")
    return check_finite(where, f"model output at t={t}", out.to(dtype))


def upscale(
    model: Callable,
    process: DiffusionProcess,
    y: torch.Tensor,
    *,
    num_steps: int | None = None,
    consistency: bool = False,
    ilvr: bool = False,
    ilvr_nsr: float = 0.0,
    generator: torch.Generator | None = None,
    calibration=None,
    tau: float | None = None,
    particles: int = 1,
    **sample_kwargs,
) -> torch.Tensor:
    """Super-resolution with one unconditional model: enter the chain at ``y``'s resolution.

    For a process whose states shrink (Scale Space Diffusion), the first state
    ``t*`` with ``y``'s shape carries ``A_{t*} x_0 = a_{t*} y`` for the clean
    low-resolution image ``y``; start there, ``x_{t*} = a_{t*} y + sigma_{t*} eps``,
    and walk the posterior back to state 0.

    Parameters
    ----------
    model : callable
        As for :func:`ancestral_sample` (signal prediction).
    process : LinearDiffusion
    y : Tensor, shape (N, \\*shape_at(t*))
        Low-resolution images, on the process's pyramid.
    num_steps : int, optional
        Respace the remaining chain (:func:`respace`); default every step.
    consistency : bool, default False
        Data-consistency projection: replace each predicted signal ``z`` (at a finer
        resolution than ``y``) by ``z + D^+ (y - D z)``, ``D`` the chain of resizes down
        to ``y``'s resolution and ``D^+`` its pseudo-inverse (:func:`linops.pinv`), so
        that the output downsamples exactly to ``y``.
    ilvr : bool, default False
        Condition every state, not only the entry (in the style of ILVR, Choi et al. 2021):
        after each step the part of ``x_s`` that the chain ``M = M_{s->t*}`` sees is
        replaced by a fresh draw given ``y``,
        ``x_s <- x_s + M^+ (a_{t*} y + sigma_s M xi - M x_s)``, ``xi ~ N(0, I)``
        (``M^+`` the pseudo-inverse, :func:`linops.pinv`). For a clean image ``x_0``
        with ``D x_0 = y`` this leaves the marginal ``q(x_s | x_0)`` exact, and the last
        state satisfies ``D x_0 = y``; without it the coarse level, re-noised at every
        step, drifts from ``y`` (see docs/processes.rst).
    ilvr_nsr : float, default 0.0
        Condition only the states whose noise-to-signal ratio ``sigma_s / a_s`` is at least
        this. When ``y`` is only a proxy of ``D x_0`` (Ising block spins: the true view
        differs from ``c y`` by a residual of rms ``r``), replacing the view of the low-noise
        states imposes that residual on the output; stopping where the state's noise no
        longer hides it lets the model finish the fine scales.
    generator : torch.Generator, optional
    calibration : EntryCalibration, optional
        Draw the entry state from the calibrated ``q(x_start | y)``
        (:func:`~lineardiff.fit_entry_calibration`), for measurements that are not the
        process's own low-resolution view (SKILD: the lowest DCT modes; SSD: the resized
        image), such as Ising majority-block spins. On a pyramid (SSD) the view is drawn
        once given ``y`` (:func:`~lineardiff.calibrated_view`) and stands for ``y``
        everywhere: the entry, ``ilvr``'s target and the ``consistency`` projection.
    tau : float, optional
        SKILD only: the SNR threshold of the entry (:meth:`~lineardiff.SKILD.start_step`).
    particles : int, default 1
        With ``log_likelihood`` on ``N * particles`` rows: twisted SMC
        (:func:`~lineardiff.twisted_sample`) from independent entries; 1: plain guidance.
    **sample_kwargs
        ``clip``, ``callback``, ``progress``, ``signal_mse`` of :func:`ancestral_sample`.

    Returns
    -------
    Tensor, shape (N, \\*shape_at(0))
    """
    if not isinstance(process, DiffusionProcess):
        raise TypeError(f"upscale: expected a diffusion process, got {type(process).__name__}")
    y = _check_low_res(y, "upscale")
    consistency = check_bool("upscale", "consistency", consistency)
    ilvr = check_bool("upscale", "ilvr", ilvr)
    check_generator("upscale", "generator", generator)
    particles = check_int("upscale", "particles", particles, 1)
    if particles > 1:
        if sample_kwargs.get("log_likelihood") is None or ilvr or "callback" in sample_kwargs:
            raise ValueError("upscale: expected particles > 1 only with a log_likelihood and "
                             "without ilvr or a callback")
        y = y.repeat_interleave(particles, 0)
        sample_kwargs["particles"] = particles
    entry = {}
    if calibration is not None and process.sr_sizes:
        # a pyramid (SSD): draw the view given y once, and use the draw wherever y stands for
        # the view (the entry, ILVR's target, the consistency projection)
        y = calibrated_view(process, y, calibration, generator)
    elif calibration is not None:
        entry["calibration"] = calibration
    if tau is not None:
        if process.sr_sizes is not None:
            raise ValueError(
                f"upscale: expected tau=None for a process on a resolution pyramid (it enters "
                f"at the input's level), got {tau!r} for {type(process).__name__}"
            )
        entry["tau"] = tau
    start, x = process.super_resolution_entry(y, generator=generator, **entry)
    if consistency:
        if not hasattr(process, "transition"):
            raise ValueError(
                "upscale: expected a process with a resize chain (transition) for "
                f"consistency=True, got {type(process).__name__}"
            )
        model = _consistent(model, process, y, start)
    if ilvr:
        if not hasattr(process, "transition"):
            raise ValueError(
                "upscale: expected a process with a resize chain (transition) for ilvr=True, "
                f"got {type(process).__name__}"
            )
        nsr = check_real("upscale", "ilvr_nsr", ilvr_nsr, low=0, open_low=False)
        sample_kwargs["guide"] = _low_pass_replacement(process, y, start, generator, nsr)
    return _walk_from(model, process, y, start, x, num_steps, generator, sample_kwargs)


def _low_pass_replacement(process, y, start, generator, nsr: float = 0.0):
    """ILVR-style guide: ``x_s + M^+ (a_start y + sigma_s M xi - M x_s)``, ``M = M_{s->start}``."""
    import linops

    cache: dict = {}
    target = process.signal_scale(start) * y

    def guide(s, x):
        sigma = process.sigma(s)
        if sigma < nsr * process.signal_scale(s):
            return x
        if s not in cache:
            c, base = process.transition(s, start)
            cache[s] = (c, base, None if base is None else linops.pinv(base))
        c, base, base_pinv = cache[s]
        if base is None:  # M = c I: the whole state is seen; redraw it given y
            xi = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
            return target / c + sigma * xi
        residual = target - c * base.apply(x)
        if sigma > 0:
            xi = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
            residual = residual + sigma * c * base.apply(xi)
        return x + base_pinv.apply(residual) / c

    return guide


def _check_low_res(y, where: str) -> torch.Tensor:
    """Low-resolution inputs: a real float32/float64 tensor ``(N, *shape)``, finite (integer
    images become the default float dtype)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{where}: expected y as a tensor, got {type(y).__name__}")
    if y.dim() < 2 or y.shape[0] < 1:
        raise ValueError(f"{where}: expected y of shape (N, *shape) with N >= 1, got "
                         f"{tuple(y.shape)}")
    return check_real_tensor(where, "y", y)


def _walk_from(model, process, y, start, x, num_steps, generator, sample_kwargs):
    if num_steps is not None:
        check_int("upscale", "num_steps", num_steps, 1, process.T)
    sample_kwargs.setdefault("prediction", process.default_prediction)
    k = sample_kwargs.pop("particles", 1)
    if k > 1:
        from ._twisted import twisted_sample
        return twisted_sample(model, process, y.shape[0] // k, particles=k, x_T=x,
                              timesteps=_steps_from(process, start, num_steps),
                              generator=generator, dtype=y.dtype, device=y.device,
                              **sample_kwargs).value
    return ancestral_sample(
        model,
        process,
        y.shape[0],
        timesteps=_steps_from(process, start, num_steps),
        x_T=x,
        generator=generator,
        dtype=y.dtype,
        device=y.device,
        **sample_kwargs,
    )


def _steps_from(process, start: int, num_steps: int | None) -> list[int]:
    """``start`` followed by the (respaced) steps below it: the tail of the chain for SR."""
    steps = respace(process, num_steps) if num_steps else range(process.T, 0, -1)
    return [start] + [t for t in steps if t < start]


def _consistent(model, process, y, start):
    """Wrap a signal model with the projection ``z + D^+ (y - D z)`` (see :func:`upscale`)."""
    import linops

    cache: dict = {}

    def projected(x, t, out_shape):
        z = model(x, t, out_shape)
        key = tuple(out_shape)
        if key == tuple(y.shape[1:]):
            return z
        if key not in cache:
            s = max(u for u in range(start) if process.shape_at(u) == key)
            _, down = process.transition(s, start)
            cache[key] = (down, linops.pinv(down))
        down, up = cache[key]
        return z + up.apply(y - down.apply(z))

    return projected


def skild_upscale(
    model: Callable,
    process,
    y: torch.Tensor,
    *,
    tau: float = 0.1,
    num_steps: int | None = None,
    generator: torch.Generator | None = None,
    calibration=None,
    **sample_kwargs,
) -> torch.Tensor:
    """SKILD super-resolution: start where the effective band drops to ``y``'s resolution.

    ``n0`` is the first state with ``r_eff(n0 / N) <= h`` (:meth:`SKILD.start_step`);
    ``X_{n0} = sqrt(alphabar) X_in + sqrt((1 - alphabar) S_0) eps`` with ``X_in`` the DCT of
    ``y`` embedded in the high-resolution grid (:meth:`SKILD.embed`). Any factor works,
    non-integer ones included.

    Parameters
    ----------
    model : callable
        Noise prediction ``model(x_t, t, shape)``.
    process : SKILD
    y : Tensor, shape (N, C, h, w)
    tau : float, default 0.1
        SNR threshold of the effective band.
    num_steps : int, optional
        Respace the remaining chain.
    generator : torch.Generator, optional
    calibration : EntryCalibration, optional
        Draw ``X_{n0}`` from the calibrated ``q(x_n0 | y)``
        (:func:`~lineardiff.fit_entry_calibration`): for measurements that are not the
        lowest DCT modes (Ising majority blocks).
    **sample_kwargs
        ``clip``, ``callback``, ``progress``, ``signal_mse`` of :func:`ancestral_sample`.

    Returns
    -------
    Tensor, shape (N, C, H, W)
    """
    if not isinstance(process, DiffusionProcess) or process.sr_sizes is not None:
        raise TypeError(
            "skild_upscale: expected a process that super-resolves from any size (SKILD), "
            f"got {type(process).__name__}"
        )
    y = _check_low_res(y, "skild_upscale")
    tau = check_real("skild_upscale", "tau", tau, low=0)
    check_generator("skild_upscale", "generator", generator)
    start, x = process.super_resolution_entry(y, generator=generator, tau=tau,
                                              calibration=calibration)
    sample_kwargs["prediction"] = "eps"
    return _walk_from(model, process, y, start, x, num_steps, generator, sample_kwargs)
