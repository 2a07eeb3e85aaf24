"""Checks for linear operators, for the library's tests and for yours.

Both helpers raise :class:`AssertionError` with a readable message when the
check fails, so they drop straight into a test function.

Tolerances are *size-aware*: rounding errors of a sum of ``N`` terms grow
like ``sqrt(N) * eps`` for random data, so both checks accept a normalised
discrepancy up to ``C * eps(dtype) * sqrt(n_in + n_out)``, where ``n_in`` and
``n_out`` are the numbers of input and output entries. The default ``C = 10``
leaves room for operators that sum a few times more terms than they have
outputs (interpolation, blur), while a wrong adjoint on random vectors is off
by about ``1 / sqrt(n_out)`` of the norms, far above that.
"""

from __future__ import annotations

import math

import torch

from ._base import LinearOperator
from ._utils import complex_dtype

__all__ = ["check_dense", "dottest"]


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def _tolerance(op: LinearOperator, dtype: torch.dtype, C: float) -> float:
    n_in, n_out = op.shape[1], op.shape[0]
    return C * _eps(dtype) * math.sqrt(n_in + n_out)


def _check_op(op, dtype, where):
    if not isinstance(op, LinearOperator):
        raise TypeError(f"{where}: expected a LinearOperator, got {type(op).__name__}")
    if not isinstance(dtype, torch.dtype) or dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{where}: expected dtype torch.float32 or torch.float64, got {dtype!r}")


def _randn(shape, dtype, device, generator, complex_):
    if complex_:
        real = torch.randn(shape, dtype=dtype, device=device, generator=generator)
        imag = torch.randn(shape, dtype=dtype, device=device, generator=generator)
        return torch.complex(real, imag) / math.sqrt(2)
    return torch.randn(shape, dtype=dtype, device=device, generator=generator)


def dottest(
    op: LinearOperator,
    *,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    device=None,
    C: float = 10.0,
    batch_size: int = 2,
) -> float:
    """Dot-product test of the adjoint: ``<A u, v> == <u, A^H v>``.

    Draws random ``u`` (shape ``(batch_size, *in_shape)``) and ``v`` and checks

    ``|<A u, v> - <u, A^H v>| <= C eps sqrt(n_in + n_out) max(||A u|| ||v||, ||u|| ||A^H v||)``
    with ``eps = torch.finfo(dtype).eps``.

    Unlike a test relative to ``|<A u, v>|`` (PyLops' ``dottest``), which
    shrinks like ``1 / sqrt(n)`` for random vectors and fails at random in
    float32, this bound is scaled to the size of the terms that are rounded.
    Complex operators (``op.is_complex``) are tested with complex vectors and
    ``<a, b> = sum(conj(a) b)``.

    Parameters
    ----------
    op : LinearOperator
    dtype : {torch.float32, torch.float64}, default float64
        Precision of the test vectors.
    generator : torch.Generator, optional
        Source of the random vectors (a fixed seed when omitted).
    device : torch.device or str, optional
    C : float, default 10.0
        Safety factor of the tolerance.
    batch_size : int, default 2
        Number of vector pairs, tested jointly (this also exercises batching).

    Returns
    -------
    float
        The normalised discrepancy (left side over the norm product).

    Raises
    ------
    AssertionError
        If the discrepancy exceeds the tolerance.

    Examples
    --------
    >>> import torch, linops
    >>> from linops.testing import dottest
    >>> R = linops.Resize((3, 17, 13), (8, 20), mode="bicubic")
    >>> dottest(R, dtype=torch.float32) < 1e-5
    True
    """
    _check_op(op, dtype, "dottest")
    if generator is None:
        generator = torch.Generator(device=device or "cpu").manual_seed(1234)
    u = _randn((batch_size, *op.in_shape), dtype, device, generator, op.is_complex)
    v = _randn((batch_size, *op.out_shape), dtype, device, generator, op.is_complex)
    Au = op.apply(u)
    AHv = op.apply_adjoint(v)
    if Au.is_complex() != v.is_complex():
        v = v.to(complex_dtype(dtype))
    if AHv.is_complex() != u.is_complex():
        u = u.to(complex_dtype(dtype))
    lhs = torch.vdot(Au.reshape(-1), v.reshape(-1))
    rhs = torch.vdot(u.reshape(-1), AHv.reshape(-1))
    scale = max(
        (torch.linalg.vector_norm(Au) * torch.linalg.vector_norm(v)).item(),
        (torch.linalg.vector_norm(u) * torch.linalg.vector_norm(AHv)).item(),
    )
    mismatch = abs((lhs - rhs).item()) / scale if scale > 0 else 0.0
    tol = _tolerance(op, dtype, C)
    if not mismatch <= tol:
        raise AssertionError(
            f"dottest: {op.name} fails the adjoint test in {dtype}: "
            f"|<Au, v> - <u, A^H v>| / (norms) = {mismatch:.3e} > tolerance {tol:.3e} "
            f"(<Au, v> = {complex(lhs.item())}, <u, A^H v> = {complex(rhs.item())})"
        )
    return mismatch


def _close(name: str, got: torch.Tensor, want: torch.Tensor, scale: float, tol: float) -> None:
    err = torch.linalg.vector_norm((got - want).reshape(-1)).item()
    rel = err / scale if scale > 0 else err
    if not rel <= tol:
        raise AssertionError(
            f"check_dense: {name}: normalised error {rel:.3e} > tolerance {tol:.3e}"
        )


def check_dense(
    op: LinearOperator,
    *,
    reference: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    device=None,
    C: float = 10.0,
    batch_size: int = 3,
) -> torch.Tensor:
    """Compare an operator with its dense matrix (and an independent reference).

    Checks, with the size-aware tolerance of this module (errors normalised by
    ``||D||_F`` times the vector norm over ``sqrt(n_in)``, and by ``||D||_F`` for
    matrices):

    1. ``op.to_dense()`` equals ``reference`` when one is given (build it by a
       different route: scipy, a formula, ``torch.kron`` of known factors);
    2. the matrix of the adjoint, ``op.H.to_dense()`` (built from
       ``apply_adjoint``), equals ``op.to_dense().mH``;
    3. ``apply`` on a random batch equals ``D @ x`` and ``apply_adjoint`` equals
       ``D^H @ y`` (batching and linearity).

    Parameters
    ----------
    op : LinearOperator
    reference : Tensor, shape (prod(out_shape), prod(in_shape)), optional
    dtype : {torch.float32, torch.float64}, default float64
    generator : torch.Generator, optional
    device : torch.device or str, optional
    C : float, default 10.0
        Safety factor of the tolerance.
    batch_size : int, default 3

    Returns
    -------
    Tensor
        The dense matrix ``op.to_dense(dtype=dtype)``.

    Raises
    ------
    AssertionError
        If any comparison fails.

    Examples
    --------
    >>> import torch, linops
    >>> from linops.testing import check_dense
    >>> M = torch.randn(5, 7, dtype=torch.float64)
    >>> check_dense(linops.Dense(M), reference=M).shape
    torch.Size([5, 7])
    """
    _check_op(op, dtype, "check_dense")
    if generator is None:
        generator = torch.Generator(device=device or "cpu").manual_seed(4321)
    tol = _tolerance(op, dtype, C)
    D = op.to_dense(dtype=dtype, device=device)
    m, n = op.shape
    if tuple(D.shape) != (m, n):
        raise AssertionError(f"check_dense: to_dense has shape {tuple(D.shape)}, expected {(m, n)}")
    norm = torch.linalg.matrix_norm(D).item()
    if reference is not None:
        reference = torch.as_tensor(reference)
        if tuple(reference.shape) != (m, n):
            raise AssertionError(
                f"check_dense: reference has shape {tuple(reference.shape)}, expected {(m, n)}"
            )
        ref = reference.to(device=D.device, dtype=D.dtype if D.is_complex() else dtype)
        if ref.is_complex() and not D.is_complex():
            D = D.to(ref.dtype)
        _close(f"{op.name}.to_dense() vs reference", D, ref, max(norm, 1e-300), tol)
    D_adj = op.H.to_dense(dtype=dtype, device=device)
    _close(
        f"{op.name} adjoint matrix vs to_dense().mH",
        D_adj.to(D.dtype),
        D.mH,
        max(norm, 1e-300),
        tol,
    )
    x = _randn((batch_size, *op.in_shape), dtype, device, generator, op.is_complex)
    y = _randn((batch_size, *op.out_shape), dtype, device, generator, op.is_complex)
    Dc = D.to(torch.promote_types(D.dtype, x.dtype))
    got = op.apply(x).reshape(batch_size, -1)
    want = x.reshape(batch_size, -1).to(Dc.dtype) @ Dc.T
    scale = norm * torch.linalg.vector_norm(x).item() / math.sqrt(n)
    _close(f"{op.name}.apply vs D @ x", got.to(want.dtype), want, scale, tol)
    got = op.apply_adjoint(y).reshape(batch_size, -1)
    want = y.reshape(batch_size, -1).to(Dc.dtype) @ Dc.conj()
    scale = norm * torch.linalg.vector_norm(y).item() / math.sqrt(m)
    _close(f"{op.name}.apply_adjoint vs D^H @ y", got.to(want.dtype), want, scale, tol)
    return D
