"""Adjoints of linear callables by autograd vector-Jacobian products."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch.func import vjp, vmap

from ._utils import TensorCache


class VJPAdjoint:
    """The adjoint of a linear map ``fn`` by vector-Jacobian product.

    For a linear ``fn``, ``fn^H y`` is the gradient of ``<fn(x), y>`` with
    respect to ``x`` at any ``x`` (the SSD paper's Algorithm 2). The map is
    linearised once per dtype and device on a single zero sample with
    :func:`torch.func.vjp`; a batch is then handled with :func:`torch.func.vmap`
    over that one pullback, so no autograd graph is built per call. Callables
    that ``vmap`` cannot trace fall back to a fresh ``torch.autograd.grad``
    graph per call, which is always correct but slower.

    Parameters
    ----------
    fn : callable
        Linear map from ``(N, *in_shape)`` to ``(N, *out_shape)`` acting on
        each sample independently.
    in_shape : tuple of int
    """

    def __init__(self, fn: Callable, in_shape: tuple[int, ...]) -> None:
        self.fn = fn
        self.in_shape = in_shape
        self._cache = TensorCache()
        self._use_vmap = True

    def _pullback(self, y: torch.Tensor):
        def build():
            zero = torch.zeros((1, *self.in_shape), dtype=y.dtype, device=y.device)
            _, pullback = vjp(self.fn, zero)
            return pullback

        return self._cache.get((y.dtype, y.device), build)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        if self._use_vmap:
            try:
                pullback = self._pullback(y)
                with warnings.catch_warnings():
                    # "no batching rule, falling back to a loop" is a speed note, not an error
                    warnings.filterwarnings("ignore", message=".*batching rule.*")
                    (out,) = vmap(pullback)(y.unsqueeze(1))
                return out.squeeze(1)
            except RuntimeError:
                # vmap could not trace ``fn`` (e.g. a data-dependent Python branch or an
                # op without a batching rule): the graph-per-call route below always works.
                self._use_vmap = False
        return self.fresh_graph(y)

    def fresh_graph(self, y: torch.Tensor) -> torch.Tensor:
        """The adjoint through a new autograd graph at ``x = 0`` (the paper's route)."""
        with torch.enable_grad():
            x = torch.zeros((y.shape[0], *self.in_shape), dtype=y.dtype, device=y.device)
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(self.fn(x), x, y)
        return grad
