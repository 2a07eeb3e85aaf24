"""Likelihood guidance: posterior sampling given an observation of the clean image.

A sampler step predicts the clean signal ``z(x_t) ~ E[x_0 | x_t]``. Given an observation ``y``
with a differentiable log-likelihood ``log p(y | x_0)``, Tweedie's formula for states
``x_t = a_t x_0 + sigma_t eps`` gives the conditional prediction

    E[x_0 | x_t, y] = E[x_0 | x_t] + (sigma_t^2 / a_t) grad_{x_t} log p(y | x_t),

and, approximating ``p(y | x_t)`` by ``p(y | z(x_t))`` (diffusion posterior sampling, Chung
et al. 2023), one backward pass of the network per step gives the correction. It applies
where the state is the signal scaled and noised (DDPM, VE, SSD at its full resolution); other
states are walked unguided.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._checks import check_bool, check_callable, check_int, check_real, check_real_tensor
from ._process import DiffusionProcess

__all__ = ["BlockMeanVariance", "block_mean_variance", "block_sign_likelihood"]


def block_sign_likelihood(blocks: torch.Tensor, *, beta: float = 8.0,
                          variance: Callable | None = None, spins: bool = False) -> Callable:
    """Log-likelihood of block signs (majority-rule block spins) of an image.

    ``log p(s | x) = sum_B log sigmoid(beta s_B mean_B(x))``: each block's mean should have
    the sign ``s_B``. A block of the signal larger than ``blocks`` by a factor ``b`` is a
    ``b x b`` square; ``beta`` sets how sharp the rule is (8: 0.98 for a 3-1 block of +-1
    spins, 1/2 for a tie, so the ties of a random tie-break are not penalised; ``inf``: the
    exact majority rule, usable only with ``variance``). A zero entry of ``blocks`` observes
    nothing.

    With ``variance`` the likelihood is taken given the state ``x_t`` rather than the clean
    image: the block mean is ``mean_B(x) + sqrt(v_t) xi`` with ``xi ~ N(0, 1)`` (``x`` the
    predicted signal, ``v_t = variance(t)`` its posterior variance, e.g.
    :func:`block_mean_variance`), and ``E[sigmoid(beta s u)]`` for ``u ~ N(m, v)`` is, by the
    probit approximation ``sigmoid(u) ~ Phi(sqrt(pi / 8) u)``,
    ``Phi(s_B mean_B(x) / w)`` with ``w = sqrt(v_t + 8 / (pi beta^2))`` (exact for
    ``beta = inf``):

        ``log p(s_B | x_t) = log Phi(s_B mean_B(x) / w)``,

    continued below ``-1`` standard deviation by its tangent line, so that the push on a
    block the prediction has decided against its sign stays bounded (``log Phi`` itself
    pushes such a block in proportion to ``1 / w^2`` and, once ``v_t`` is tiny, wrecks the
    sample; a logistic form bounds it too but keeps pushing kept blocks, too ordered).
    Weak while the noise hides the block means, the sharp rule at the end, where a finite
    ``beta`` like 8 would keep pushing 3-1 blocks towards 4-0 (too ordered:
    docs/processes.rst).

    ``v_t`` is an average over images and blocks. For images of +-1 spins the posterior
    variance of a spin whose posterior mean is ``x_i`` is ``1 - x_i^2``; ``spins=True``
    spreads ``v_t`` over the blocks in proportion to ``mean_B(1 - x^2)`` (normalised so that
    each image's average stays ``v_t``): a block the prediction has decided gets none, an
    undecided one more than the average, so decided blocks are not pushed further (each
    block's share is floored at ``1e-6 v_t`` to keep the gradient finite).

    Parameters
    ----------
    blocks : Tensor, shape (N, C, h, w)
        Signs in {-1, 0, +1} (any real values are reduced to their sign).
    beta : float, default 8.0
        Positive; ``math.inf`` only with ``variance``.
    variance : callable, optional
        ``variance(t) -> float`` (> 0), the posterior variance of a block mean at state ``t``.
    spins : bool, default False
        With ``variance``: the images are +-1 spins; spread ``v_t`` over the blocks as above.

    Returns
    -------
    callable
        ``log_likelihood(x) -> Tensor (N,)`` for images ``x`` of shape ``(N, C, b h, b w)``
        (with ``variance``: ``log_likelihood(x, t)``, and its attribute ``time_dependent`` is
        True), for :func:`ancestral_sample`'s ``log_likelihood``.

    Examples
    --------
    >>> import math, torch, lineardiff
    >>> ll = lineardiff.block_sign_likelihood(torch.ones(1, 1, 2, 2))
    >>> bool(ll(torch.ones(1, 1, 4, 4)) > ll(-torch.ones(1, 1, 4, 4)))
    True
    >>> soft = lineardiff.block_sign_likelihood(torch.ones(1, 1, 2, 2), beta=math.inf,
    ...                                         variance=lambda t: 0.01 * t)
    >>> x = torch.full((1, 1, 4, 4), 0.1)
    >>> bool(soft(x, 1) > soft(x, 100))  # the same prediction is more certain at less noise
    True
    """
    where = "block_sign_likelihood"
    blocks = check_real_tensor(where, "blocks", blocks)
    if blocks.dim() != 4:
        raise ValueError(f"{where}: expected blocks of shape (N, C, h, w), got "
                         f"{tuple(blocks.shape)}")
    check_callable(where, "variance", variance, optional=True)
    if variance is not None and isinstance(beta, (int, float)) and beta == math.inf:
        beta = math.inf
    else:
        beta = check_real(where, "beta", beta, low=0)
    spins = check_bool(where, "spins", spins)
    if spins and variance is None:
        raise ValueError(f"{where}: expected spins=True only with a variance, got variance=None")
    signs = torch.sign(blocks)

    def block_means(x: torch.Tensor) -> torch.Tensor:
        h, w = signs.shape[-2:]
        if (x.dim() != 4 or x.shape[:2] != signs.shape[:2] or x.shape[-1] % w
                or x.shape[-2] % h or x.shape[-1] // w != x.shape[-2] // h):
            raise ValueError(
                f"{where}: expected images of shape ({signs.shape[0]}, {signs.shape[1]}, "
                f"b*{h}, b*{w}), got {tuple(x.shape)}"
            )
        return signs.to(dtype=x.dtype, device=x.device) * _pool(x, x.shape[-1] // w)

    if variance is None:
        def log_likelihood(x: torch.Tensor) -> torch.Tensor:
            return F.logsigmoid(beta * block_means(x)).flatten(1).sum(1)

        return log_likelihood

    def marginal_log_likelihood(x: torch.Tensor, t: int) -> torch.Tensor:
        v = variance(t)
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 \
                or not math.isfinite(v):
            raise ValueError(f"{where}: expected variance({t}) as a finite number > 0, got {v!r}")
        signed = block_means(x)
        var = torch.full_like(signed, v)
        if spins:
            u = _pool(1 - x.detach().clamp(-1, 1) ** 2, x.shape[-1] // signs.shape[-1])
            share = u / u.mean(dim=tuple(range(1, u.dim())), keepdim=True).clamp_min(1e-12)
            var = v * share.clamp_min(1e-6)  # a decided block: finite, if steep, gradients
        width = (var + 8 / (math.pi * beta ** 2)).sqrt()
        return _log_phi_linear_tail(signed / width).flatten(1).sum(1)

    marginal_log_likelihood.time_dependent = True
    return marginal_log_likelihood


#: Below ``-_TAIL`` standard deviations ``log Phi`` is continued by its tangent line.
_TAIL = 1.0


def _log_phi_linear_tail(u: torch.Tensor) -> torch.Tensor:
    """``log Phi(u)`` for ``u >= -1``, its tangent line below: the exact tail where the sign
    is kept (no push beyond it), a bounded slope where the block is decided against it."""
    edge = torch.tensor(-_TAIL, dtype=u.dtype, device=u.device)
    log_edge = torch.special.log_ndtr(edge)
    slope = torch.exp(-0.5 * edge ** 2 - log_edge) / math.sqrt(2 * math.pi)  # phi / Phi
    return torch.where(u >= edge, torch.special.log_ndtr(u.clamp(min=-_TAIL)),
                       log_edge + slope * (u - edge))


def _pool(x: torch.Tensor, b: int) -> torch.Tensor:
    return F.avg_pool2d(x, b) if b > 1 else x


def block_mean_variance(denoiser: Callable, process, x0: torch.Tensor, factor: int, *,
                        num: int = 24, prediction: str = "signal",
                        generator: torch.Generator | None = None) -> BlockMeanVariance:
    """Measure the posterior variance of a block mean given ``x_t``: the denoiser's error.

    At ``num`` states ``t`` spread over those that are ``a_t x_0 + sigma_t eps`` at the full
    shape (the states :func:`ancestral_sample` guides), draw ``x_t`` from clean images ``x0``
    and average the squared error of the predicted block means,
    ``v_t = E[(mean_B(x_0) - mean_B(z(x_t)))^2]``. When ``z`` is the posterior mean this is
    the posterior variance averaged over ``x_t`` (the minimum mean squared error): a
    measured input for :func:`block_sign_likelihood`'s ``variance``, no constant to choose.

    Parameters
    ----------
    denoiser : callable
        ``denoiser(x_t, t, out_shape)`` as for :func:`ancestral_sample`.
    process : LinearDiffusion
    x0 : Tensor, shape (N, \\*shape_at(0))
        Clean images from the data (held out from what the samples will be judged against).
    factor : int
        Block size ``b``: blocks are ``b x b`` squares (dividing the image size).
    num : int, default 24
        Number of states measured (at least 2); other states interpolate (linearly in
        ``log v`` between neighbours, the end values outside).
    prediction : {"signal", "eps"}, default "signal"
    generator : torch.Generator, optional

    Returns
    -------
    BlockMeanVariance
        Callable ``v(t) -> float``; ``timesteps`` and ``values`` hold the measurements.

    Examples
    --------
    >>> import torch, lineardiff
    >>> p = lineardiff.DDPM((1, 4, 4), T=50)
    >>> x0 = torch.ones(8, 1, 4, 4)
    >>> blind = lambda x, t, shape: torch.zeros(x.shape[0], *shape)  # predicts nothing
    >>> v = lineardiff.block_mean_variance(blind, p, x0, 2, num=4)
    >>> v.timesteps, v(25)
    ([1, 17, 34, 50], 1.0)
    """
    where = "block_mean_variance"
    if not isinstance(process, DiffusionProcess):
        raise TypeError(f"{where}: expected a diffusion process, got {type(process).__name__}")
    check_callable(where, "denoiser", denoiser)
    if prediction not in ("signal", "eps"):
        raise ValueError(f"{where}: expected prediction in ('signal', 'eps'), got "
                         f"{prediction!r}")
    x0 = check_real_tensor(where, "x0", x0)
    final = tuple(process.shape_at(0))
    if x0.dim() != len(final) + 1 or tuple(x0.shape[1:]) != final or x0.shape[0] < 1:
        raise ValueError(f"{where}: expected x0 of shape (N, {', '.join(map(str, final))}), "
                         f"got {tuple(x0.shape)}")
    factor = check_int(where, "factor", factor, 1)
    if len(final) < 2 or final[-1] % factor or final[-2] % factor:
        raise ValueError(f"{where}: expected factor dividing the image size {final[-2:]}, "
                         f"got {factor}")
    num = check_int(where, "num", num, 2)
    states = [t for t in range(1, process.T + 1) if guidable(process, t, t) is not None]
    if not states:
        raise ValueError(f"{where}: expected a process with states a_t x_0 + sigma_t eps at "
                         f"the full shape, got {type(process).__name__}")
    picks = sorted({states[round(i * (len(states) - 1) / (num - 1))]
                    for i in range(min(num, len(states)))})
    values = []
    with torch.no_grad():
        for t in picks:
            a, sigma = process.signal_scale(t), process.sigma(t)
            eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
            xt = a * x0 + sigma * eps
            t_batch = torch.full((x0.shape[0],), t, dtype=torch.long)
            out = denoiser(xt, t_batch, final)
            z = out if prediction == "signal" else process.signal_from_noise(xt, out, t, 0)
            err = z.to(x0.dtype) - x0
            err = F.avg_pool2d(err.flatten(0, -3).unsqueeze(1), factor) if factor > 1 else err
            values.append(max(float(err.square().mean()), 1e-12))
    return BlockMeanVariance(picks, values)


class BlockMeanVariance:
    """Measured posterior variances of a block mean (:func:`block_mean_variance`).

    Calling it with a state ``t`` interpolates ``log v`` linearly between the measured
    states; outside them it returns the nearest end value.

    Parameters
    ----------
    timesteps : sequence of int
        Increasing states.
    values : sequence of float
        The variances there (> 0).
    """

    def __init__(self, timesteps, values) -> None:
        where = "BlockMeanVariance"
        timesteps, values = [int(t) for t in timesteps], [float(v) for v in values]
        if not timesteps or len(timesteps) != len(values):
            raise ValueError(f"{where}: expected as many values as timesteps (at least one), "
                             f"got {len(timesteps)} and {len(values)}")
        if any(a >= b for a, b in zip(timesteps, timesteps[1:], strict=False)):
            raise ValueError(f"{where}: expected increasing timesteps, got {timesteps}")
        if not all(v > 0 and math.isfinite(v) for v in values):
            raise ValueError(f"{where}: expected finite values > 0, got {values}")
        self.timesteps, self.values = timesteps, values

    def __call__(self, t: int) -> float:
        ts, vs = self.timesteps, self.values
        if t <= ts[0]:
            return vs[0]
        if t >= ts[-1]:
            return vs[-1]
        j = next(i for i, s in enumerate(ts) if s >= t)
        w = (t - ts[j - 1]) / (ts[j] - ts[j - 1])
        return math.exp((1 - w) * math.log(vs[j - 1]) + w * math.log(vs[j]))

    def __repr__(self) -> str:
        return (f"BlockMeanVariance({len(self.timesteps)} states, t {self.timesteps[0]}.."
                f"{self.timesteps[-1]}, v {min(self.values):.3g}..{max(self.values):.3g})")


def guidable(process, t: int, s: int) -> float | None:
    """``sigma_t^2 / a_t`` when state ``t`` is ``a_t x_0 + sigma_t eps`` at the signal's full
    shape and the prediction for ``s`` is ``x_0`` itself; else None (walk unguided)."""
    final = process.shape_at(0)
    if process.shape_at(t) != final or process.shape_at(s) != final:
        return None
    a, base = process.transition(0, t)
    if base is not None or a <= 0:
        return None
    return process.sigma(t) ** 2 / a


def guided_signal(predict: Callable, x: torch.Tensor, log_likelihood: Callable,
                  factor: float, where: str, t: int) -> torch.Tensor:
    """``z(x) + factor * grad_x log_likelihood(z(x))`` (one backward pass of the network)."""
    z, _, grad = likelihood_gradient(predict, x, log_likelihood, where, t)
    return z if grad is None else z + factor * grad


def likelihood_gradient(predict: Callable, x: torch.Tensor, log_likelihood: Callable,
                        where: str, t: int):
    """``(z(x), log_likelihood(z(x)), grad_x log_likelihood(z(x)))``, all detached; the
    gradient is None when the prediction does not depend on ``x``."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        z = predict(xg)
        ll = log_likelihood(z, t) if getattr(log_likelihood, "time_dependent", False) \
            else log_likelihood(z)
        if not isinstance(ll, torch.Tensor) or tuple(ll.shape) != (x.shape[0],):
            got = tuple(ll.shape) if isinstance(ll, torch.Tensor) else type(ll).__name__
            raise ValueError(f"{where}: expected log_likelihood to return shape "
                             f"({x.shape[0]},) (one value per sample), got {got}")
        if not z.requires_grad:  # a prediction that does not depend on x_t: no correction
            return z, ll.detach(), None
        if not ll.requires_grad:
            raise ValueError(f"{where}: expected log_likelihood to depend differentiably on "
                             "the signal, got a value without a gradient")
        (grad,) = torch.autograd.grad(ll.sum(), xg)
    if not bool(torch.isfinite(grad).all()):
        raise ValueError(f"{where}: the log-likelihood's gradient at t={t} is not finite")
    return z.detach(), ll.detach(), grad
