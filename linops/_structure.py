"""Recognise operators whose matrix functions are exact: ``a I + b (G_h ⊗ G_w)`` and friends."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._algebra import Adjoint, Composed, Scaled, Sum
from ._base import LinearOperator
from ._elementary import Identity, ScaledIdentity
from ._kronecker import Kronecker
from ._utils import real_dtype

#: a real scalar: a Python float, or a 0-d real tensor that carries gradients
Scalar = float | torch.Tensor


@dataclass(frozen=True)
class KronFactors:
    """``G_h ⊗ G_w`` on trailing ``(H, W)`` (identity on ``lead`` axes), as dense factors.

    The factors never require grad: scalar multiples are kept apart (in
    :attr:`ShiftedKronecker.b`), so that a scalar given as a tensor keeps its gradient.
    """

    G_h: torch.Tensor
    G_w: torch.Tensor


@dataclass(frozen=True)
class ShiftedKronecker:
    """The operator ``a I + b (G_h ⊗ G_w)``; ``kron`` is None when ``b == 0``.

    ``a`` and ``b`` are Python floats, or 0-d real tensors when a scalar of the operator
    was a tensor that requires grad (and grad mode is on): they are never turned into
    Python numbers on a path that autograd records.
    """

    a: Scalar
    b: Scalar
    kron: KronFactors | None

    @property
    def differentiable(self) -> bool:
        """Whether ``a`` or ``b`` is a tensor that requires grad."""
        return any(isinstance(s, torch.Tensor) and s.requires_grad for s in (self.a, self.b))


def _real_scale(scale) -> Scalar | None:
    """A real scale as a float, as the tensor itself if it carries gradients, or None."""
    if isinstance(scale, torch.Tensor):
        if scale.is_complex():
            return None
        if scale.requires_grad and torch.is_grad_enabled():
            return scale
        return float(scale.item())
    return None if isinstance(scale, complex) else float(scale)


def _kron_factors(op: LinearOperator, dtype, device) -> KronFactors | None:
    """Dense 1-D factors of a Kronecker-structured operator (scale folded into ``G_h``), or None."""
    found = _scaled_kron_factors(op, dtype, device)
    if found is None:
        return None
    c, kron = found
    return kron if isinstance(c, float) and c == 1.0 else KronFactors(c * kron.G_h, kron.G_w)


def _scaled_kron_factors(op: LinearOperator, dtype, device) -> tuple[Scalar, KronFactors] | None:
    """``(c, KronFactors)`` with ``op = c (G_h ⊗ G_w)`` for a Kronecker-structured ``op``."""
    if isinstance(op, Kronecker):
        if op.is_complex:
            return None
        g_h, g_w = op.factor_matrices(dtype=dtype, device=device)
        if g_h.requires_grad or g_w.requires_grad:
            # learnable factors: their eigendecompositions would need gradients of eigh
            # (unstable at the repeated eigenvalues of R^T R); the Lanczos and dense routes
            # differentiate through the operator instead
            return None
        return 1.0, KronFactors(g_h, g_w)
    if isinstance(op, Scaled):
        scale = _real_scale(op.scale)
        inner = None if scale is None else _scaled_kron_factors(op.operator, dtype, device)
        return None if inner is None else (scale * inner[0], inner[1])
    if isinstance(op, (Identity, ScaledIdentity)) and len(op.in_shape) >= 2:
        scale = 1.0 if isinstance(op, Identity) else _real_scale(op.scale)
        if scale is None:
            return None
        h, w = op.in_shape[-2:]
        eye = torch.eye
        return scale, KronFactors(
            eye(h, dtype=dtype, device=device), eye(w, dtype=dtype, device=device)
        )
    if isinstance(op, Adjoint):
        inner = _scaled_kron_factors(op.operator, dtype, device)
        return None if inner is None else (inner[0], KronFactors(inner[1].G_h.T, inner[1].G_w.T))
    if isinstance(op, Composed):
        parts = [_scaled_kron_factors(o, dtype, device) for o in op.operators]
        if any(p is None for p in parts) or not parts:
            return None
        c, g_h, g_w = parts[0][0], parts[0][1].G_h, parts[0][1].G_w
        for s, p in parts[1:]:
            c, g_h, g_w = c * s, g_h @ p.G_h, g_w @ p.G_w
        return c, KronFactors(g_h, g_w)
    return None


def shifted_kronecker(op: LinearOperator, dtype, device) -> ShiftedKronecker | None:
    """Write ``op`` as ``a I + b (G_h ⊗ G_w)`` with real scalars, or return None.

    Recognises identities, scaled identities, Kronecker operators (``Resize``,
    ``GaussianBlur``, ``Kronecker``), their adjoints and compositions (``R.H @ R``
    is ``(R_h^T R_h) ⊗ (R_w^T R_w)``), real multiples, and sums with at most one
    Kronecker term. Composed factors are computed in ``dtype`` on ``device``; every
    scalar multiple is gathered into ``a`` and ``b`` (a tensor that requires grad stays a
    tensor), so the factors themselves carry no scale.
    """
    dtype = real_dtype(dtype)
    if op.in_shape != op.out_shape:
        return None
    if isinstance(op, Identity):
        return ShiftedKronecker(1.0, 0.0, None)
    if isinstance(op, ScaledIdentity):
        scale = _real_scale(op.scale)
        return None if scale is None else ShiftedKronecker(scale, 0.0, None)
    if isinstance(op, Scaled):
        scale = _real_scale(op.scale)
        if scale is None:
            return None
        inner = shifted_kronecker(op.operator, dtype, device)
        if inner is None:
            return None
        return ShiftedKronecker(scale * inner.a, scale * inner.b, inner.kron)
    if isinstance(op, Sum):
        a, b, kron = 0.0, 0.0, None
        for term in op.operators:
            part = shifted_kronecker(term, dtype, device)
            if part is None:
                return None
            a = a + part.a
            if part.kron is not None:
                if kron is not None:
                    return None  # two Kronecker terms do not share eigenvectors in general
                kron, b = part.kron, part.b
        return ShiftedKronecker(a, b, kron)
    if len(op.in_shape) < 2:
        return None
    found = _scaled_kron_factors(op, dtype, device)
    if found is None:
        return None
    return ShiftedKronecker(0.0, found[0], found[1])
