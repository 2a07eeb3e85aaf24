"""Matrix functions ``f(A) v`` of self-adjoint operators."""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from . import _banded
from ._algebra import Adjoint, Composed, Scaled, Sum
from ._base import LinearOperator
from ._basis_diagonal import BasisDiagonal
from ._dct import DCT2
from ._elementary import Dense, Diagonal, Identity, ScaledIdentity
from ._fft import FFT2
from ._fused import kron_matvec
from ._kronecker import Kronecker
from ._lanczos import STIELTJES, derivative, divided_differences, lanczos_funm
from ._structure import ShiftedKronecker, shifted_kronecker
from ._utils import adjoint_mismatch, format_shape

__all__ = ["ConvergenceError", "FunmResult", "expm", "funm", "invsqrtm", "logm", "sqrtm"]

_METHODS = ("auto", "lanczos", "exact", "dense")
_REORTH = ("auto", "full", "none")
#: an eigenvalue at most this many eps of ||A|| is zero to rounding (for invsqrt and log)
PD_FLOOR = 100


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


# ----------------------------------------------------------------- functions
def _named(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return {
        "sqrt": torch.sqrt,
        "invsqrt": torch.rsqrt,
        "exp": torch.exp,
        "log": torch.log,
    }[name]


# the domain each named function needs: "psd" (>= 0), "pd" (> 0), or None
_DOMAIN = {"sqrt": "psd", "invsqrt": "pd", "exp": None, "log": "pd"}


def _checked(fn: Callable, where: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A user function with its output checked: a tensor of its input's shape and kind."""
    label = getattr(fn, "__name__", type(fn).__name__)

    def call(x: torch.Tensor) -> torch.Tensor:
        y = fn(x)
        if not isinstance(y, torch.Tensor):
            raise ValueError(
                f"{where}: expected f ({label}) to return a tensor (it is applied elementwise "
                f"to a tensor of eigenvalues), got {type(y).__name__}"
            )
        if y.shape != x.shape:
            raise ValueError(
                f"{where}: expected f ({label}) to return the shape of its input (it is "
                f"applied elementwise to a tensor of eigenvalues), got shape "
                f"{format_shape(y.shape)} for an input of shape {format_shape(x.shape)}"
            )
        if not y.is_floating_point():
            raise ValueError(
                f"{where}: expected f ({label}) to return real floating values, got {y.dtype}"
            )
        return y

    call.__name__ = label
    return call


def _num(x) -> float:
    """A scalar as a Python float, for messages and scales only (never for values)."""
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def _spectrum_checker(name: str | None, where: str, dtype: torch.dtype, scale_hint: float):
    """A function that raises on eigenvalues outside ``f``'s domain, beyond rounding.

    For ``sqrt``, values within ``1000 eps * scale`` below zero are rounding (a PSD
    operator's computed eigenvalues scatter by ``~eps ||A||`` around the true ones) and are
    clamped to zero by :func:`_clamp`. For ``invsqrt`` and ``log`` an eigenvalue at most
    ``100 eps * scale`` is zero to that rounding: ``f`` of it would be a finite number of
    no meaning (``log(1e-30) = -69``), so it is refused as well. NaN eigenvalues (an
    operator holding NaN) are refused for every ``f``.
    """
    domain = _DOMAIN.get(name) if name is not None else None
    eps = torch.finfo(dtype).eps

    def check(eig: torch.Tensor, location: Callable[[int], str] | None = None) -> None:
        if eig.numel() == 0:
            return
        eig = eig.detach()
        if not bool(torch.isfinite(eig).all()):
            idx = int((~torch.isfinite(eig)).reshape(-1).nonzero()[0, 0])
            where_txt = location(idx) if location is not None else ""
            raise ValueError(
                f"{where}: expected an operator with finite entries, got an eigenvalue "
                f"{float(eig.reshape(-1)[idx])}{where_txt}"
            )
        if domain is None:
            return
        scale = max(scale_hint, float(eig.abs().max()))
        low = float(eig.min())
        if domain == "psd":
            floor = -1000 * eps * scale
            bad = low < floor
            allowed = f"rounding allows down to {floor:.3g}"
        else:
            floor = PD_FLOOR * eps * scale
            bad = low <= floor
            allowed = (
                "it must be > 0"
                if low <= 0
                else f"it must exceed {PD_FLOOR} eps ||A|| = {floor:.3g}, smaller is zero to "
                "rounding (A is singular to working precision)"
            )
        if bad:
            idx = int(eig.reshape(-1).argmin())
            where_txt = location(idx) if location is not None else ""
            need = "positive semidefinite" if domain == "psd" else "positive definite"
            raise ValueError(
                f"{where}: {name} needs a {need} operator, got an eigenvalue {low:.6g}"
                f"{where_txt}; {allowed}"
            )

    return check


def _clamp(eig: torch.Tensor, name: str | None) -> torch.Tensor:
    return eig.clamp_min(0) if name == "sqrt" else eig


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
    nd = len(A.in_shape)
    if v.dim() < nd or tuple(v.shape[v.dim() - nd :]) != A.in_shape:
        raise ValueError(
            f"{where}: expected v with trailing shape {format_shape(A.in_shape)}, "
            f"got {format_shape(v.shape)}"
        )
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{where}: expected a finite v, got NaN or inf entries")


# operators that hold no tensors of the caller (their matrices are built from sizes)
_PARAMETER_FREE = (Identity, DCT2, FFT2)


def _operator_requires_grad(A: LinearOperator, like: torch.Tensor) -> bool:
    """Whether ``A``'s output depends on tensors that require grad (grad mode assumed on).

    Known operators are inspected; for any other (a :class:`FunctionOperator` capturing
    parameters, a user subclass) one application to a zero sample tells: autograd marks
    the output as requiring grad exactly when a captured tensor does.
    """

    def needs(t) -> bool:
        return isinstance(t, torch.Tensor) and t.requires_grad

    def walk(op) -> bool | None:  # None: unknown, probe
        if isinstance(op, _PARAMETER_FREE):
            return False
        if isinstance(op, ScaledIdentity):
            return needs(op.scale)
        if isinstance(op, Diagonal):
            return needs(op.diag)
        if isinstance(op, Dense):
            return needs(op.matrix)
        if isinstance(op, BasisDiagonal):
            inner = walk(op.basis)
            return None if inner is None else (needs(op.diag) or inner)
        if isinstance(op, Scaled):
            inner = walk(op.operator)
            return None if inner is None else (needs(op.scale) or inner)
        if isinstance(op, Adjoint):
            return walk(op.operator)
        if isinstance(op, (Sum, Composed)):
            parts = [walk(o) for o in op.operators]
            if any(p is True for p in parts):
                return True
            return None if any(p is None for p in parts) else False
        if isinstance(op, Kronecker):
            inputs = getattr(op, "_inputs", ())
            if any(isinstance(f, LinearOperator) for f in inputs):
                return None
            return any(needs(f) for f in inputs)
        return None

    known = walk(A)
    if known is not None:
        return known
    zero = torch.zeros((1, *A.in_shape), dtype=like.dtype, device=like.device)
    return bool(A.apply(zero).requires_grad)


# ------------------------------------------------------------ exact paths
_EIGH_CACHE: OrderedDict = OrderedDict()
_EIGH_CACHE_SIZE = 64


def _cached_eigh(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``eigh`` of a small symmetric factor, cached by (shape, dtype, device, content)."""
    host = G.detach().to("cpu").contiguous()
    digest = hashlib.sha1(host.numpy().tobytes()).hexdigest()
    key = (tuple(G.shape), G.dtype, str(G.device), digest)
    hit = _EIGH_CACHE.get(key)
    if hit is not None:
        _EIGH_CACHE.move_to_end(key)
        return hit
    lam, U = torch.linalg.eigh(G.detach())
    _EIGH_CACHE[key] = (lam, U)
    if len(_EIGH_CACHE) > _EIGH_CACHE_SIZE:
        _EIGH_CACHE.popitem(last=False)
    return lam, U


def _symmetric(G: torch.Tensor) -> bool:
    return bool(
        (G - G.T).abs().max() <= 100 * torch.finfo(G.dtype).eps * G.abs().max().clamp_min(1e-300)
    )


def _as_1d(a) -> torch.Tensor:
    """A real scalar (float or 0-d tensor) as a float64 tensor of shape (1,), keeping grad."""
    if isinstance(a, torch.Tensor):
        return a.reshape(1).to(torch.float64)
    return torch.tensor([a], dtype=torch.float64)


def _exact_kronecker(sk: ShiftedKronecker, v, f, name, where):
    """``f(a I + b G_h ⊗ G_w) v`` by the factors' eigendecompositions.

    Differentiable in ``v`` and in ``a``, ``b`` when they are tensors that require grad
    (then no tensor is written in place).
    """
    grad = torch.is_grad_enabled() and (v.requires_grad or sk.differentiable)
    if sk.kron is None:
        lam = _as_1d(sk.a).to(v.device)
        _spectrum_checker(name, where, torch.float64, abs(_num(sk.a)))(lam, lambda i: " (A = a I)")
        return f(_clamp(lam, name))[0].to(v.dtype) * v, "scaled_identity"
    G_h = (sk.kron.G_h + sk.kron.G_h.T) / 2
    G_w = (sk.kron.G_w + sk.kron.G_w.T) / 2
    lam_h, U_h = _cached_eigh(G_h)
    lam_w, U_w = _cached_eigh(G_w)
    eig = sk.a + sk.b * lam_h[:, None] * lam_w[None, :]
    scale = abs(_num(sk.a)) + abs(_num(sk.b)) * float(lam_h.abs().max() * lam_w.abs().max())
    W = lam_w.numel()
    _spectrum_checker(name, where, v.dtype, scale)(
        eig, lambda i: f" (Kronecker eigenpair ({i // W}, {i % W}) of a I + b G_h (x) G_w)"
    )
    fx = f(_clamp(eig, name))
    # G_h, G_w of a downsampling are rank-deficient (R^T R of a 2x resize has rank n/2):
    # on the eigenvectors with lam_h lam_w = 0, f(A) = f(a). Writing
    # f(A) v = f(a) v + U_h' [(f(eig') - f(a)) * (U_h'^T V U_w')] U_w'^T over the nonzero
    # eigenpairs only (those with |lam| above rounding) does the same work on the smaller
    # factors: about 2.7x fewer flops at 64 -> 32, and exact to rounding
    fa = f(_clamp(_as_1d(sk.a).to(eig.device), name))
    keep_h, keep_w = _nonzero(lam_h), _nonzero(lam_w)
    if bool(torch.isfinite(fa.detach()).all()) and (keep_h.sum() + keep_w.sum()) * 4 <= 3 * (
        lam_h.numel() + lam_w.numel()
    ):
        U_h, U_w = U_h[:, keep_h], U_w[:, keep_w]  # noqa: N806
        d = (fx[keep_h][:, keep_w] - fa).to(v.dtype)
        z = _two_sided(v, U_h.T.to(v.dtype), U_w.to(v.dtype))
        z = z * d if grad else z.mul_(d)
        out = _two_sided(z, U_h.to(v.dtype), U_w.T.to(v.dtype))
        if grad:
            return out + fa.to(v.dtype) * v, "kronecker"
        return out.add_(v, alpha=float(fa)), "kronecker"
    z = _two_sided(v, U_h.T.to(v.dtype), U_w.to(v.dtype))
    z = z * fx.to(v.dtype) if grad else z.mul_(fx.to(v.dtype))
    return _two_sided(z, U_h.to(v.dtype), U_w.T.to(v.dtype)), "kronecker"


def _nonzero(lam: torch.Tensor) -> torch.Tensor:
    """Eigenvalues that are not zero to rounding (``|lam| > n eps max |lam|``)."""
    return lam.abs() > lam.numel() * torch.finfo(lam.dtype).eps * lam.abs().max()


def _two_sided(x: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left @ X @ right`` for every ``(H, W)`` image of ``x`` as two large GEMMs.

    ``X right`` is one ``(N H, W) x (W, W)`` product; ``left (.)`` one batched product
    with the (expanded, not copied) left factor. Broadcasting ``left @ x @ right``
    directly runs about 2x slower on a (64, 3, 64, 64) batch.
    """
    H, W = x.shape[-2:]  # noqa: N806
    y = (x.reshape(-1, W) @ right).view(-1, H, right.shape[1])
    out = torch.bmm(left.expand(y.shape[0], *left.shape), y)
    return out.view(*x.shape[:-2], left.shape[0], right.shape[1])


def _exact_basis_diagonal(A: BasisDiagonal, v, f, name, where):
    d = A.diag.to(device=v.device)
    if d.is_complex():
        raise ValueError(f"{where}: expected a real diagonal (self-adjoint), got {d.dtype}")
    d = d.to(v.dtype)
    check = _spectrum_checker(name, where, v.dtype, float(d.detach().abs().max()))
    shape = d.shape

    def location(i):
        idx = tuple(int(j) for j in torch.unravel_index(torch.tensor(i), shape))
        return f" (diag entry {idx} of the BasisDiagonal)"

    check(d, location)
    return A.with_diag(f(_clamp(d, name))).apply(v), "basis_diagonal"


def _exact(A: LinearOperator, v, f, name, where):
    """The exact structured path, or None when ``A`` has no known structure."""
    if isinstance(A, BasisDiagonal):
        return _exact_basis_diagonal(A, v, f, name, where)
    # factors and their eigendecompositions in float64 whatever v's precision: they are
    # small, and sqrt/log of eigenvalues near zero amplify float32 eigh errors
    sk = shifted_kronecker(A, torch.float64, v.device)
    if sk is None:
        return None
    if sk.kron is not None and not (_symmetric(sk.kron.G_h) and _symmetric(sk.kron.G_w)):
        return None
    value, path = _exact_kronecker(sk, v.to(torch.float64), f, name, where)
    return value.to(v.dtype), path


# ------------------------------------------------------------ dense route
class _DenseFunction(torch.autograd.Function):
    """``f(D) v`` for a real symmetric matrix ``D`` with the Daleckii-Krein backward.

    ``eigh``'s own backward divides by eigenvalue gaps (inf/NaN at the repeated
    eigenvalues of, e.g., ``I - rho R^T R``); the derivative of ``f(D)`` uses divided
    differences instead (see :class:`linops._lanczos.TridiagonalFunction`):
    ``grad_D = U (F^[1] ∘ (U^T G U)) U^T`` with ``G = sum_b g_b v_b^T``, and
    ``grad_v = f(D) g`` (``f(D)`` is symmetric).
    """

    @staticmethod
    def forward(ctx, D, flat, f, fprime):  # noqa: N803
        lam, U = torch.linalg.eigh(D)
        fx = f(lam)
        ctx.save_for_backward(lam, U, fx, flat)
        ctx.fprime = fprime
        return (flat @ U) * fx @ U.mT, lam

    @staticmethod
    def backward(ctx, g, _):
        lam, U, fx, flat = ctx.saved_tensors
        grad_v = (g @ U) * fx @ U.mT if ctx.needs_input_grad[1] else None
        grad_D = None  # noqa: N806
        if ctx.needs_input_grad[0]:
            F1 = divided_differences(lam, fx, ctx.fprime)  # noqa: N806
            inner = F1 * ((g @ U).mT @ (flat @ U))  # U^T (sum_b g_b v_b^T) U
            grad_D = U @ inner @ U.mT  # noqa: N806
        return grad_D, grad_v, None, None


def _dense(A: LinearOperator, v, f, name, where):
    D = A.to_dense(dtype=v.dtype, device=v.device)  # noqa: N806
    if not bool(torch.isfinite(D.detach()).all()):
        raise ValueError(f"{where}: expected an operator with finite entries, got NaN or inf")
    D = (D + D.mH) / 2  # noqa: N806
    flat = v.reshape(-1, D.shape[0])
    fc = lambda x: f(_clamp(x, name))  # noqa: E731
    if torch.is_grad_enabled() and (D.requires_grad or v.requires_grad) and not D.is_complex():
        out, lam = _DenseFunction.apply(D, flat, fc, derivative(fc, where))
    else:
        lam, U = torch.linalg.eigh(D)  # noqa: N806
        out = (flat @ U) * fc(lam) @ U.mH
    _spectrum_checker(name, where, v.dtype, float(lam.detach().abs().max()))(lam)
    return out.reshape(v.shape)


# ------------------------------------------------------------ Lanczos route
def _matvec(A: LinearOperator, v: torch.Tensor, backend: str, *, pay: bool = True):
    """``A.apply``, or the fused :func:`kron_matvec` when ``A = a I + b (G_h ⊗ G_w)``.

    Only for runs that autograd does not record (``v`` and ``A`` without gradients).
    ``pay=False`` (what :func:`funm` passes) takes the compiled banded route only once
    :func:`linops._banded.compiled_route_pays`; ``pay=True`` takes it whenever it applies.
    """
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"funm: expected backend 'auto', 'torch' or 'triton', got {backend!r}")
    sk = shifted_kronecker(A, v.dtype, v.device) if len(A.in_shape) >= 2 else None
    if sk is None or sk.kron is None or sk.differentiable:
        return A.apply
    a, b = float(sk.a), float(sk.b)
    G_h, G_w = sk.kron.G_h.to(v.dtype), sk.kron.G_w.to(v.dtype)
    if backend == "triton" or (backend == "auto" and v.device.type == "cuda"):
        return lambda x: kron_matvec(x, G_h, G_w, a, b, backend=backend)
    compilable = False
    if v.device.type == "cpu" and not (torch.is_grad_enabled() and v.requires_grad):
        # banded factors (resize, blur): one compiled pass per image (no autograd through
        # it), once numba's start-up cost is paid for (see _banded.compiled_route_pays)
        compilable = _banded.shifted_plan(G_h, G_w) is not None
        if compilable and (pay or _banded.compiled_route_pays()):
            banded = _banded.shifted_kron_matvec(G_h, G_w, a, b)
            if banded is not None:
                return banded
    H, W = G_h.shape[0], G_w.shape[0]  # noqa: N806
    G_wt = G_w.T.contiguous()  # noqa: N806

    def apply(x):
        # kron_matvec's torch route with two GEMM calls and no temporaries: V G_w^T as
        # one (B H, W) x (W, W) product, then a I + b G_h (.) as one batched GEMM
        # (baddbmm); ~1.4x faster on a (64, 3, 64, 64) batch than a v + b (G_h @ v @ G_w^T)
        start = time.perf_counter()
        X = x.reshape(-1, H, W)  # noqa: N806
        Y = (X.reshape(-1, W) @ G_wt).view(-1, H, W)  # noqa: N806
        out = torch.baddbmm(X, G_h.expand(X.shape[0], H, H), Y, beta=a, alpha=b)
        apply.gemm_seconds += time.perf_counter() - start
        return out.view(x.shape)

    apply.gemm_seconds = 0.0
    apply.compilable = compilable  # its time counts towards compiling the banded route
    return apply


class _SelfAdjointLinear(torch.autograd.Function):
    """``y = F v`` for a self-adjoint ``F`` given as a callable: the backward is ``F g``.

    The forward value is computed outside (by the fast in-place Lanczos); the backward is
    one more ``funm`` call, not a pass back through the iterations.
    """

    @staticmethod
    def forward(ctx, v, value, apply):
        ctx.adjoint = apply  # (ctx.apply is the engine's entry point)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        return ctx.adjoint(g), None, None


class _InvariantCheck(torch.autograd.Function):
    """Identity in the forward pass; the backward refuses gradients it cannot compute.

    When the Krylov space of a right-hand side became invariant after ``k < n`` steps,
    backpropagating through Lanczos gives the operator's tensors the gradient of
    ``Q_k f(Q_k^T A Q_k) e_1``, which equals that of ``f(A) v`` only for incoming
    gradients inside the Krylov space (checked here, to ``sqrt(eps)``).
    """

    @staticmethod
    def forward(ctx, value, basis, rows, where):
        ctx.basis, ctx.rows, ctx.where = basis, rows, where
        return value.view_as(value)

    @staticmethod
    def backward(ctx, g):
        eps = torch.finfo(g.dtype).eps
        for row, Q in zip(ctx.rows, ctx.basis, strict=True):  # noqa: N806
            gr = g[row].detach()
            outside = gr - Q.mT @ (Q @ gr)
            if float(torch.linalg.vector_norm(outside)) > math.sqrt(eps) * float(
                torch.linalg.vector_norm(gr)
            ):
                raise RuntimeError(
                    f"{ctx.where}: the gradient with respect to the operator's tensors is not "
                    f"available by Lanczos here: the Krylov space of right-hand side {row} "
                    f"became invariant after {Q.shape[0]} < n steps and the incoming gradient "
                    "has a part outside it, which couples to the rest of the spectrum. Use "
                    "method='dense' (small operators) or a structured operator (method='exact')"
                )
        return g, None, None, None


def _lanczos(A, v, fn, name, *, where, tol, max_iters, reorth, backend, differentiable):
    """One Lanczos run on ``v`` of shape ``(B, *in_shape)``; returns the ``LanczosState``."""
    check = _spectrum_checker(name, where, v.dtype, 0.0)

    def check_ritz(theta):
        def location(i):
            row = i // theta.shape[-1]
            return f" (a Ritz value for right-hand side {row}: A has an eigenvalue at most this)"

        check(theta, location)

    fc = lambda x: fn(_clamp(x, name))  # noqa: E731
    matvec = A.apply if differentiable else _matvec(A, v, backend, pay=False)
    state = _run_lanczos(
        matvec, v, fc, name, check_ritz, where, tol, max_iters, reorth, backend, differentiable
    )
    if getattr(matvec, "compilable", False):
        _banded.record_gemm_call(matvec.gemm_seconds)
    return state


def _run_lanczos(
    matvec, v, fc, name, check_ritz, where, tol, max_iters, reorth, backend, differentiable
):
    return lanczos_funm(
        matvec,
        v,
        fc,
        tol=tol,
        max_iters=max_iters,
        reorth=reorth,
        check_spectrum=check_ritz,
        backend=backend,
        stieltjes=name if name in STIELTJES else None,
        matvec_out=getattr(matvec, "writes_out", False),
        differentiable=differentiable,
        fprime=derivative(fc, where) if differentiable else None,
        where=where,
    )


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

    Raises
    ------
    ValueError
        For a non-self-adjoint ``A``, a ``v`` of the wrong shape or with NaNs, an
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
    if tol is not None and not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"{where}: expected tol > 0, got {tol!r}")
    if max_iters is not None and not (isinstance(max_iters, int) and max_iters >= 1):
        raise ValueError(f"{where}: expected max_iters >= 1, got {max_iters!r}")
    _check_vector(A, v, where)
    batch = v.shape[: v.dim() - len(A.in_shape)]
    _check_self_adjoint(A, where, v.dtype, v.device)
    zero_error = torch.zeros(batch, dtype=v.dtype, device=v.device)
    grad_mode = torch.is_grad_enabled()
    v_grad = grad_mode and v.requires_grad
    op_grad = grad_mode and _operator_requires_grad(A, v)

    def finish(value, path, iters, estimate, converged_rows, tol_used=None):
        finite = torch.isfinite(value.detach()).reshape(*batch, -1).all(-1)
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
    if method == "dense":
        value = _dense(A, v, fn, name, where)
        return finish(value, "dense", 0, zero_error, torch.ones_like(zero_error, dtype=bool))

    if v.is_complex() or A.is_complex:
        raise ValueError(f"{where}: Lanczos here supports real operators and vectors, got complex")
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
    def fn(A, v, **kwargs):
        return funm(name, A, v, **kwargs)

    fn.__name__ = {"sqrt": "sqrtm", "invsqrt": "invsqrtm", "exp": "expm", "log": "logm"}[name]
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
