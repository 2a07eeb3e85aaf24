"""``solve``: an exact structured route where the operator has one, a Krylov method otherwise."""

from __future__ import annotations

import torch

from ._base import LinearOperator
from ._cg import cg
from ._lsqr import lsqr
from ._minres import minres
from ._solve_common import (
    CoreResult,
    SolveResult,
    attach_gradient,
    check_max_iters,
    check_operator,
    check_throw,
    check_tol,
    empty_result,
    finish,
    norm,
    prepare_rhs,
    residual_function,
)
from ._solve_exact import exact_route

__all__ = ["SolveResult", "cg", "lsqr", "minres", "solve"]

# the keyword arguments each method takes besides tol, max_iters and throw
_OPTIONS = {
    "auto": ("x0",),
    "exact": (),
    "cg": ("M", "x0"),
    "minres": ("shift", "x0"),
    "lsqr": ("damp", "x0"),
}


def solve(
    A: LinearOperator,
    b: torch.Tensor,
    *,
    method: str = "auto",
    tol: float = 1e-6,
    max_iters: int | None = None,
    throw: bool = False,
    **kw,
) -> SolveResult:
    """Solve ``A x = b`` (least squares for a non-square or non-self-adjoint ``A``).

    Parameters
    ----------
    A : LinearOperator
    b : Tensor, shape (\\*batch, \\*out_shape)
        Right-hand sides, solved together.
    method : {"auto", "exact", "cg", "minres", "lsqr"}, default "auto"
        ``"auto"`` follows the rule in the Notes; ``"exact"`` raises when ``A`` has no
        exact route; the others call :func:`cg`, :func:`minres` or :func:`lsqr`.
    tol : float, default 1e-6
        The stopping tolerance of the Krylov method; an exact route is reported converged
        when ``||b - A x|| <= tol ||b||``.
    max_iters : int, optional
        Passed to the Krylov method.
    throw : bool, default False
        Raise :class:`ConvergenceError` if some right-hand side misses ``tol``.
    **kw
        The method's own options, and only those: ``x0`` for ``"auto"`` (ignored by exact
        routes); ``M`` and ``x0`` for ``"cg"``; ``shift`` and ``x0`` for ``"minres"``;
        ``damp`` and ``x0`` for ``"lsqr"``. Anything else is a ``TypeError``.

    Returns
    -------
    SolveResult
        ``method`` says which route ran.

    Raises
    ------
    TypeError, ValueError
        As the methods; also for an unknown ``method`` or keyword.

    Notes
    -----
    ``method="auto"`` picks, from what the operator declares (no flag says "positive
    definite", so CG is never chosen automatically: ask for it with ``method="cg"``):

    1. an exact route when ``A`` is square and its eigenvectors are known: ``Identity``,
       ``ScaledIdentity``, ``Diagonal`` (``b / d``), ``BasisDiagonal``
       (``V^H diag(1/d) V b``), and real or complex multiples, adjoints, sums and
       products of these that share one basis (``a I + c D``, ``I - t * heat``); then
       ``a I + b (G_h ⊗ G_w)`` with symmetric factors (``I + rho R.H @ R`` for a
       ``Resize`` or ``GaussianBlur`` ``R``), solved through the factors'
       eigendecompositions as :func:`funm` does. These are exact to rounding, cost no
       iterations, and return the pseudo-inverse solution for a singular ``A``
       (eigenvalues with ``|lambda| <= n eps max|lambda|`` are treated as zero);
    2. :func:`minres` for a square ``A`` declared self-adjoint (``A.is_self_adjoint``);
    3. :func:`lsqr` otherwise (rectangular or not declared self-adjoint).

    *Gradients.* Every route is differentiable with respect to ``b`` and the operator's
    tensors by implicit differentiation; an exact route's backward pass is one more exact
    solve with ``A^H``.

    Examples
    --------
    >>> import torch, linops
    >>> D = linops.Diagonal(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
    >>> res = linops.solve(2.0 * D + linops.Identity((3,)), torch.ones(3, dtype=torch.float64))
    >>> res.method, res.value
    ('diagonal', tensor([0.3333, 0.2000, 0.1111], dtype=torch.float64))
    >>> R = linops.Resize((8, 8), (4, 4))
    >>> A = linops.Identity((8, 8)) + 0.5 * (R.H @ R)
    >>> linops.solve(A, torch.randn(3, 8, 8, dtype=torch.float64)).method
    'kronecker'
    >>> linops.solve(R, torch.randn(4, 4, dtype=torch.float64)).method
    'lsqr'
    """
    where = "solve"
    if method not in _OPTIONS:
        raise ValueError(f"{where}: expected method in {tuple(_OPTIONS)}, got {method!r}")
    unknown = sorted(set(kw) - set(_OPTIONS[method]))
    if unknown:
        takes = ", ".join(_OPTIONS[method]) or "no other keyword"
        raise TypeError(
            f"{where}: expected keyword arguments of method={method!r} ({takes}), got "
            f"unexpected {', '.join(unknown)}"
        )
    check_operator(A, where)
    tol = check_tol(tol, where)
    check_max_iters(max_iters, where)
    check_throw(throw, where)
    square = A.in_shape == A.out_shape
    b_flat, batch, dtype = prepare_rhs(A, b, where, A.out_shape)
    common = dict(tol=tol, max_iters=max_iters, throw=throw)
    if method == "cg":
        return cg(A, b, **common, **kw)
    if method == "minres":
        return minres(A, b, **common, **kw)
    if method == "lsqr":
        return lsqr(A, b, **common, **kw)

    route = exact_route(A, dtype, b.device) if square else None
    if route is None:
        if method == "exact":
            raise ValueError(
                f"{where}: method='exact' needs a square operator with known eigenvectors "
                "(Identity, ScaledIdentity, Diagonal, BasisDiagonal, their multiples and "
                "sums, a I + b Kronecker with symmetric factors), got "
                f"{A!r}. Use method='auto'"
            )
        if square and A.is_self_adjoint:
            return minres(A, b, **common, **kw)
        return lsqr(A, b, **common, **kw)

    empty = empty_result(route.method, batch, A.in_shape, b_flat)
    if empty is not None:
        return empty
    grad = torch.is_grad_enabled()
    with torch.no_grad():
        x = route.solve(b_flat.detach(), False)
        residual = residual_function(A.apply, b_flat, grad=grad)(x)
    rnorm = norm(residual.detach())
    converged = rnorm <= tol * norm(b_flat.detach())
    iters = torch.zeros(b_flat.shape[0], dtype=torch.int64, device=b.device)

    def solve_adjoint(g):
        with torch.no_grad():
            return route.solve(g, True)

    value = attach_gradient(x, residual, solve_adjoint)
    return finish(
        where, route.method, value, batch, A.in_shape, b_flat,
        CoreResult(x, residual, iters, converged),
        tol=tol, max_iters=None, throw=throw,
        hint="The operator is singular to rounding: the value is the pseudo-inverse solution",
    )  # fmt: skip
