"""Wrap any linear callable as an operator; adjoint by autograd."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._base import LinearOperator
from ._utils import format_shape
from ._vjp import VJPAdjoint

__all__ = ["FunctionOperator"]


class FunctionOperator(LinearOperator):
    """A linear operator from any linear callable; the adjoint comes from autograd.

    This is how a new degradation is plugged in without writing an adjoint:
    ``fn`` is applied for the forward map, and ``fn^H y`` is the vector-Jacobian
    product of ``fn`` (exact to rounding for a linear ``fn``; the SSD paper's
    Algorithm 2). The pullback is linearised once per dtype and device and
    reused for every call through :func:`torch.func.vmap`, so there is no
    autograd graph per call where ``vmap`` can trace ``fn``.

    Parameters
    ----------
    fn : callable
        Maps a tensor of shape ``(N, *in_shape)`` to ``(N, *out_shape)``. It must
        be linear, act on each sample independently and be differentiable by
        autograd. It is not checked for linearity: use
        :func:`linops.testing.check_dense` and :func:`linops.testing.dottest`.
    in_shape, out_shape : sequence of int
        Per-sample shapes.
    adjoint : callable, optional
        A hand-written adjoint with the same calling convention. Without it the
        VJP route is used.

    Examples
    --------
    >>> import torch, linops
    >>> import torch.nn.functional as F
    >>> pool = linops.FunctionOperator(lambda x: F.avg_pool2d(x, 2), (1, 4, 4), (1, 2, 2))
    >>> pool.apply_adjoint(torch.ones(1, 2, 2))
    tensor([[[0.2500, 0.2500, 0.2500, 0.2500],
             [0.2500, 0.2500, 0.2500, 0.2500],
             [0.2500, 0.2500, 0.2500, 0.2500],
             [0.2500, 0.2500, 0.2500, 0.2500]]])
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        in_shape,
        out_shape,
        *,
        adjoint: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(
                f"FunctionOperator: expected fn to be callable, got {type(fn).__name__}"
            )
        if adjoint is not None and not callable(adjoint):
            raise TypeError(
                "FunctionOperator: expected adjoint to be callable or None, "
                f"got {type(adjoint).__name__}"
            )
        super().__init__(in_shape, out_shape)
        self.fn = fn
        self.adjoint_fn = adjoint
        self._vjp = VJPAdjoint(fn, self.in_shape)

    @property
    def name(self) -> str:
        return f"FunctionOperator[{getattr(self.fn, '__name__', type(self.fn).__name__)}]"

    def _check(self, out, expected, where):
        if not isinstance(out, torch.Tensor) or tuple(out.shape[1:]) != expected:
            got = format_shape(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"{self.name}.{where}: expected the callable to return shape "
                f"(N, *{format_shape(expected)}), got {got}"
            )
        return out

    def _apply(self, x):
        return self._check(self.fn(x), self.out_shape, "apply")

    def _apply_adjoint(self, y):
        if self.adjoint_fn is not None:
            return self._check(self.adjoint_fn(y), self.in_shape, "apply_adjoint")
        return self._vjp(y)
