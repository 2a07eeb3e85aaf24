"""Recognise operators whose matrix functions are exact: ``a I + b (G_h ⊗ G_w)`` and friends."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._algebra import Adjoint, Composed, Scaled, Sum
from ._base import LinearOperator
from ._elementary import Identity, ScaledIdentity
from ._kronecker import Kronecker
from ._utils import real_dtype


@dataclass(frozen=True)
class KronFactors:
    """``G_h ⊗ G_w`` on trailing ``(H, W)`` (identity on ``lead`` axes), as dense factors."""

    G_h: torch.Tensor
    G_w: torch.Tensor


@dataclass(frozen=True)
class ShiftedKronecker:
    """The operator ``a I + b (G_h ⊗ G_w)``; ``kron`` is None when ``b == 0``."""

    a: float
    b: float
    kron: KronFactors | None


def _real_scale(scale) -> float | None:
    if isinstance(scale, torch.Tensor):
        return None if scale.is_complex() else float(scale.item())
    return None if isinstance(scale, complex) else float(scale)


def _kron_factors(op: LinearOperator, dtype, device) -> KronFactors | None:
    """Dense 1-D factors of a Kronecker-structured operator, or None."""
    if isinstance(op, Kronecker):
        if op.is_complex:
            return None
        g_h, g_w = op.factor_matrices(dtype=dtype, device=device)
        return KronFactors(g_h, g_w)
    if isinstance(op, Scaled):
        scale = _real_scale(op.scale)
        inner = None if scale is None else _kron_factors(op.operator, dtype, device)
        return None if inner is None else KronFactors(scale * inner.G_h, inner.G_w)
    if isinstance(op, (Identity, ScaledIdentity)) and len(op.in_shape) >= 2:
        scale = 1.0 if isinstance(op, Identity) else _real_scale(op.scale)
        if scale is None:
            return None
        h, w = op.in_shape[-2:]
        eye = torch.eye
        return KronFactors(
            scale * eye(h, dtype=dtype, device=device), eye(w, dtype=dtype, device=device)
        )
    if isinstance(op, Adjoint):
        inner = _kron_factors(op.operator, dtype, device)
        return None if inner is None else KronFactors(inner.G_h.T, inner.G_w.T)
    if isinstance(op, Composed):
        parts = [_kron_factors(o, dtype, device) for o in op.operators]
        if any(p is None for p in parts) or not parts:
            return None
        g_h, g_w = parts[0].G_h, parts[0].G_w
        for p in parts[1:]:
            g_h, g_w = g_h @ p.G_h, g_w @ p.G_w
        return KronFactors(g_h, g_w)
    return None


def shifted_kronecker(op: LinearOperator, dtype, device) -> ShiftedKronecker | None:
    """Write ``op`` as ``a I + b (G_h ⊗ G_w)`` with real scalars, or return None.

    Recognises identities, scaled identities, Kronecker operators (``Resize``,
    ``GaussianBlur``, ``Kronecker``), their adjoints and compositions (``R.H @ R``
    is ``(R_h^T R_h) ⊗ (R_w^T R_w)``), real multiples, and sums with at most one
    Kronecker term. Composed factors are computed in ``dtype`` on ``device``.
    """
    dtype = real_dtype(dtype)
    if op.in_shape != op.out_shape:
        return None
    if isinstance(op, Identity):
        return ShiftedKronecker(1.0, 0.0, None)
    if isinstance(op, ScaledIdentity):
        return (
            None if isinstance(op.scale, complex) else ShiftedKronecker(float(op.scale), 0.0, None)
        )
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
            a += part.a
            if part.kron is not None:
                if kron is not None:
                    return None  # two Kronecker terms do not share eigenvectors in general
                kron, b = part.kron, part.b
        return ShiftedKronecker(a, b, kron)
    if len(op.in_shape) < 2:
        return None
    kron = _kron_factors(op, dtype, device)
    if kron is None:
        return None
    return ShiftedKronecker(0.0, 1.0, kron)
