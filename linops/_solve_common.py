"""Shared pieces of the Krylov solvers: the result, input checks, batched vector algebra,
the restart driver and the implicit gradient."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from ._base import LinearOperator
from ._funm import ConvergenceError
from ._utils import adjoint_mismatch, check_data, complex_dtype, format_shape, real_dtype

__all__ = ["SolveResult"]

Matvec = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SolveResult:
    """Result of :func:`cg`, :func:`minres`, :func:`lsqr` and :func:`solve`.

    Attributes
    ----------
    value : Tensor, shape (\\*batch, \\*in_shape)
        The solution ``x``; differentiable with respect to ``b`` and to tensors inside the
        operator (implicit differentiation, see the solvers' Notes).
    method : str
        ``"cg"``, ``"minres"``, ``"lsqr"``, or an exact structured route:
        ``"scaled_identity"``, ``"diagonal"``, ``"basis_diagonal"``, ``"kronecker"``.
    num_iters : Tensor of int64, shape (\\*batch,)
        Krylov iterations (operator applications) per right-hand side; 0 for exact routes
        and zero right-hand sides.
    residual_norm : Tensor, shape (\\*batch,)
        The true residual ``||b - A x||`` of the returned ``x`` (for :func:`minres`,
        ``||b - (A - shift I) x||``), recomputed from ``x``, not a recurrence estimate.
    converged : bool
        Whether every right-hand side met the method's stopping test (see each solver).
    """

    value: torch.Tensor
    method: str
    num_iters: torch.Tensor
    residual_norm: torch.Tensor
    converged: bool


# ------------------------------------------------------------------ input checks
def check_operator(A, where: str) -> None:
    if not isinstance(A, LinearOperator):
        raise TypeError(f"{where}: expected A to be a LinearOperator, got {type(A).__name__}")


def check_square(A: LinearOperator, where: str) -> None:
    if A.in_shape != A.out_shape:
        raise ValueError(
            f"{where}: expected a square operator (in_shape == out_shape), got in_shape "
            f"{format_shape(A.in_shape)} and out_shape {format_shape(A.out_shape)}"
        )


def check_tol(tol, where: str) -> float:
    ok = isinstance(tol, numbers.Real) and not isinstance(tol, bool)
    if not ok or not math.isfinite(float(tol)) or tol <= 0:
        raise ValueError(f"{where}: expected tol > 0 (a finite real number), got {tol!r}")
    return float(tol)


def check_max_iters(max_iters, where: str) -> int | None:
    if max_iters is None:
        return None
    if not isinstance(max_iters, numbers.Integral) or isinstance(max_iters, bool) or max_iters < 1:
        raise ValueError(f"{where}: expected max_iters >= 1 (an int) or None, got {max_iters!r}")
    return int(max_iters)


def check_real(value, name: str, where: str, *, nonnegative: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (value >= 0 or not nonnegative)
    if not ok:
        need = "a finite real number >= 0" if nonnegative else "a finite real number"
        raise ValueError(f"{where}: expected {name} to be {need}, got {value!r}")
    return value


def check_throw(throw, where: str) -> None:
    if not isinstance(throw, bool):
        raise TypeError(f"{where}: expected throw to be a bool, got {type(throw).__name__}")


def prepare_rhs(A: LinearOperator, b, where: str, shape: tuple[int, ...]):
    """Validate ``b`` of trailing shape ``shape``; return (flat b, batch, working dtype).

    The flat ``b`` has shape ``(B, *shape)`` and the working dtype (complex when ``A`` is),
    and keeps ``b``'s autograd history.
    """
    if not isinstance(b, torch.Tensor):
        raise TypeError(f"{where}: expected b to be a torch.Tensor, got {type(b).__name__}")
    if not (b.is_floating_point() or b.is_complex()):
        raise ValueError(
            f"{where}: expected b with a floating or complex dtype, got {b.dtype}. "
            "Convert it first, e.g. b.double()"
        )
    check_data(b, where, "b")
    nd = len(shape)
    if b.dim() < nd or tuple(b.shape[b.dim() - nd :]) != shape:
        side = "out_shape" if shape == A.out_shape and shape != A.in_shape else "in_shape"
        raise ValueError(
            f"{where}: expected b with trailing shape {format_shape(shape)} "
            f"(A.{side} of {A.name}), got b of shape {format_shape(b.shape)}"
        )
    if not bool(torch.isfinite(b).all()):
        raise ValueError(f"{where}: expected a finite b, got NaN or inf entries")
    dtype = complex_dtype(b.dtype) if A.is_complex else b.dtype
    batch = tuple(b.shape[: b.dim() - nd])
    return b.to(dtype).reshape(-1, *shape), batch, dtype


def prepare_x0(x0, batch, shape, dtype, where: str) -> torch.Tensor | None:
    """Validate an initial guess of shape ``(*batch, *shape)``; return it flat and detached."""
    if x0 is None:
        return None
    if not isinstance(x0, torch.Tensor):
        raise TypeError(
            f"{where}: expected x0 to be a torch.Tensor or None, got {type(x0).__name__}"
        )
    want = (*batch, *shape)
    if tuple(x0.shape) != want:
        raise ValueError(
            f"{where}: expected x0 of shape {format_shape(want)} (b's batch and A.in_shape), "
            f"got {format_shape(x0.shape)}"
        )
    if not (x0.is_floating_point() or x0.is_complex()):
        raise ValueError(f"{where}: expected a finite floating x0, got dtype {x0.dtype}")
    if x0.device.type == "meta":
        raise ValueError(f"{where}: expected x0 with data, got a tensor on the meta device")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError(f"{where}: expected a finite x0, got NaN or inf entries")
    return x0.detach().to(dtype).reshape(-1, *shape)


def check_self_adjoint(A: LinearOperator, what: str, where: str, dtype, device) -> None:
    """Raise unless ``A`` is declared self-adjoint or passes a randomised symmetry test.

    ``|<A u, w> - <u, A w>|`` relative to the norms must be within ``10 eps sqrt(2 n)``
    (the rounding of two inner products of length ``n``), as in :func:`funm`.
    """
    if A.is_self_adjoint:
        return
    mismatch, tol, _ = adjoint_mismatch(A, dtype, device)
    if mismatch > tol:
        raise ValueError(
            f"{where}: expected {what} to be self-adjoint, got {A.name} with "
            f"|<Au, w> - <u, Aw>| / norms = {mismatch:.3g} > {tol:.3g}. Use lsqr (or "
            "solve, which picks it) for operators that are not"
        )


# ----------------------------------------------------------- batched vector algebra
def bview(s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-row scalar ``(B,)`` viewed to broadcast against ``like`` ``(B, ...)``."""
    return s.reshape(s.shape[0], *([1] * (like.dim() - 1)))


def _rows(u: torch.Tensor) -> torch.Tensor:
    """``(B, ...)`` as ``(B, n)`` (also for ``B = 0``)."""
    return u.flatten(1) if u.dim() > 1 else u[:, None]


def dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``<u, v> = sum(conj(u) v)`` per row."""
    return torch.linalg.vecdot(_rows(u), _rows(v))


def rdot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``Re <u, v>`` per row (the real inner product the Hermitian recurrences need)."""
    return dot(u, v).real


def norm(u: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(_rows(u), dim=1)


def keep(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` on the rows where ``mask`` holds, ``old`` elsewhere (a select: a NaN in the
    tensor not selected never reaches the result)."""
    return torch.where(bview(mask, new), new, old)


def safe(s: torch.Tensor) -> torch.Tensor:
    """``s`` with zeros replaced by ones, for divisions whose result is masked anyway."""
    return torch.where(s == 0, torch.ones_like(s), s)


# -------------------------------------------------------------- restart driver
@dataclass
class CoreResult:
    """What a Krylov core returns: flat ``x``, the final true residual ``b - A x`` (with
    autograd history when it has one), and per-row iterations and convergence."""

    x: torch.Tensor
    residual: torch.Tensor
    iters: torch.Tensor
    converged: torch.Tensor


def run_with_restarts(
    one_round: Callable,
    residual_fn: Matvec,
    b: torch.Tensor,
    x0: torch.Tensor | None,
    tol: float,
    max_iters: int,
) -> CoreResult:
    """Run ``one_round`` until every right-hand side passes the *true* residual test.

    A round iterates on the rows in ``active`` from the current ``x`` and its true residual,
    and returns ``(x, iters, hit)`` where ``hit`` marks rows whose recurrence residual met
    ``tol ||b||``. The recurrence drifts from the true residual in finite precision, so rows
    that claimed convergence but fail the true test start a new round from where they are
    (residual replacement), as long as the last round reduced their true residual and
    iterations are left; the others stop, not converged.
    """
    bnorm = norm(b)
    target = tol * bnorm
    x = torch.zeros_like(b) if x0 is None else keep(bnorm > 0, x0, torch.zeros_like(b))
    iters = torch.zeros(b.shape[0], dtype=torch.int64, device=b.device)
    R = residual_fn(x)
    r = R.detach()
    rnorm = norm(r)
    converged = rnorm <= target
    active = ~converged
    while bool(active.any()):
        x, iters, hit = one_round(r, x, active, target, iters, max_iters)
        R = residual_fn(x)
        r = R.detach()
        true_norm = norm(r)
        converged = true_norm <= target
        active = hit & ~converged & (iters < max_iters) & (true_norm < rnorm)
        rnorm = torch.where(active, true_norm, rnorm)
    return CoreResult(x, R, iters, converged)


def residual_function(matvec: Matvec, b: torch.Tensor, *, grad: bool) -> Matvec:
    """``x -> b - matvec(x)``, recorded by autograd when ``grad`` (``x`` itself detached)."""

    def residual(x: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(grad):
            return b - matvec(x.detach())

    return residual


# -------------------------------------------------------------- implicit gradient
class _ImplicitSolve(torch.autograd.Function):
    """Zero in the forward pass; ``g -> S^H g`` in the backward pass.

    Used as ``x + _ImplicitSolve.apply(R, solve_adjoint)`` with ``x = S(b)`` the solution
    computed without autograd and ``R`` a residual of the system written with ``x``
    detached: the value is ``x``, and the gradient is the one of ``x = S R``.
    """

    @staticmethod
    def forward(ctx, residual, solve_adjoint):
        ctx.solve_adjoint = solve_adjoint
        return torch.zeros_like(residual)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        return ctx.solve_adjoint(grad), None


def attach_gradient(x: torch.Tensor, residual: torch.Tensor, solve_adjoint: Matvec):
    """``x`` with the implicit gradient of a solve attached, if ``residual`` has a graph.

    For ``A x = b`` solved to ``x*``, write ``R = b - A x*`` with ``x*`` held constant: ``R``
    depends on ``b`` and on the operator's tensors ``θ``, and the solution map's derivative
    is ``dx = A^{-1} (db - dA x*) = A^{-1} dR``. So ``x* + Z(R)``, where ``Z`` is zero in value
    and has Jacobian ``A^{-1}`` (its backward solves ``A^H λ = g``), carries exactly the
    gradient of the solution: autograd then takes ``λ`` to ``b`` (``grad_b = λ``) and, through
    ``A.apply(x*)``, to ``θ`` (``grad_θ = -(∂A/∂θ x*)^H λ``, one VJP of the operator). Only the
    final solution enters the graph: no iteration is backpropagated through, and the tensors
    ``θ`` are found by autograd wherever the operator keeps them.
    """
    if not residual.requires_grad:
        return x
    return x + _ImplicitSolve.apply(residual, solve_adjoint)


def adjoint_with_graph(A: LinearOperator, r: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``A^H r`` as autograd's VJP of ``A.apply``, differentiable in ``r`` and in ``A``'s
    tensors (``apply_adjoint`` need not be: a :class:`FunctionOperator`'s is a cached
    linearisation). ``like`` gives the input shape and dtype."""
    with torch.enable_grad():
        u = torch.zeros_like(like, requires_grad=True)
        (out,) = torch.autograd.grad(A.apply(u), u, r, create_graph=True, allow_unused=True)
    return torch.zeros_like(like) if out is None else out


def backward_report(where: str, method: str, result: CoreResult, tol: float, throw: bool):
    """Warn (or raise with ``throw``) when a backward solve missed ``tol``."""
    if bool(result.converged.all()):
        return
    missed = int((~result.converged).sum())
    msg = (
        f"{where}: the adjoint {method} solve of the backward pass left {missed} of "
        f"{result.converged.numel()} right-hand sides above tol={tol:g}; the gradient is "
        "approximate. Raise max_iters or loosen tol"
    )
    if throw:
        raise ConvergenceError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


# ------------------------------------------------------------------- result
def empty_result(method, batch, shape, b_flat) -> SolveResult | None:
    """The result for an empty batch (no right-hand side: nothing to apply), else None."""
    if b_flat.shape[0] != 0:
        return None
    return SolveResult(
        b_flat.new_zeros((*batch, *shape)),
        method,
        torch.zeros(batch, dtype=torch.int64, device=b_flat.device),
        torch.zeros(batch, dtype=real_dtype(b_flat.dtype), device=b_flat.device),
        True,
    )


def finish(
    where: str,
    method: str,
    value: torch.Tensor,
    batch: tuple[int, ...],
    out_shape: tuple[int, ...],
    b_flat: torch.Tensor,
    result: CoreResult,
    *,
    tol: float,
    max_iters: int | None,
    throw: bool,
    hint: str,
) -> SolveResult:
    """Assemble the :class:`SolveResult` (and raise with ``throw``)."""
    rnorm = norm(result.residual.detach()).to(real_dtype(value.dtype))
    converged = bool(result.converged.all())
    if throw and not converged:
        bnorm = norm(b_flat.detach())
        rel = rnorm / torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))
        missed = ~result.converged
        worst = float(rel[missed].max())
        budget = f" within max_iters={max_iters}" if max_iters is not None else ""
        raise ConvergenceError(
            f"{where}: {int(missed.sum())} of {missed.numel()} right-hand sides did not reach "
            f"tol={tol:g}{budget} (worst relative residual "
            f"||b - A x|| / ||b|| = {worst:.3g}). {hint}"
        )
    return SolveResult(
        value.reshape(*batch, *out_shape),
        method,
        result.iters.reshape(batch),
        rnorm.reshape(batch),
        converged,
    )
