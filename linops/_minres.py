"""Batched MINRES for self-adjoint (possibly indefinite) operators."""

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
    check_real,
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

__all__ = ["minres"]


def _minres_round(matvec: Matvec):
    """One MINRES round (see :func:`run_with_restarts`): Paige and Saunders' recurrences as
    in :func:`scipy.sparse.linalg.minres` (unpreconditioned), one set per right-hand side."""

    def one_round(r0, x, active, target, iters, max_iters):
        eps = torch.finfo(r0.real.dtype).eps
        zeros = torch.zeros(r0.shape[0], dtype=r0.real.dtype, device=r0.device)
        beta1 = norm(r0)
        y, r1, r2 = r0, r0, r0
        oldb, beta = zeros, beta1
        dbar, epsln, phibar, tnorm2 = zeros, zeros, beta1, zeros
        cs, sn = -torch.ones_like(zeros), zeros
        w = w2 = torch.zeros_like(r0)
        hit = torch.zeros_like(active)
        first = True
        while bool(active.any()):
            # inactive rows get v = 0, so no NaN or inf of theirs ever reaches the operator
            v = keep(active, y / bview(safe(beta), y), torch.zeros_like(y))
            y = matvec(v)
            if not first:
                y = y - bview(beta / safe(oldb), r1) * r1
            first = False
            alfa = rdot(v, y)
            y = y - bview(alfa / safe(beta), r2) * r2
            r1, r2 = r2, y
            oldb, beta = beta, norm(y)
            tnorm2 = tnorm2 + alfa**2 + oldb**2 + beta**2
            anorm = tnorm2.sqrt()

            # the QR factorisation of the tridiagonal matrix, one Givens rotation per step
            oldeps = epsln
            delta = cs * dbar + sn * alfa
            gbar = sn * dbar - cs * alfa
            epsln = sn * beta
            dbar = -cs * beta
            root = torch.hypot(gbar, dbar)  # ||A r_{k-1}||/||r_{k-1}|| of the last iterate
            gamma = torch.hypot(gbar, beta)
            # gamma <= eps ||T_k||: T_k is singular to rounding (A singular on the Krylov
            # space, b not in its range); the step 1/gamma would be noise: stop before it
            ok = active & (gamma > eps * anorm)
            cs, sn = gbar / safe(gamma), beta / safe(gamma)
            phi = cs * phibar
            phibar = torch.where(ok, sn * phibar, phibar)

            w1, w2 = w2, w
            w = (v - bview(oldeps, w1) * w1 - bview(delta, w2) * w2) / bview(safe(gamma), v)
            x = keep(ok, x + bview(phi, w) * w, x)
            iters = iters + active

            met = ok & (phibar <= target)
            hit = hit | met
            # beta ~ 0: the Krylov space is invariant (exact in it, or A singular on it);
            # root ~ 0: the residual is in A's null space to machine precision (scipy's
            # istop = 2 test at eps). Either way this row can do no better: it stops.
            stuck = (beta <= eps * anorm) | (root <= eps * anorm)
            active = ok & ~met & ~stuck & (iters < max_iters)
        return x, iters, hit

    return one_round


def minres_core(matvec, b, *, x0, tol, max_iters, residual_fn) -> CoreResult:
    return run_with_restarts(_minres_round(matvec), residual_fn, b, x0, tol, max_iters)


def minres(
    A: LinearOperator,
    b: torch.Tensor,
    *,
    shift: float = 0.0,
    tol: float = 1e-6,
    max_iters: int | None = None,
    x0: torch.Tensor | None = None,
    throw: bool = False,
) -> SolveResult:
    """Solve ``(A - shift I) x = b`` by MINRES, for every right-hand side of a batch.

    Parameters
    ----------
    A : LinearOperator
        Self-adjoint, possibly indefinite, with ``in_shape == out_shape``. Not declared
        ``is_self_adjoint``, it must pass a randomised symmetry test.
    b : Tensor, shape (\\*batch, \\*in_shape)
        Right-hand sides, float32/float64 or complex, solved together.
    shift : float, default 0.0
        Real shift ``s`` of ``(A - s I) x = b`` (as :func:`scipy.sparse.linalg.minres`).
    tol : float, default 1e-6
        A right-hand side stops once ``||b - (A - s I) x|| <= tol ||b||``.
    max_iters : int, optional
        Iterations per right-hand side at most (default ``5 n``, as SciPy).
    x0 : Tensor, shape (\\*batch, \\*in_shape), optional
        Initial guess (default zero). No gradient flows to it.
    throw : bool, default False
        Raise :class:`ConvergenceError` if some right-hand side misses ``tol``.

    Returns
    -------
    SolveResult

    Raises
    ------
    TypeError, ValueError
        As :func:`cg` (and for a non-real or non-finite ``shift``).
    ConvergenceError
        With ``throw=True``.

    Notes
    -----
    MINRES (Paige and Saunders 1975) minimises ``||b - (A - s I) x||`` over the Krylov space
    with a three-term Lanczos recurrence and Givens rotations, following SciPy's
    implementation with one set of recurrence scalars per right-hand side. It stops on the
    recurrence residual ``phibar <= tol ||b||`` (SciPy instead stops on
    ``||r|| <= tol ||A|| ||x||``, a looser test); the returned iterate is checked with its
    true residual and resumed where the recurrence drifted, as in :func:`cg`. A right-hand
    side also stops when its Lanczos vector vanishes (``beta <= eps ||T_k||``: the Krylov
    space is invariant) or its residual lies in ``A``'s null space to machine precision
    (``||A r|| <= eps ||T_k|| ||r||``, a singular inconsistent system); it is then reported
    as converged only if its true residual meets ``tol``.

    *Gradients.* As :func:`cg`: the backward pass runs one more MINRES solve with the same
    (self-adjoint) operator and shift, plus one vector-Jacobian product of ``A.apply``.

    Examples
    --------
    >>> import torch, linops
    >>> A = linops.Diagonal(torch.tensor([-2.0, 1.0, 3.0], dtype=torch.float64))
    >>> b = torch.ones(3, dtype=torch.float64)
    >>> res = linops.minres(A, b, tol=1e-12)
    >>> res.converged, int(res.num_iters)
    (True, 3)
    >>> res.value
    tensor([-0.5000,  1.0000,  0.3333], dtype=torch.float64)
    """
    where = "minres"
    check_operator(A, where)
    check_square(A, where)
    shift = check_real(shift, "shift", where)
    tol = check_tol(tol, where)
    max_iters = check_max_iters(max_iters, where)
    check_throw(throw, where)
    b_flat, batch, dtype = prepare_rhs(A, b, where, A.in_shape)
    x0 = prepare_x0(x0, batch, A.in_shape, dtype, where)
    check_self_adjoint(A, "A", where, dtype, b.device)
    empty = empty_result("minres", batch, A.in_shape, b_flat)
    if empty is not None:
        return empty
    limit = max_iters if max_iters is not None else 5 * math.prod(A.in_shape)

    def matvec(v):
        return A.apply(v) - shift * v if shift != 0 else A.apply(v)

    grad = torch.is_grad_enabled()
    with torch.no_grad():
        result = minres_core(
            matvec,
            b_flat.detach(),
            x0=x0,
            tol=tol,
            max_iters=limit,
            residual_fn=residual_function(matvec, b_flat, grad=grad),
        )

    def solve_adjoint(g):
        # (A - s I)^H = A - s I for a self-adjoint A and a real s
        with torch.no_grad():
            back = minres_core(
                matvec, g, x0=None, tol=tol, max_iters=limit,
                residual_fn=residual_function(matvec, g, grad=False),
            )  # fmt: skip
        backward_report(where, "MINRES", back, tol, throw)
        return back.x

    value = attach_gradient(result.x, result.residual, solve_adjoint)
    return finish(
        where, "minres", value, batch, A.in_shape, b_flat, result,
        tol=tol, max_iters=limit, throw=throw,
        hint="Raise max_iters or loosen tol; a singular (A - shift I) may have no solution",
    )  # fmt: skip
