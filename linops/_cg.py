"""Batched (preconditioned) conjugate gradients for self-adjoint positive definite operators."""

from __future__ import annotations

import math

import torch

from ._base import LinearOperator
from ._solve_common import (
    CoreResult,
    Matvec,
    SolveResult,
    attach_gradient,
    backward_report,
    bview,
    check_max_iters,
    check_operator,
    check_self_adjoint,
    check_square,
    check_throw,
    check_tol,
    empty_result,
    finish,
    keep,
    norm,
    prepare_rhs,
    prepare_x0,
    rdot,
    residual_function,
    run_with_restarts,
    safe,
)
from ._utils import complex_dtype, format_shape

__all__ = ["cg"]


def _cg_round(matvec: Matvec, precond: Matvec | None):
    """One CG round (see :func:`run_with_restarts`) for ``matvec`` and preconditioner."""

    def one_round(r, x, active, target, iters, max_iters):
        eps = torch.finfo(r.real.dtype).eps
        z = r if precond is None else precond(r)
        rz = rdot(r, z)
        # r != 0 with <r, M r> <= 0: M is not positive definite
        active = active & (rz > 0)
        p = z
        hit = torch.zeros_like(active)
        ray_max = torch.zeros_like(rz)
        while bool(active.any()):
            q = matvec(p)
            pq, pp = rdot(p, q), rdot(p, p)
            ray_max = torch.where(active, torch.maximum(ray_max, pq / safe(pp)), ray_max)
            # breakdown: p^H A p <= eps max(Rayleigh quotients seen) ||p||^2, i.e. a direction
            # on which A is zero or negative to rounding (singular or indefinite A); a step
            # along it would be huge or uphill, so the row stops here
            ok = active & (pq > eps * ray_max * pp) & torch.isfinite(pq)
            alpha = torch.where(ok, rz / safe(pq), torch.zeros_like(pq))
            x = keep(ok, x + bview(alpha, p) * p, x)
            r = keep(ok, r - bview(alpha, q) * q, r)
            iters = iters + ok
            met = ok & (norm(r) <= target)
            hit = hit | met
            active = ok & ~met & (iters < max_iters)
            z = r if precond is None else precond(r)
            rz_new = rdot(r, z)
            active = active & (rz_new > 0)
            beta = torch.where(active, rz_new / safe(rz), torch.zeros_like(rz))
            p = keep(active, z + bview(beta, p) * p, p)
            rz = torch.where(active, rz_new, rz)
        return x, iters, hit

    return one_round


def cg_core(matvec, b, *, x0, precond, tol, max_iters, residual_fn) -> CoreResult:
    return run_with_restarts(_cg_round(matvec, precond), residual_fn, b, x0, tol, max_iters)


def cg(
    A: LinearOperator,
    b: torch.Tensor,
    *,
    tol: float = 1e-6,
    max_iters: int | None = None,
    M: LinearOperator | None = None,  # noqa: N803 - the conventional name
    x0: torch.Tensor | None = None,
    throw: bool = False,
) -> SolveResult:
    """Solve ``A x = b`` by conjugate gradients, for every right-hand side of a batch.

    Parameters
    ----------
    A : LinearOperator
        Self-adjoint positive definite (or semidefinite with ``b`` in its range), with
        ``in_shape == out_shape``. Not declared ``is_self_adjoint``, it must pass a
        randomised symmetry test.
    b : Tensor, shape (\\*batch, \\*in_shape)
        Right-hand sides, float32/float64 or complex; each is solved independently, all in
        one batched application of ``A`` per iteration.
    tol : float, default 1e-6
        Relative residual: a right-hand side stops once ``||b - A x|| <= tol ||b||``.
    max_iters : int, optional
        Iterations per right-hand side at most (default ``10 n``, ``n = prod(in_shape)``,
        as :func:`scipy.sparse.linalg.cg`).
    M : LinearOperator, optional
        Preconditioner approximating ``A^{-1}``: self-adjoint positive definite, with
        ``in_shape == out_shape == A.in_shape``.
    x0 : Tensor, shape (\\*batch, \\*in_shape), optional
        Initial guess (default zero). No gradient flows to it.
    throw : bool, default False
        Raise :class:`ConvergenceError` if some right-hand side misses ``tol``.

    Returns
    -------
    SolveResult
        ``value`` of shape ``(*batch, *in_shape)``; ``num_iters`` and ``residual_norm`` of
        shape ``batch``.

    Raises
    ------
    TypeError
        For an ``A``, ``M``, ``b`` or ``x0`` of the wrong kind.
    ValueError
        For mismatched shapes, a non-finite ``b``, a bad ``tol`` or ``max_iters``, or an
        ``A`` or ``M`` that fails the symmetry test.
    ConvergenceError
        With ``throw=True``, naming how many right-hand sides missed ``tol`` and the worst
        relative residual.

    Notes
    -----
    Hestenes--Stiefel CG (Saad, *Iterative Methods for Sparse Linear Systems*, 2003,
    Algorithm 9.1 with preconditioning). Each right-hand side has its own step sizes; one
    that has converged is masked (its iterate no longer changes) while the others go on,
    and the loop checks for remaining work once per iteration (one host synchronisation).
    The stopping test uses the recurrence residual, exactly as
    :func:`scipy.sparse.linalg.cg` with ``rtol=tol, atol=0``; the returned iterate is then
    checked with its true residual, and a right-hand side whose recurrence drifted from it
    resumes from where it is. ``converged`` reports the true test.

    *Breakdown.* A step with ``p^H A p <= eps max(Rayleigh quotients) ||p||^2`` (``A`` is
    singular or indefinite along ``p``) or ``r^H M r <= 0`` (``M`` is not positive) stops
    that right-hand side: it is reported as converged only if its residual meets ``tol``.
    Nothing becomes NaN.

    *Gradients.* ``value`` is differentiable with respect to ``b`` and to any tensor the
    operator uses (a :class:`FunctionOperator`'s parameters, a scalar ``rho`` in
    ``rho * A``...) by implicit differentiation: the backward pass solves
    ``A λ = grad`` with CG (same ``tol``, ``max_iters`` and ``M``) and takes one
    vector-Jacobian product of ``A.apply`` at the solution, so a backward pass costs about
    one more solve; the iterations are never backpropagated through. When autograd is
    recording, the final residual check records the graph it needs (no extra application).

    Examples
    --------
    >>> import torch, linops
    >>> A = linops.Dense(torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64))
    >>> b = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
    >>> res = linops.cg(A, b, tol=1e-12)
    >>> res.converged, res.num_iters.tolist()
    (True, [2, 2])
    >>> torch.allclose(res.value, torch.linalg.solve(A.matrix, b.T).T)
    True
    """
    where = "cg"
    check_operator(A, where)
    check_square(A, where)
    tol = check_tol(tol, where)
    max_iters = check_max_iters(max_iters, where)
    check_throw(throw, where)
    b_flat, batch, dtype = prepare_rhs(A, b, where, A.in_shape)
    if M is not None:
        if not isinstance(M, LinearOperator):
            raise TypeError(
                f"{where}: expected M to be a LinearOperator or None, got {type(M).__name__}"
            )
        if M.in_shape != A.in_shape or M.out_shape != A.in_shape:
            raise ValueError(
                f"{where}: expected M with in_shape == out_shape == A.in_shape "
                f"{format_shape(A.in_shape)}, got in_shape {format_shape(M.in_shape)} and "
                f"out_shape {format_shape(M.out_shape)}"
            )
        if M.is_complex and not dtype.is_complex:
            dtype = complex_dtype(dtype)
            b_flat = b_flat.to(dtype)
    x0 = prepare_x0(x0, batch, A.in_shape, dtype, where)
    check_self_adjoint(A, "A", where, dtype, b.device)
    if M is not None:
        check_self_adjoint(M, "the preconditioner M", where, dtype, b.device)
    empty = empty_result("cg", batch, A.in_shape, b_flat)
    if empty is not None:
        return empty
    limit = max_iters if max_iters is not None else 10 * math.prod(A.in_shape)
    precond = None if M is None else M.apply

    grad = torch.is_grad_enabled()
    with torch.no_grad():
        result = cg_core(
            A.apply,
            b_flat.detach(),
            x0=x0,
            precond=precond,
            tol=tol,
            max_iters=limit,
            residual_fn=residual_function(A.apply, b_flat, grad=grad),
        )

    def solve_adjoint(g):
        # A = A^H: the adjoint system is solved by the same CG
        with torch.no_grad():
            back = cg_core(
                A.apply,
                g,
                x0=None,
                precond=precond,
                tol=tol,
                max_iters=limit,
                residual_fn=residual_function(A.apply, g, grad=False),
            )
        backward_report(where, "CG", back, tol, throw)
        return back.x

    value = attach_gradient(result.x, result.residual, solve_adjoint)
    return finish(
        where, "cg", value, batch, A.in_shape, b_flat, result,
        tol=tol, max_iters=limit, throw=throw,
        hint="Raise max_iters, loosen tol, or pass a preconditioner M",
    )  # fmt: skip
