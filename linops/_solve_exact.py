"""Exact solves for operators whose eigenvectors are known: multiples of the identity,
diagonals, ``BasisDiagonal`` and ``a I + b (G_h ⊗ G_w)``."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._algebra import Adjoint, Composed, Scaled, Sum
from ._base import LinearOperator
from ._basis_diagonal import BasisDiagonal
from ._elementary import Diagonal, Identity, ScaledIdentity
from ._funm_exact import _cached_eigh, _exact_kronecker, _symmetric
from ._structure import shifted_kronecker
from ._utils import cast_like, real_dtype

__all__ = ["ExactRoute", "exact_route"]


@dataclass(frozen=True)
class ExactRoute:
    """An exact (pseudo-)inverse: ``solve(b, adjoint)`` returns ``A^+ b`` or ``(A^H)^+ b``
    for ``b`` of shape ``(B, *in_shape)``."""

    method: str
    solve: Callable[[torch.Tensor, bool], torch.Tensor]


@dataclass(frozen=True)
class _DiagonalForm:
    """``V^H diag(d) V`` (``basis`` is ``V``), or ``diag(d)`` when ``basis`` is None; ``d``
    is float64/complex128, broadcastable to the operator's shape (0-d for ``c I``)."""

    basis: LinearOperator | None
    d: torch.Tensor


def _as_tensor(value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        # a Python number straight to double precision (as_tensor would round it to float32)
        return torch.tensor(
            value, dtype=torch.complex128 if isinstance(value, complex) else torch.float64
        )
    t = value.detach()
    if t.dim() == 0:
        t = t.cpu()  # a CPU scalar mixes with tensors on any device
    return t.to(torch.complex128 if t.is_complex() else torch.float64)


def _combine(forms, op) -> _DiagonalForm | None:
    """Sum or product of diagonal forms that share their eigenvectors, or None."""
    if any(f is None for f in forms):
        return None
    bases = [f.basis for f in forms if f.basis is not None]
    if any(b is not bases[0] for b in bases):
        return None  # two different bases do not share eigenvectors in general
    basis = bases[0] if bases else None
    if basis is not None and any(f.basis is None and f.d.numel() != 1 for f in forms):
        return None  # an elementwise diagonal does not commute with a transform
    d = forms[0].d
    for f in forms[1:]:
        d = op(d, f.d)
    return _DiagonalForm(basis, d)


def _diagonal_form(A: LinearOperator) -> _DiagonalForm | None:
    if isinstance(A, Identity):
        return _DiagonalForm(None, _as_tensor(1.0))
    if isinstance(A, ScaledIdentity):
        return _DiagonalForm(None, _as_tensor(A.scale))
    if isinstance(A, Diagonal):
        return _DiagonalForm(None, _as_tensor(A.diag))
    if isinstance(A, BasisDiagonal):
        return _DiagonalForm(A.basis, _as_tensor(A.diag))
    if isinstance(A, Scaled):
        inner = _diagonal_form(A.operator)
        if inner is None:
            return None
        return _DiagonalForm(inner.basis, inner.d * _as_tensor(A.scale))
    if isinstance(A, Adjoint):
        inner = _diagonal_form(A.operator)
        return None if inner is None else _DiagonalForm(inner.basis, inner.d.conj())
    if isinstance(A, Sum):
        return _combine([_diagonal_form(op) for op in A.operators], torch.add)
    if isinstance(A, Composed):
        return _combine([_diagonal_form(op) for op in A.operators], torch.mul)
    return None


def _pinv_scalars(d: torch.Tensor, rcond: float) -> torch.Tensor:
    """``1 / d`` where ``|d| > rcond max|d|``, else 0 (the pseudo-inverse of ``diag(d)``)."""
    big = d.abs() > rcond * d.abs().max()
    return torch.where(big, 1 / torch.where(big, d, torch.ones_like(d)), torch.zeros_like(d))


def _rcond(A: LinearOperator, dtype: torch.dtype) -> float:
    # numpy.linalg.lstsq's default cut-off: n eps of the working precision
    return math.prod(A.in_shape) * torch.finfo(real_dtype(dtype)).eps


def _diagonal_route(A, form: _DiagonalForm, dtype) -> ExactRoute:
    inv = _pinv_scalars(form.d, _rcond(A, dtype))

    def solve(b, adjoint):
        s = cast_like(inv.conj() if adjoint else inv, b)
        if form.basis is None:
            return b * s
        return form.basis.apply_adjoint(form.basis.apply(b) * s)

    if form.basis is not None:
        method = "basis_diagonal"
    else:
        method = "scaled_identity" if form.d.numel() == 1 else "diagonal"
    return ExactRoute(method, solve)


def _kronecker_route(A, dtype, device) -> ExactRoute | None:
    if len(A.in_shape) < 2:
        return None
    sk = shifted_kronecker(A, torch.float64, device)
    if sk is None or sk.kron is None:
        return None
    if not (_symmetric(sk.kron.G_h) and _symmetric(sk.kron.G_w)):
        return None
    # the same symmetrised factors as _exact_kronecker, so the eigh cache serves both
    lam_h, _ = _cached_eigh((sk.kron.G_h + sk.kron.G_h.T) / 2)
    lam_w, _ = _cached_eigh((sk.kron.G_w + sk.kron.G_w.T) / 2)
    eig = sk.a + sk.b * lam_h[:, None] * lam_w[None, :]
    floor = _rcond(A, dtype) * float(eig.detach().abs().max())

    def reciprocal(e):
        big = e.abs() > floor
        return torch.where(big, 1 / torch.where(big, e, torch.ones_like(e)), torch.zeros_like(e))

    def solve_real(v):
        out, _ = _exact_kronecker(sk, v.to(torch.float64), reciprocal, None, "solve")
        return out.to(v.dtype)

    def solve(b, adjoint):
        # a real a I + b (G_h ⊗ G_w) with symmetric factors is self-adjoint: adjoint is moot
        if b.is_complex():
            both = solve_real(torch.cat([b.real, b.imag]))
            return torch.complex(*both.chunk(2))
        return solve_real(b)

    return ExactRoute("kronecker", solve)


def exact_route(A: LinearOperator, dtype: torch.dtype, device) -> ExactRoute | None:
    """The exact route for a square ``A``, or None when its structure is not known."""
    if A.in_shape != A.out_shape:
        return None
    form = _diagonal_form(A)
    if form is not None:
        return _diagonal_route(A, form, dtype)
    return _kronecker_route(A, dtype, device)
