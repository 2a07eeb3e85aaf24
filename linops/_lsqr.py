"""Batched LSQR: least squares for any operator, square or rectangular."""

from __future__ import annotations

import math

import torch

from ._base import LinearOperator
from ._cg import cg_core
from ._solve_common import (
    CoreResult,
    Matvec,
    SolveResult,
    adjoint_with_graph,
    attach_gradient,
    backward_report,
    bview,
    check_max_iters,
    check_operator,
    check_real,
    check_throw,
    check_tol,
    empty_result,
    finish,
    keep,
    norm,
    prepare_rhs,
    prepare_x0,
    residual_function,
    safe,
)

__all__ = ["lsqr"]


def _lsqr_round(matvec, rmatvec, r, ahr, bnorm, x, active, *, damp, tol, iters, max_iters):
    """LSQR from ``x`` on the rows in ``active``: Paige and Saunders' recurrences as in
    :func:`scipy.sparse.linalg.lsqr` with ``atol = btol = tol`` and no condition limit,
    one set of scalars per right-hand side. ``r = b - A x`` and ``ahr = A^H r`` are given
    (the caller has them). Returns ``(x, iters, hit, anorm)``, ``hit`` marking rows whose
    recurrence estimates passed a stopping test."""
    eps = torch.finfo(r.real.dtype).eps
    dampsq = damp**2
    beta = norm(r)
    u = keep(beta > 0, r / bview(safe(beta), r), r)
    v = ahr / bview(safe(beta), ahr)  # = A^H u
    alfa = norm(v)
    v = keep(alfa > 0, v / bview(safe(alfa), v), v)
    w = v
    zeros = torch.zeros_like(beta)
    rhobar, phibar = alfa, beta
    anorm, res2, xxnorm, z, sn2 = zeros, zeros, zeros, zeros, zeros
    cs2 = -torch.ones_like(beta)
    hit = torch.zeros_like(active)
    # A^H (b - A x) = 0: x already solves the least-squares problem
    active = active & (alfa * beta > 0)
    while bool(active.any()):
        # rows that stopped feed zeros to the operator: nothing of theirs can reach it
        u = matvec(keep(active, v, torch.zeros_like(v))) - bview(alfa, u) * u
        beta_new = norm(u)
        pos = beta_new > 0
        u = keep(pos, u / bview(safe(beta_new), u), u)
        anorm = torch.where(pos, torch.sqrt(anorm**2 + alfa**2 + beta_new**2 + dampsq), anorm)
        v_new = rmatvec(keep(active, u, torch.zeros_like(u))) - bview(beta_new, v) * v
        alfa_new = norm(v_new)
        v_new = keep(alfa_new > 0, v_new / bview(safe(alfa_new), v_new), v_new)
        v = keep(pos, v_new, v)
        alfa = torch.where(pos, alfa_new, alfa)
        beta = beta_new

        if damp > 0:
            rhobar1 = torch.sqrt(rhobar**2 + dampsq)
            cs1, sn1 = rhobar / rhobar1, damp / rhobar1
            psi = sn1 * phibar
            phibar = cs1 * phibar
        else:
            rhobar1, psi = rhobar, zeros
        # Givens rotation (c, s, rho) with c rhobar1 + s beta = rho >= 0 (scipy's _sym_ortho)
        rho = torch.hypot(rhobar1, beta)
        cs, sn = rhobar1 / safe(rho), beta / safe(rho)
        theta = sn * alfa
        rhobar = -cs * alfa
        phi = cs * phibar
        phibar = sn * phibar
        tau = sn * phi

        t1, t2 = phi / safe(rho), -theta / safe(rho)
        x = keep(active, x + bview(t1, w) * w, x)
        w = v + bview(t2, w) * w

        # estimate ||x|| (for the compatible-system test) from the LQ factorisation
        delta = sn2 * rho
        gambar = -cs2 * rho
        rhs = phi - delta * z
        zbar = rhs / safe(gambar)
        xnorm = torch.sqrt(xxnorm + zbar**2)
        gamma = torch.hypot(gambar, theta)
        cs2, sn2 = gambar / safe(gamma), theta / safe(gamma)
        z = rhs / safe(gamma)
        xxnorm = xxnorm + z**2

        res2 = res2 + psi**2
        rnorm = torch.sqrt(phibar**2 + res2)
        arnorm = alfa * tau.abs()
        iters = iters + active
        test1 = rnorm / safe(bnorm)
        test2 = arnorm / (anorm * rnorm + eps)
        rtol = tol + tol * anorm * xnorm / safe(bnorm)
        met = active & ((test1 <= rtol) | (test2 <= tol))
        hit = hit | met
        # scipy's machine-precision stops (istop 4 and 5): no further progress is possible
        t1_machine = test1 / (1 + anorm * xnorm / safe(bnorm))
        stuck = (1 + test2 <= 1) | (1 + t1_machine <= 1)
        active = active & ~met & ~stuck & (iters < max_iters)
    # the last alfa is an entry of the bidiagonal matrix too (SciPy adds it at the next
    # step, which a Krylov space exhausted at once never takes): without it the true-residual
    # check would see ||Abar|| = 0
    return x, iters, hit, torch.sqrt(anorm**2 + alfa**2 + dampsq)


def _ratio(lhs, rhs):
    return torch.where(rhs > 0, lhs / safe(rhs), torch.full_like(lhs, math.inf))


def lsqr_core(
    matvec: Matvec,
    rmatvec: Matvec,
    b: torch.Tensor,
    *,
    x0: torch.Tensor | None,
    damp: float,
    tol: float,
    max_iters: int,
    residual_fn: Matvec,
    in_shape: tuple[int, ...],
) -> CoreResult:
    """LSQR rounds until the stopping tests hold for the *true* residuals.

    ``matvec`` maps ``(B, *in)`` to ``(B, *out)``, ``rmatvec`` back; ``b`` is ``(B, *out)``.
    After a round the tests of :func:`lsqr` are evaluated on ``r = b - A x`` and
    ``A^H r - damp^2 x`` (one application of each); with ``damp = 0`` a row whose
    recurrence claimed convergence but fails them resumes from ``x`` (LSQR on the
    correction, as with ``x0``) while that keeps improving it, as :func:`cg` does.
    """
    bnorm = norm(b)
    x = b.new_zeros((b.shape[0], *in_shape))
    if x0 is not None:
        x = keep(bnorm > 0, x0, x)  # a zero b has the solution zero
    iters = torch.zeros(b.shape[0], dtype=torch.int64, device=b.device)
    anorm = torch.zeros_like(bnorm)

    def verify(x, anorm):
        """The tests on the true residuals; ``badness`` > 1 says how far from passing."""
        R = residual_fn(x)
        r = R.detach()
        ahr = rmatvec(r)
        xnorm = norm(x)
        rbar = torch.sqrt(norm(r) ** 2 + damp**2 * xnorm**2)
        normal = norm(ahr - damp**2 * x if damp > 0 else ahr)
        lhs1, rhs1 = rbar, tol * bnorm + tol * anorm * xnorm
        lhs2, rhs2 = normal, tol * anorm * rbar
        converged = (lhs1 <= rhs1) | (lhs2 <= rhs2)
        badness = torch.minimum(_ratio(lhs1, rhs1), _ratio(lhs2, rhs2))
        return R, r, ahr, converged, badness

    # at x0 with no step yet (||Abar|| estimate 0) test 1 is ||b - A x0|| <= tol ||b||, and
    # test 2 holds where A^H (b - A x0) = 0
    R, r, ahr, converged, badness = verify(x, anorm)
    active = ~converged
    while bool(active.any()):
        x, iters, hit, round_anorm = _lsqr_round(
            matvec, rmatvec, r, ahr, bnorm, x, active,
            damp=damp, tol=tol, iters=iters, max_iters=max_iters,
        )  # fmt: skip
        anorm = torch.maximum(anorm, round_anorm)
        R, r, ahr, converged, now = verify(x, anorm)
        # a restart must make progress on the true tests
        active = hit & ~converged & (iters < max_iters) & (now < badness) & (damp == 0)
        badness = torch.where(active, now, badness)
    return CoreResult(x, R, iters, converged)


def _normal_solve(A: LinearOperator, g, *, damp, tol, max_iters, where, throw):
    """``(A^H A + damp^2 I)^+ g``: the adjoint solve of LSQR's backward pass.

    With ``damp > 0`` the matrix is positive definite and CG solves it; with ``damp = 0``
    it may be singular, and ``A^+ (A^H)^+ g`` (two LSQR solves) is its pseudo-inverse.
    ``max_iters`` None means the defaults: ``10 n`` for CG, ``2 max(m, n)`` for LSQR.
    """
    n = math.prod(A.in_shape)
    if damp > 0:
        cg_limit = max_iters if max_iters is not None else 10 * n

        def normal(v):
            return A.apply_adjoint(A.apply(v)) + damp**2 * v

        back = cg_core(
            normal, g, x0=None, precond=None, tol=tol, max_iters=cg_limit,
            residual_fn=residual_function(normal, g, grad=False),
        )  # fmt: skip
        backward_report(where, "CG (normal equations)", back, tol, throw)
        return back.x
    max_iters = max_iters if max_iters is not None else 2 * max(n, math.prod(A.out_shape))
    mu = lsqr_core(
        A.apply_adjoint, A.apply, g, x0=None, damp=0.0, tol=tol, max_iters=max_iters,
        residual_fn=residual_function(A.apply_adjoint, g, grad=False), in_shape=A.out_shape,
    )  # fmt: skip
    backward_report(where, "LSQR (A^H mu = g)", mu, tol, throw)
    lam = lsqr_core(
        A.apply, A.apply_adjoint, mu.x, x0=None, damp=0.0, tol=tol, max_iters=max_iters,
        residual_fn=residual_function(A.apply, mu.x, grad=False), in_shape=A.in_shape,
    )  # fmt: skip
    backward_report(where, "LSQR (A lambda = mu)", lam, tol, throw)
    return lam.x


def lsqr(
    A: LinearOperator,
    b: torch.Tensor,
    *,
    damp: float = 0.0,
    tol: float = 1e-6,
    max_iters: int | None = None,
    x0: torch.Tensor | None = None,
    throw: bool = False,
) -> SolveResult:
    """Least squares ``min ||A x - b||^2 + damp^2 ||x||^2`` by LSQR, for a batch of ``b``.

    Parameters
    ----------
    A : LinearOperator
        Any operator, square or rectangular (e.g. :class:`Resize`), of full rank or not.
    b : Tensor, shape (\\*batch, \\*out_shape)
        Right-hand sides, float32/float64 or complex, solved together.
    damp : float, default 0.0
        Tikhonov's ``lambda``. With ``damp = 0`` LSQR started from zero converges to the
        minimum-norm least-squares solution ``A^+ b``.
    tol : float, default 1e-6
        For both of the stopping tests in the Notes (SciPy's ``atol = btol = tol``).
    max_iters : int, optional
        Iterations per right-hand side at most (default ``2 n``, ``n = prod(in_shape)``,
        as SciPy).
    x0 : Tensor, shape (\\*batch, \\*in_shape), optional
        Initial guess (default zero); only with ``damp = 0``, where LSQR solves for the
        correction ``A dx ~ b - A x0``. The result is then a least-squares solution but not
        the minimum-norm one unless ``x0`` has no component in ``A``'s null space.
    throw : bool, default False
        Raise :class:`ConvergenceError` if some right-hand side misses the tests.

    Returns
    -------
    SolveResult
        ``value`` of shape ``(*batch, *in_shape)``; ``residual_norm`` is the true
        ``||b - A x||`` (without the ``damp`` term).

    Raises
    ------
    TypeError, ValueError
        As :func:`cg`, and for a negative or non-finite ``damp`` or an ``x0`` with
        ``damp > 0``.
    ConvergenceError
        With ``throw=True``.

    Notes
    -----
    LSQR (Paige and Saunders 1982) is Golub--Kahan bidiagonalisation of ``A`` with a QR
    update per step; it is CG on the normal equations in exact arithmetic but more
    stable. This is SciPy's implementation with one set of recurrence scalars per
    right-hand side. With ``Abar = [A; damp I]`` and ``rbar = [b - A x; -damp x]``, a
    right-hand side stops when either test holds, on the recurrence estimates:

    1. ``||rbar|| <= tol ||b|| + tol ||Abar|| ||x||`` (a compatible system is solved);
    2. ``||A^H (b - A x) - damp^2 x|| <= tol ||Abar|| ||rbar||`` (the normal-equation
       residual is small: a least-squares solution is found),

    where ``||Abar||`` is the Frobenius norm of the bidiagonal matrix so far (it grows to
    at most ``||Abar||_F``): SciPy's ``istop in (1, 2)`` with ``atol = btol = tol`` and
    ``conlim = 0``, so the iteration counts are SciPy's. A right-hand side also stops at
    SciPy's machine-precision tests (``1 + test <= 1``, reached only for ``tol`` below
    rounding). The returned ``x`` is then checked: ``converged`` reports both tests
    evaluated with the true ``b - A x`` and ``A^H (b - A x) - damp^2 x`` (one more
    application of ``A`` and of ``A^H``). With ``damp = 0`` a right-hand side whose
    recurrence estimates passed but whose true residuals do not (the estimates drift,
    notably in float32) resumes from its ``x``, as :func:`cg` does.

    *Gradients.* ``x`` solves the normal equations ``N x = A^H b`` with
    ``N = A^H A + damp^2 I``, and is differentiated through them:
    ``dx = N^{-1} (dA^H r - A^H dA x + A^H db)``, ``r = b - A x``. The backward pass solves
    ``N λ = grad`` (CG on ``N`` when ``damp > 0``; two LSQR solves ``λ = A^+ (A^H)^+ grad``
    when ``damp = 0``, so about one to two more solves) and one vector-Jacobian product of
    ``A.apply`` and of its autograd adjoint (so a :class:`FunctionOperator`'s parameters get
    their gradient). For a rank-deficient ``A`` with ``damp = 0`` the gradient with respect
    to ``b``, ``(A^+)^H grad``, is exact; the one with respect to the operator's tensors
    omits the term by which a perturbation of ``A`` rotates its null space
    (``(I - A^+ A) dA^H (A^+)^H x``), which vanishes for full column rank.

    Examples
    --------
    >>> import torch, linops
    >>> R = linops.Resize((8, 8), (4, 4))
    >>> y = torch.randn(2, 4, 4, dtype=torch.float64)
    >>> res = linops.lsqr(R, y, tol=1e-12)
    >>> res.value.shape, res.converged
    (torch.Size([2, 8, 8]), True)
    >>> torch.allclose(res.value, linops.pinv(R).apply(y))   # the minimum-norm solution
    True
    """
    where = "lsqr"
    check_operator(A, where)
    damp = check_real(damp, "damp", where, nonnegative=True)
    tol = check_tol(tol, where)
    max_iters = check_max_iters(max_iters, where)
    check_throw(throw, where)
    b_flat, batch, dtype = prepare_rhs(A, b, where, A.out_shape)
    if x0 is not None and damp > 0:
        raise ValueError(
            f"{where}: expected x0=None with damp > 0, got an x0 and damp={damp:g}. The "
            "damped problem is not one for the correction x - x0; drop x0"
        )
    x0 = prepare_x0(x0, batch, A.in_shape, dtype, where)
    empty = empty_result("lsqr", batch, A.in_shape, b_flat)
    if empty is not None:
        return empty
    limit = max_iters if max_iters is not None else 2 * math.prod(A.in_shape)
    grad = torch.is_grad_enabled()

    with torch.no_grad():
        result = lsqr_core(
            A.apply,
            A.apply_adjoint,
            b_flat.detach(),
            x0=x0,
            damp=damp,
            tol=tol,
            max_iters=limit,
            residual_fn=residual_function(A.apply, b_flat, grad=grad),
            in_shape=A.in_shape,
        )

    value = result.x
    if result.residual.requires_grad:
        # the normal-equation residual A^H (b - A x) - damp^2 x with x held constant, built
        # with autograd's adjoint so that it depends on the operator's tensors as A^H does
        normal_residual = adjoint_with_graph(A, result.residual, value)
        if damp > 0:
            normal_residual = normal_residual - damp**2 * value

        def solve_adjoint(g):
            with torch.no_grad():
                return _normal_solve(
                    A, g, damp=damp, tol=tol, max_iters=max_iters, where=where, throw=throw
                )

        value = attach_gradient(value, normal_residual, solve_adjoint)
    return finish(
        where, "lsqr", value, batch, A.in_shape, b_flat, result,
        tol=tol, max_iters=limit, throw=throw,
        hint="Raise max_iters or loosen tol; damp > 0 regularises ill-conditioned problems",
    )  # fmt: skip
