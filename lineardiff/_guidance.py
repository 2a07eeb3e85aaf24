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

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._checks import check_real, check_real_tensor

__all__ = ["block_sign_likelihood"]


def block_sign_likelihood(blocks: torch.Tensor, *, beta: float = 8.0) -> Callable:
    """Log-likelihood of block signs (majority-rule block spins) of an image.

    ``log p(s | x) = sum_B log sigmoid(beta s_B mean_B(x))``: each block's mean should have
    the sign ``s_B``. A block of the signal larger than ``blocks`` by a factor ``b`` is a
    ``b x b`` square; ``beta`` sets how sharp the rule is (8: 0.98 for a 3-1 block of +-1
    spins, 1/2 for a tie, so the ties of a random tie-break are not penalised). A zero entry of
    ``blocks`` observes nothing.

    Parameters
    ----------
    blocks : Tensor, shape (N, C, h, w)
        Signs in {-1, 0, +1} (any real values are reduced to their sign).
    beta : float, default 8.0

    Returns
    -------
    callable
        ``log_likelihood(x) -> Tensor (N,)`` for images ``x`` of shape
        ``(N, C, b h, b w)``, for :func:`ancestral_sample`'s ``log_likelihood``.

    Examples
    --------
    >>> import torch, lineardiff
    >>> ll = lineardiff.block_sign_likelihood(torch.ones(1, 1, 2, 2))
    >>> bool(ll(torch.ones(1, 1, 4, 4)) > ll(-torch.ones(1, 1, 4, 4)))
    True
    """
    where = "block_sign_likelihood"
    blocks = check_real_tensor(where, "blocks", blocks)
    if blocks.dim() != 4:
        raise ValueError(f"{where}: expected blocks of shape (N, C, h, w), got "
                         f"{tuple(blocks.shape)}")
    beta = check_real(where, "beta", beta, low=0)
    signs = torch.sign(blocks)

    def log_likelihood(x: torch.Tensor) -> torch.Tensor:
        h, w = signs.shape[-2:]
        if (x.dim() != 4 or x.shape[:2] != signs.shape[:2] or x.shape[-1] % w
                or x.shape[-2] % h or x.shape[-1] // w != x.shape[-2] // h):
            raise ValueError(
                f"{where}: expected images of shape ({signs.shape[0]}, {signs.shape[1]}, "
                f"b*{h}, b*{w}), got {tuple(x.shape)}"
            )
        b = x.shape[-1] // w
        mean = F.avg_pool2d(x, b) if b > 1 else x
        s = signs.to(dtype=x.dtype, device=x.device)
        return F.logsigmoid(beta * s * mean).flatten(1).sum(1)

    return log_likelihood


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
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        z = predict(xg)
        ll = log_likelihood(z)
        if not isinstance(ll, torch.Tensor) or tuple(ll.shape) != (x.shape[0],):
            got = tuple(ll.shape) if isinstance(ll, torch.Tensor) else type(ll).__name__
            raise ValueError(f"{where}: expected log_likelihood to return shape "
                             f"({x.shape[0]},) (one value per sample), got {got}")
        if not z.requires_grad:  # a prediction that does not depend on x_t: no correction
            return z
        if not ll.requires_grad:
            raise ValueError(f"{where}: expected log_likelihood to depend differentiably on "
                             "the signal, got a value without a gradient")
        (grad,) = torch.autograd.grad(ll.sum(), xg)
    if not bool(torch.isfinite(grad).all()):
        raise ValueError(f"{where}: the log-likelihood's gradient at t={t} is not finite")
    return z.detach() + factor * grad
