"""Matrix functions ``f(A) v`` of self-adjoint operators.

The public front door: :func:`funm` and its shorthands validate the arguments, pick a
route -- exact (:mod:`linops._funm_exact`), dense (:mod:`linops._funm_dense`) or Lanczos
(:mod:`linops._funm_lanczos`), with gradients from :mod:`linops._funm_grad` -- and
assemble the :class:`FunmResult`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import _banded
from ._base import LinearOperator
from ._funm_dense import _dense
from ._funm_exact import _exact
from ._funm_functions import _DOMAIN, _checked, _named
from ._funm_grad import _InvariantCheck, _operator_requires_grad, _SelfAdjointLinear
from ._funm_lanczos import _lanczos
from ._utils import adjoint_mismatch, check_data, format_shape

__all__ = ["ConvergenceError", "FunmResult", "expm", "funm", "invsqrtm", "logm", "sqrtm"]

_METHODS = ("auto", "lanczos", "exact", "dense")
_REORTH = ("auto", "full", "none")
_BACKENDS = ("auto", "torch", "triton")
#: the keyword arguments of funm, which the shorthands (sqrtm, ...) forward
_KEYWORDS = ("method", "tol", "max_iters", "reorth", "throw", "backend")


class ConvergenceError(RuntimeError):
    """Raised by :func:`funm` with ``throw=True`` when the result is not trustworthy.

    That is: Lanczos missed the tolerance, or the value is not finite (``f`` overflowed).
    """


@dataclass(frozen=True)
class FunmResult:
    """Result of :func:`funm`.

    Attributes
    ----------
    value : Tensor, shape (\\*batch, \\*in_shape)
        ``f(A) v``; differentiable (see :func:`funm`, Notes).
    method : str
        ``"scaled_identity"``, ``"basis_diagonal"``, ``"kronecker"`` (exact paths),
        ``"lanczos"`` or ``"dense"``.
    num_iters : int
        Operator applications per right-hand side (0 for exact paths).
    error_estimate : Tensor, shape (\\*batch,)
        Estimated relative error per right-hand side,
        ``||value - f(A) v|| / max(||f(A) v||, 1e-3 ||f(A)|| ||v||)`` (the floor
        only matters when ``f(A) v`` nearly vanishes): zero for exact paths
        (rounding only); for Lanczos the estimate described in :func:`funm`;
        ``inf`` where the value is not finite. Never requires grad.
    converged : bool
        Whether every right-hand side reached the tolerance with a finite value.
    """

    value: torch.Tensor
    method: str
    num_iters: int
    error_estimate: torch.Tensor
    converged: bool


# -------------------------------------------------------------- validation
def _check_self_adjoint(A: LinearOperator, where: str, dtype, device) -> None:
    if A.is_self_adjoint:
        return
    mismatch, tol, finite = adjoint_mismatch(A, dtype, device)
    if not finite:
        raise ValueError(
            f"{where}: expected an operator with finite entries, got {A.name} returning NaN or "
            "inf for a finite vector"
        )
    if mismatch > tol:
        raise ValueError(
            f"{where}: expected a self-adjoint operator, got {A.name} with "
            f"|<Au, w> - <u, Aw>| / norms = {mismatch:.3g} > {tol:.3g}. Matrix functions here "
            "need A = A^H (e.g. R.H @ R, I - rho * R.H @ R)"
        )


def _check_vector(A: LinearOperator, v, where: str) -> None:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{where}: expected v to be a torch.Tensor, got {type(v).__name__}")
    if not (v.is_floating_point() or v.is_complex()):
        raise ValueError(f"{where}: expected v with a floating dtype, got {v.dtype}")
    check_data(v, where, "v")  # half precision and meta tensors, named here (not in A.apply)
    nd = len(A.in_shape)
    if v.dim() < nd or tuple(v.shape[v.dim() - nd :]) != A.in_shape:
        raise ValueError(
            f"{where}: expected v with trailing shape {format_shape(A.in_shape)}, "
            f"got {format_shape(v.shape)}"
        )
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{where}: expected a finite v, got NaN or inf entries")


# ------------------------------------------------------------------ public
def funm(
    f: str | Callable[[torch.Tensor], torch.Tensor],
    A: LinearOperator,
    v: torch.Tensor,
    *,
    method: str = "auto",
    tol: float | None = None,
    max_iters: int | None = None,
    reorth: str = "auto",
    throw: bool = False,
    backend: str = "auto",
) -> FunmResult:
    """``f(A) v`` for a self-adjoint operator ``A`` and a batch of vectors ``v``.

    Parameters
    ----------
    f : {"sqrt", "invsqrt", "exp", "log"} or callable
        The function, by name or as a callable applied elementwise to a tensor of
        eigenvalues (it must accept the batched eigenvalue tensors Lanczos produces and
        return a real tensor of the same shape; anything else raises ``ValueError``).
        For gradients a callable must be differentiable by autograd.
    A : LinearOperator
        Self-adjoint (``A.is_self_adjoint``, or verified by a randomised symmetry
        test) with ``in_shape == out_shape``. For ``sqrt`` it must be positive
        semidefinite, for ``invsqrt`` and ``log`` positive definite.
    v : Tensor, shape (\\*batch, \\*in_shape)
        Right-hand sides; all of them run together (no per-sample loop).
    method : {"auto", "exact", "lanczos", "dense"}, default "auto"
        ``"auto"`` takes the exact structured path when ``A`` has one
        (``ScaledIdentity``, ``BasisDiagonal``, ``a I + b Kronecker(G_h, G_w)``
        with symmetric factors, which covers ``I - rho * R.H @ R`` for a
        ``Resize`` or ``GaussianBlur`` ``R``), and Lanczos otherwise. ``"exact"``
        raises if there is no structure. ``"dense"`` materialises ``A`` (small
        problems and tests only).
    tol : float, optional
        Relative tolerance for Lanczos, in the sense of ``FunmResult.error_estimate``
        (default ``1e-10`` in float64, ``1e-5`` in float32).
    max_iters : int, optional
        Lanczos iterations at most (default ``min(n, 500)``).
    reorth : {"auto", "full", "none"}, default "auto"
        Reorthogonalisation of the Krylov basis, chosen by the library with ``"auto"``:
        none for ``sqrt``, ``invsqrt`` and ``log`` on spaces at least twice
        ``max_iters`` (their error estimate and accuracy do not need an orthonormal
        basis); otherwise the plain recurrence while the loss of orthogonality, estimated
        at every step from ``alpha`` and ``beta`` (Simon's recurrence, ``O(k)`` scalar
        work), stays below ``min(sqrt(eps), tol / 100)``, and full reorthogonalisation
        from the step where it does not. ``"full"``: Gram-Schmidt against the whole basis
        at every step (``O(k n)`` per step: 80-97% of the run time at SSD's critical
        point, for no accuracy). ``"none"``: never.
    throw : bool, default False
        Raise :class:`ConvergenceError` if some right-hand side misses ``tol`` or its
        value is not finite.
    backend : {"auto", "torch", "triton"}, default "auto"
        For Lanczos: where the fused kernels run (:func:`kron_matvec` for the
        matvec of a structured ``A``, :func:`lanczos_step` for the update when
        ``reorth="none"``). ``"auto"`` uses Triton only for CUDA tensors with
        triton installed; ``"triton"`` without it raises.

    Returns
    -------
    FunmResult
        For an empty batch (``v`` of shape ``(0, *in_shape)``) an empty ``value``,
        ``converged=True`` and ``num_iters=0``, on every route.

    Raises
    ------
    TypeError
        For an ``f``, ``A`` or ``v`` of the wrong kind, ``v`` in half precision, or a
        ``throw`` that is not a bool.
    ValueError
        For an unknown ``method``, ``reorth`` or ``backend``, a ``tol`` that is not a finite
        real number > 0, a ``max_iters`` that is not an int >= 1 (booleans are refused),
        a ``v`` on the meta device, a non-self-adjoint ``A``, a ``v`` of the wrong shape or
        with NaNs, an
        operator holding NaN or inf, an eigenvalue outside ``f``'s domain beyond rounding
        (the message gives the eigenvalue and where it was found; for ``invsqrt`` and
        ``log`` an eigenvalue that is zero to rounding counts), or a callable ``f`` whose
        output does not have the shape of its input.
    ConvergenceError
        With ``throw=True``, when the result is not converged or not finite.

    Notes
    -----
    *Exact paths.* For ``A = a I + b (G_h ⊗ G_w)`` with ``G = U diag(λ) U^T``,
    ``f(A) v = (U_h ⊗ U_w) f(a + b λ_h λ_w^T) (U_h ⊗ U_w)^T v`` -- two small
    eigendecompositions (cached by shape, dtype, device and content) and four
    small matrix products per image, exact to rounding at any condition number.

    *Lanczos.* ``k`` steps build ``A Q_k = Q_k T_k + β_k q_{k+1} e_k^T`` for every
    right-hand side at once and return ``||v|| Q_k f(T_k) e_1`` (batched
    ``eigh`` of the tridiagonal ``T_k``). For ``sqrt``, ``invsqrt`` and ``log``
    the error estimate comes from the Lanczos residual: these functions are
    integrals of resolvents, the shifted systems' residuals are all multiples of
    ``q_{k+1}``, and ``||(A + t)^{-1}|| <= 1 / (λ_min + t)`` gives a closed form in
    the Ritz pairs (Ilic, Turner and Simpson 2010; Chen, Greenbaum, Musco and
    Musco 2022), with ``λ_min`` replaced by the smallest Ritz value less its residual
    (at least half of it); that bound overestimates more and more as the bottom of
    the spectrum gets resolved (10x at 50 steps at SSD's critical point), so it is
    tightened by the decay it showed since an earlier check: ``e_k <= (||y_k - y_j||
    + R_k) R_k / R_j`` while the estimates fell steadily (see
    ``docs/matrix_functions.rst``). It holds without reorthogonalisation, so
    ``f(T_k)`` is computed only on a schedule (every step up to 8, then at most
    ``k / 4`` steps apart, sooner when the decay predicts ``tol``) and a run stops at
    the first check below ``tol``. For ``exp`` and callables the estimate extrapolates the
    geometric tail of the differences between successive iterates, with the
    slowest of the last six convergence ratios (the naive difference
    ``||y_k - y_{k-1}||`` underestimates the error by ``(1 - r) / r``, ~15x at a
    condition number of 1000; see ``benchmarks/bench_funm.py``), and stops when
    it is below ``tol`` at two consecutive steps. A value that is not finite is
    never converged (its estimate is ``inf``).

    *CPU threads and the first call.* On the CPU ``funm`` runs on one thread unless a
    step does at least ~1e7 multiply-adds and the machine has idle cores (a two-thread
    step on a loaded machine waits for scheduler slices: up to 30x slower), then
    restores torch's thread setting. The banded kernels of ``I - rho R^T R``-type
    matvecs are numba-compiled with an on-disk cache, and taken once numba's start-up
    (~0.55 s) has paid for itself in this process; a first call runs the GEMM route.

    *Gradients.* ``value`` is differentiable on every route with respect to ``v``
    and to the tensors the operator holds (a ``Diagonal``'s or ``BasisDiagonal``'s
    entries, a ``Dense`` matrix, a scalar multiple given as a 0-d tensor, the
    parameters a ``FunctionOperator`` captures); no tensor coefficient is turned into a
    Python number on the way. With respect to ``v`` the map is linear with the
    self-adjoint matrix ``f(A)``, so ``grad_v = f(A) grad``: on the Lanczos route that
    is one more ``funm`` call in the backward pass (about the cost of the forward one),
    on the exact and dense routes the transposed products. With respect to the
    operator's tensors: on exact paths autograd follows the (cheap) formula; on the
    dense route the backward is the Daleckii-Krein form ``U (F^[1] ∘ (U^T G U)) U^T``
    (divided differences, finite at repeated eigenvalues), about one more dense
    ``O(n^3)`` product; on the Lanczos route the run is recorded without in-place
    writes and backpropagated through (the gradient of the returned Krylov approximant,
    which converges with it): the forward keeps every Krylov vector alive (``O(k B n)``
    memory) and the backward costs about one more pass of the same ``k`` operator
    applications (their vector-Jacobian products) plus the three-term updates, i.e.
    roughly 1-2x the forward time. When a right-hand side's Krylov space became
    invariant after ``k < n`` steps that gradient is only right for incoming gradients
    inside the space; otherwise the backward pass raises ``RuntimeError``.

    Examples
    --------
    >>> import torch, linops
    >>> R = linops.Resize((16, 16), (8, 8))
    >>> A = linops.Identity((16, 16)) - 3.0 * (R.H @ R)   # eigenvalues in [0.25, 1]
    >>> v = torch.randn(4, 16, 16, dtype=torch.float64)
    >>> exact = linops.funm("sqrt", A, v)
    >>> exact.method
    'kronecker'
    >>> krylov = linops.funm("sqrt", A, v, method="lanczos", tol=1e-12)
    >>> krylov.converged, bool(torch.allclose(krylov.value, exact.value, atol=1e-10))
    (True, True)
    >>> rho = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    >>> linops.funm("sqrt", linops.Identity((16, 16)) - rho * (R.H @ R), v).value.sum().backward()
    >>> rho.grad is not None
    True
    """
    threads = torch.get_num_threads()
    if isinstance(v, torch.Tensor) and v.device.type == "cpu":
        # many small operations (Lanczos steps, validation): on a loaded machine each waits
        # for a scheduler slice on two threads, so the rule of _banded.kernel_threads
        # applies, with ~20 multiply-adds per entry (a structured matvec and an update)
        threads = _banded.kernel_threads(20 * v.numel())
    with _banded.cpu_threads(threads):
        return _funm(f, A, v, method, tol, max_iters, reorth, throw, backend)


def _funm(f, A, v, method, tol, max_iters, reorth, throw, backend):
    where = "funm"
    name = f if isinstance(f, str) else None
    if isinstance(f, str):
        if f not in _DOMAIN:
            raise ValueError(f"{where}: expected f in {tuple(_DOMAIN)} or a callable, got {f!r}")
        fn = _named(f)
        where = f"funm({f!r})"
    elif callable(f):
        fn = _checked(f, where)
    else:
        raise TypeError(f"{where}: expected f to be a name or a callable, got {type(f).__name__}")
    if not isinstance(A, LinearOperator):
        raise TypeError(f"{where}: expected A to be a LinearOperator, got {type(A).__name__}")
    if A.in_shape != A.out_shape:
        raise ValueError(
            f"{where}: expected a square operator, got in_shape {format_shape(A.in_shape)} "
            f"and out_shape {format_shape(A.out_shape)}"
        )
    if method not in _METHODS:
        raise ValueError(f"{where}: expected method in {_METHODS}, got {method!r}")
    if reorth not in _REORTH:
        raise ValueError(f"{where}: expected reorth in {_REORTH}, got {reorth!r}")
    if backend not in _BACKENDS:
        raise ValueError(f"{where}: expected backend in {_BACKENDS}, got {backend!r}")
    # the solvers' checks (imported here: linops._solve_common imports this module)
    from ._solve_common import check_max_iters, check_throw, check_tol

    if tol is not None:
        tol = check_tol(tol, where)
    max_iters = check_max_iters(max_iters, where)
    check_throw(throw, where)
    _check_vector(A, v, where)
    batch = v.shape[: v.dim() - len(A.in_shape)]
    _check_self_adjoint(A, where, v.dtype, v.device)
    zero_error = torch.zeros(batch, dtype=v.dtype, device=v.device)
    grad_mode = torch.is_grad_enabled()
    v_grad = grad_mode and v.requires_grad
    op_grad = grad_mode and _operator_requires_grad(A, v)

    def finish(value, path, iters, estimate, converged_rows, tol_used=None):
        finite = torch.isfinite(value.detach()).reshape(*batch, math.prod(A.in_shape)).all(-1)
        estimate = torch.where(finite, estimate.detach(), math.inf)
        ok = converged_rows & finite
        converged = bool(ok.all())
        if throw and not converged:
            worst = float(estimate.max()) if estimate.numel() else 0.0
            if not bool(finite.all()):
                raise ConvergenceError(
                    f"{where}: the result is not finite for {int((~finite).sum())} of "
                    f"{finite.numel()} right-hand sides (f overflowed at the operator's "
                    "eigenvalues?); its error estimate is inf"
                )
            raise ConvergenceError(
                f"{where}: Lanczos did not reach tol={tol_used:g} in {iters} iterations "
                f"(worst estimated relative error {worst:.3g}). Raise max_iters, loosen tol, or "
                "give the operator structure (method='exact') if it has one"
            )
        return FunmResult(value, path, iters, estimate, converged)

    if method in ("auto", "exact"):
        exact = _exact(A, v, fn, name, where)
        if exact is not None:
            value, path = exact
            return finish(value, path, 0, zero_error, torch.ones_like(zero_error, dtype=bool))
        if method == "exact":
            raise ValueError(
                f"{where}: method='exact' needs a structured operator (ScaledIdentity, "
                f"BasisDiagonal, a I + b Kronecker with symmetric factors), got {A!r}"
            )
    all_rows = torch.ones_like(zero_error, dtype=bool)
    # no right-hand side (an empty batch) is not an error: nothing to apply, as in the
    # solvers (the exact routes above handle it themselves)
    empty = v.numel() == 0
    if method == "dense":
        value = torch.zeros_like(v) if empty else _dense(A, v, fn, name, where)
        return finish(value, "dense", 0, zero_error, all_rows)

    if v.is_complex() or A.is_complex:
        raise ValueError(f"{where}: Lanczos here supports real operators and vectors, got complex")
    if empty:
        return finish(torch.zeros_like(v), "lanczos", 0, zero_error, all_rows)
    if tol is None:
        tol = 1e-10 if v.dtype == torch.float64 else 1e-5
    n = math.prod(A.in_shape)
    iters = max_iters if max_iters is not None else min(n, 500)
    flat = v.reshape(-1, *A.in_shape)
    options = dict(where=where, tol=tol, max_iters=iters, reorth=reorth, backend=backend)
    if op_grad:
        state = _lanczos(A, flat, fn, name, differentiable=True, **options)
        value = state.value
        rows = [int(i) for i in state.invariant.nonzero().reshape(-1)]
        if rows:
            # the basis of those right-hand sides, detached, for the check in the backward
            # pass (the graph keeps the vectors alive anyway)
            steps = [int(state.breakdown_at[i]) for i in rows]
            basis = [
                torch.stack([q[i].detach() for q in state.krylov[:s]])
                for i, s in zip(rows, steps, strict=True)
            ]
            value = _InvariantCheck.apply(value, basis, rows, where)
    else:
        with torch.no_grad():
            state = _lanczos(A, flat.detach(), fn, name, differentiable=False, **options)
        value = state.value
        if v_grad:

            def adjoint(g):
                with torch.no_grad():
                    again = _lanczos(
                        A, g.reshape(flat.shape), fn, name, differentiable=False, **options
                    )
                return again.value.reshape(g.shape)

            value = _SelfAdjointLinear.apply(flat.reshape(value.shape), value, adjoint)
    return finish(
        value.reshape(v.shape),
        "lanczos",
        state.num_iters,
        state.error_estimate.reshape(batch),
        state.converged.reshape(batch),
        tol_used=tol,
    )


def _convenience(name: str, doc: str):
    public = {"sqrt": "sqrtm", "invsqrt": "invsqrtm", "exp": "expm", "log": "logm"}[name]

    def fn(A, v, **kwargs):
        for key in kwargs:
            if key not in _KEYWORDS:
                raise TypeError(
                    f"{public}: unexpected keyword argument {key!r} (expected keyword "
                    f"arguments in {_KEYWORDS})"
                )
        return funm(name, A, v, **kwargs)

    fn.__name__ = public
    fn.__qualname__ = fn.__name__
    fn.__doc__ = f"""{doc}

    Shorthand for ``funm({name!r}, A, v, **kwargs)``; see :func:`funm` for the
    keyword arguments (``method``, ``tol``, ``max_iters``, ``reorth``, ``throw``).

    Parameters
    ----------
    A : LinearOperator
    v : Tensor, shape (\\\\*batch, \\\\*in_shape)

    Returns
    -------
    FunmResult
    """
    return fn


sqrtm = _convenience("sqrt", "``A^{1/2} v`` for a positive semidefinite ``A``.")
invsqrtm = _convenience("invsqrt", "``A^{-1/2} v`` for a positive definite ``A``.")
expm = _convenience("exp", "``exp(A) v`` for a self-adjoint ``A``.")
logm = _convenience("log", "``log(A) v`` for a positive definite ``A``.")
