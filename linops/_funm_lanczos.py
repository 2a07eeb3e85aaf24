"""The Lanczos route of :func:`linops.funm`.

The matvec a run uses (the fused or compiled banded one for ``a I + b (G_h ⊗ G_w)``,
``A.apply`` otherwise) and one batched Lanczos run with ``f``'s domain checked on the
Ritz values; the iteration itself is :func:`linops._lanczos.lanczos_funm`.
"""

from __future__ import annotations

import time

import torch

from . import _banded
from ._base import LinearOperator
from ._funm_functions import _clamp, _spectrum_checker
from ._fused import kron_matvec
from ._lanczos import STIELTJES, derivative, lanczos_funm
from ._structure import shifted_kronecker


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
