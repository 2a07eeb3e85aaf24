"""The exact structured routes of :func:`linops.funm`.

``f(A) v`` by eigendecompositions that the operator's structure makes small: a multiple
of the identity, a ``BasisDiagonal`` (``f`` of its diagonal) and ``a I + b (G_h ⊗ G_w)``
with symmetric factors (two small cached ``eigh`` and four small products per image),
exact to rounding at any condition number.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch

from ._base import LinearOperator
from ._basis_diagonal import BasisDiagonal
from ._funm_functions import _clamp, _num, _spectrum_checker
from ._structure import ShiftedKronecker, shifted_kronecker

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
