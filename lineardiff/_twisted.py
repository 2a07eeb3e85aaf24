"""Twisted sequential Monte Carlo: likelihood guidance made exact with particles.

Guidance (:mod:`lineardiff._guidance`) proposes each reverse step from the conditional
prediction ``z + (sigma_t^2 / a_t) grad log p~_t(y | x_t)`` with the approximation
``p~_t(y | x_t) = p(y | z(x_t))``; its samples are biased wherever that approximation is. Twisted
diffusion sampling (Wu, Trippe, Naesseth, Blei and Cunningham 2023) keeps the same proposal
but carries ``K`` particles per observation with importance weights

    w <- w * p~_s(y | x_s) p(x_s | x_t) / (p~_t(y | x_t) q(x_s | x_t)),

``p`` the unguided reverse step and ``q`` the guided one, and resamples a group when its
weights degenerate: the particles target ``p(x_s) p~_s(y | x_s)`` at every state and the exact
posterior ``p(x_0 | y)`` at the end as ``K`` grows (for the last step, which walks to the
posterior mean, the twist at state 1 stands for the likelihood).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ._checks import check_bool, check_callable, check_generator, check_int, check_real
from ._guidance import guidable, likelihood_gradient
from ._process import DiffusionProcess
from ._sampling import _predictor, _signal_error, _start

__all__ = ["TwistedSampleResult", "twisted_sample"]


@dataclass(frozen=True)
class TwistedSampleResult:
    """What :func:`twisted_sample` returns.

    Attributes
    ----------
    value : Tensor, shape (n, \\*shape_at(0))
        One particle per observation, drawn by its final weight.
    ess : Tensor, shape (steps, n)
        Each group's effective sample size before resampling, as a fraction of ``particles``
        (1 at the states walked unguided).
    resampled : int
        How many times a group was resampled, summed over groups and steps.
    log_weights : Tensor, shape (n, particles)
        The final log-weights (float64), up to a constant per group.
    """

    value: torch.Tensor
    ess: torch.Tensor
    resampled: int
    log_weights: torch.Tensor


def twisted_sample(
    model: Callable,
    process: DiffusionProcess,
    n: int,
    *,
    particles: int,
    log_likelihood: Callable,
    guidance_scale: float = 1.0,
    timesteps: Sequence[int] | None = None,
    prediction: str = "signal",
    clip: float | None = None,
    progress: bool = True,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
    signal_mse: Callable | None = None,
    ess_threshold: float = 0.5,
) -> TwistedSampleResult:
    """Posterior sampling by twisted sequential Monte Carlo over :func:`ancestral_sample`'s
    guided steps (see the module docstring).

    Parameters
    ----------
    model, process, timesteps, prediction, clip, progress, generator, dtype, device, signal_mse
        As for :func:`~lineardiff.ancestral_sample`.
    n : int
        Observations (groups of particles).
    particles : int
        Particles per observation, ``K >= 1`` (``K = 1`` is plain guidance). Cost: ``K`` times
        a guided walk.
    log_likelihood : callable
        As for :func:`~lineardiff.ancestral_sample`, on ``n * particles`` images: particle
        ``j`` of observation ``i`` is row ``i * particles + j`` (build it on the observations
        repeated by ``repeat_interleave(particles, 0)``).
    guidance_scale : float, default 1.0
        Scales the proposal's correction; the weights keep the target exact for any value.
    x_T : Tensor, shape (n * particles, \\*shape_at(timesteps[0])), optional
        Start states, one per particle.
    ess_threshold : float, default 0.5
        Resample a group (systematic resampling) when its effective sample size falls below
        this fraction of ``particles``.

    Returns
    -------
    TwistedSampleResult

    Notes
    -----
    The reverse steps at the guided states must be isotropic Gaussians (states
    ``a_t x_0 + sigma_t eps`` of the signal's shape: DDPM, VE, SSD at its last resolution);
    the denoiser's error (``signal_mse``), white or with a power spectrum, is part of the
    step's covariance in the weights. States before the first guided one are walked unguided
    and unweighted (their target is the unconditional marginal).

    Examples
    --------
    >>> import torch, lineardiff
    >>> p = lineardiff.DDPM((1, 1, 2), T=20)
    >>> def denoiser(x, t, shape):  # exact for x_0 ~ N(0, I)
    ...     a, sigma = p.signal_scale(int(t[0])), p.sigma(int(t[0]))
    ...     return a * x / (a**2 + sigma**2)
    >>> ll = lambda z: -0.5 * ((z - 1.0) ** 2).sum(dim=(1, 2, 3)) / 0.25
    >>> r = lineardiff.twisted_sample(denoiser, p, 2, particles=8, log_likelihood=ll,
    ...                               progress=False, generator=torch.Generator().manual_seed(0))
    >>> r.value.shape, r.log_weights.shape
    (torch.Size([2, 1, 1, 2]), torch.Size([2, 8]))
    """
    where = "twisted_sample"
    if not isinstance(process, DiffusionProcess):
        raise TypeError(f"{where}: expected a diffusion process, got {type(process).__name__}")
    check_callable(where, "model", model)
    check_callable(where, "log_likelihood", log_likelihood)
    check_callable(where, "signal_mse", signal_mse, optional=True)
    if prediction not in ("signal", "eps"):
        raise ValueError(f"{where}: expected prediction in ('signal', 'eps'), got "
                         f"{prediction!r}")
    n = check_int(where, "n", n, 1)
    k = check_int(where, "particles", particles, 1)
    zeta = check_real(where, "guidance_scale", guidance_scale, low=0, open_low=False)
    threshold = check_real(where, "ess_threshold", ess_threshold, low=0, high=1,
                           open_low=False, open_high=False)
    if clip is not None:
        clip = check_real(where, "clip", clip, low=0)
    check_generator(where, "generator", generator)
    check_bool(where, "progress", progress)
    if not hasattr(process, "transition"):
        raise ValueError(f"{where}: expected a process with states a_t x_0 + sigma_t eps, got "
                         f"{type(process).__name__}")
    steps, x = _start(where, process, n * k, timesteps, x_T, generator, dtype, device)
    pairs = list(zip(steps, steps[1:] + [0], strict=True))
    logw = torch.zeros(n, k, dtype=torch.float64, device=x.device)
    ess = torch.ones(len(pairs), n, dtype=torch.float64)
    pending = None  # (twist at the last guided state, log p/q of the move from it)
    resampled = 0
    for i, (t, s) in enumerate(tqdm(pairs, disable=not progress, desc="twisted SMC",
                                    leave=False)):
        predict = _predictor(model, process, prediction, t, s, where)
        factor = guidable(process, t, s)
        if factor is None:
            if pending is not None:
                raise ValueError(f"{where}: expected every state after the first guided one "
                                 f"to be guided too, got state {t} unguided")
            z = predict(x)
            post = process.posterior_from_signal(x, z if clip is None else z.clamp(-clip, clip),
                                                 t, s)
            x_t, x = x, post.mean if s == 0 else post.sample(generator)
            if signal_mse is not None and s > 0:
                x = x + _signal_error(process, signal_mse, z, x_t, t, s, generator, where)
            continue
        z, twist, grad = likelihood_gradient(predict, x, log_likelihood, where, t)
        twist = twist.to(torch.float64).view(n, k)
        logw = logw + (twist if pending is None else twist - pending[0] + pending[1])
        if not bool(torch.isfinite(logw).all()):
            raise ValueError(f"{where}: a particle's weight is not finite at t={t}")
        ess[i] = _ess(logw) / k
        rows, logw, count = _resample(logw, ess[i], threshold, generator)
        resampled += count
        if count:
            x, z, twist = x[rows], z[rows], twist.reshape(-1)[rows].view(n, k)
            grad = None if grad is None else grad[rows]
        zg = z if grad is None else z + zeta * factor * grad
        if clip is not None:
            z, zg = z.clamp(-clip, clip), zg.clamp(-clip, clip)
        guided = process.posterior_from_signal(x, zg, t, s)
        if s == 0:
            x = guided.mean
            break
        noise = guided.sample(generator) - guided.mean
        if signal_mse is not None:
            noise = noise + _signal_error(process, signal_mse, zg, x, t, s, generator, where)
        d = guided.mean - process.posterior_from_signal(x, z, t, s).mean
        prec_d = _precision(process, guided, signal_mse, x, t, s, where)(d)
        log_pq = -(prec_d * noise).flatten(1).sum(1) - 0.5 * (prec_d * d).flatten(1).sum(1)
        pending = (twist, log_pq.to(torch.float64).view(n, k))
        x = guided.mean + noise
    pick = torch.multinomial(torch.softmax(logw, dim=1).to(torch.float64), 1,
                             generator=generator).view(n) if k > 1 else torch.zeros(n).long()
    rows = torch.arange(n, device=x.device) * k + pick.to(x.device)
    return TwistedSampleResult(x[rows], ess, resampled, logw)


def _ess(logw: torch.Tensor) -> torch.Tensor:
    """``(sum w)^2 / sum w^2`` per group (row)."""
    w = torch.softmax(logw, dim=1)
    return 1.0 / (w**2).sum(dim=1)


def _resample(logw, ess_fraction, threshold, generator):
    """Systematic resampling of the groups whose ESS fraction is below ``threshold``.

    Returns the flat row index of every new particle, the new log-weights (0 in a resampled
    group) and how many groups were resampled.
    """
    n, k = logw.shape
    low = ess_fraction.to(logw.device) < threshold
    rows = torch.arange(n * k, device=logw.device).view(n, k)
    count = int(low.sum())
    if count == 0:
        return rows.view(-1), logw, 0
    w = torch.softmax(logw[low], dim=1)
    u = torch.rand(count, 1, dtype=torch.float64, generator=generator).to(w.device)
    points = (u + torch.arange(k, dtype=torch.float64, device=w.device)) / k
    picks = torch.searchsorted(w.cumsum(dim=1), points).clamp(max=k - 1)
    rows = rows.clone()
    rows[low] = rows[low].gather(1, picks)
    logw = logw.clone()
    logw[low] = 0.0
    return rows.view(-1), logw, count


def _precision(process, post, signal_mse, x, t, s, where):
    """``d -> Sigma^-1 d`` for the step's covariance: the posterior's ``v I`` plus the
    denoiser's error carried through the mean, ``b^2 P`` (``P`` white or a power spectrum)."""
    if post.base is not None:
        raise ValueError(f"{where}: expected an isotropic reverse step at the guided state "
                         f"{t} (states a_t x_0 + sigma_t eps), got a resize or blur")
    v = post.sigma**2 * (1.0 - post.rho * post.scale**2)
    if signal_mse is None:
        return lambda d: d / v
    m = signal_mse(t)
    m = float(m.item() if isinstance(m, torch.Tensor) else m)
    unit = torch.ones_like(x[:1])
    b = float(process.posterior_from_signal(torch.zeros_like(unit), unit, t, s).mean.flatten()[0])
    spectrum = getattr(signal_mse, "spectrum", None)
    power = spectrum(t, x.shape[-2:]) if callable(spectrum) and x.ndim >= 3 else None
    if power is None:
        return lambda d: d / (v + b * b * m)
    cov = (v + b * b * power).to(device=x.device)

    def apply(d):
        f = torch.fft.fft2(d.double(), norm="ortho") / cov
        return torch.fft.ifft2(f, norm="ortho").real.to(d.dtype)

    return apply
