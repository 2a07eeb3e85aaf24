"""Gradients of :func:`linops.funm`.

Which operators carry tensors that require grad, and the autograd Functions that give
the routes their backward passes: the Daleckii-Krein backward of the dense route, the
backward of the fast Lanczos route with respect to ``v`` (one more ``funm`` call), and
the check that refuses operator gradients a Krylov space that became invariant cannot give.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from ._algebra import Adjoint, Composed, Scaled, Sum
from ._base import LinearOperator
from ._basis_diagonal import BasisDiagonal
from ._dct import DCT2
from ._elementary import Dense, Diagonal, Identity, ScaledIdentity
from ._fft import FFT2
from ._kronecker import Kronecker
from ._lanczos import divided_differences

# operators that hold no tensors of the caller (their matrices are built from sizes)
_PARAMETER_FREE = (Identity, DCT2, FFT2)


def _operator_requires_grad(A: LinearOperator, like: torch.Tensor) -> bool:
    """Whether ``A``'s output depends on tensors that require grad (grad mode assumed on).

    Known operators are inspected; for any other (a :class:`FunctionOperator` capturing
    parameters, a user subclass) one application to a zero sample tells: autograd marks
    the output as requiring grad exactly when a captured tensor does.
    """

    def needs(t) -> bool:
        return isinstance(t, torch.Tensor) and t.requires_grad

    def walk(op) -> bool | None:  # None: unknown, probe
        if isinstance(op, _PARAMETER_FREE):
            return False
        if isinstance(op, ScaledIdentity):
            return needs(op.scale)
        if isinstance(op, Diagonal):
            return needs(op.diag)
        if isinstance(op, Dense):
            return needs(op.matrix)
        if isinstance(op, BasisDiagonal):
            inner = walk(op.basis)
            return None if inner is None else (needs(op.diag) or inner)
        if isinstance(op, Scaled):
            inner = walk(op.operator)
            return None if inner is None else (needs(op.scale) or inner)
        if isinstance(op, Adjoint):
            return walk(op.operator)
        if isinstance(op, (Sum, Composed)):
            parts = [walk(o) for o in op.operators]
            if any(p is True for p in parts):
                return True
            return None if any(p is None for p in parts) else False
        if isinstance(op, Kronecker):
            inputs = getattr(op, "_inputs", ())
            if any(isinstance(f, LinearOperator) for f in inputs):
                return None
            return any(needs(f) for f in inputs)
        return None

    known = walk(A)
    if known is not None:
        return known
    zero = torch.zeros((1, *A.in_shape), dtype=like.dtype, device=like.device)
    return bool(A.apply(zero).requires_grad)


class _DenseFunction(torch.autograd.Function):
    """``f(D) v`` for a real symmetric matrix ``D`` with the Daleckii-Krein backward.

    ``eigh``'s own backward divides by eigenvalue gaps (inf/NaN at the repeated
    eigenvalues of, e.g., ``I - rho R^T R``); the derivative of ``f(D)`` uses divided
    differences instead (see :class:`linops._lanczos.TridiagonalFunction`):
    ``grad_D = U (F^[1] ∘ (U^T G U)) U^T`` with ``G = sum_b g_b v_b^T``, and
    ``grad_v = f(D) g`` (``f(D)`` is symmetric).
    """

    @staticmethod
    def forward(ctx, D, flat, f, fprime):  # noqa: N803
        lam, U = torch.linalg.eigh(D)
        fx = f(lam)
        ctx.save_for_backward(lam, U, fx, flat)
        ctx.fprime = fprime
        return (flat @ U) * fx @ U.mT, lam

    @staticmethod
    def backward(ctx, g, _):
        lam, U, fx, flat = ctx.saved_tensors
        grad_v = (g @ U) * fx @ U.mT if ctx.needs_input_grad[1] else None
        grad_D = None  # noqa: N806
        if ctx.needs_input_grad[0]:
            F1 = divided_differences(lam, fx, ctx.fprime)  # noqa: N806
            inner = F1 * ((g @ U).mT @ (flat @ U))  # U^T (sum_b g_b v_b^T) U
            grad_D = U @ inner @ U.mT  # noqa: N806
        return grad_D, grad_v, None, None


class _SelfAdjointLinear(torch.autograd.Function):
    """``y = F v`` for a self-adjoint ``F`` given as a callable: the backward is ``F g``.

    The forward value is computed outside (by the fast in-place Lanczos); the backward is
    one more ``funm`` call, not a pass back through the iterations.
    """

    @staticmethod
    def forward(ctx, v, value, apply):
        ctx.adjoint = apply  # (ctx.apply is the engine's entry point)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        return ctx.adjoint(g), None, None


class _InvariantCheck(torch.autograd.Function):
    """Identity in the forward pass; the backward refuses gradients it cannot compute.

    When the Krylov space of a right-hand side became invariant after ``k < n`` steps,
    backpropagating through Lanczos gives the operator's tensors the gradient of
    ``Q_k f(Q_k^T A Q_k) e_1``, which equals that of ``f(A) v`` only for incoming
    gradients inside the Krylov space (checked here, to ``sqrt(eps)``).
    """

    @staticmethod
    def forward(ctx, value, basis, rows, where):
        ctx.basis, ctx.rows, ctx.where = basis, rows, where
        return value.view_as(value)

    @staticmethod
    def backward(ctx, g):
        eps = torch.finfo(g.dtype).eps
        for row, Q in zip(ctx.rows, ctx.basis, strict=True):  # noqa: N806
            gr = g[row].detach()
            outside = gr - Q.mT @ (Q @ gr)
            if float(torch.linalg.vector_norm(outside)) > math.sqrt(eps) * float(
                torch.linalg.vector_norm(gr)
            ):
                raise RuntimeError(
                    f"{ctx.where}: the gradient with respect to the operator's tensors is not "
                    f"available by Lanczos here: the Krylov space of right-hand side {row} "
                    f"became invariant after {Q.shape[0]} < n steps and the incoming gradient "
                    "has a part outside it, which couples to the rest of the spectrum. Use "
                    "method='dense' (small operators) or a structured operator (method='exact')"
                )
        return g, None, None, None
