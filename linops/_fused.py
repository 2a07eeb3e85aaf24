"""Fused kernels for the two hot loops of the matrix functions, with their torch specification.

:func:`kron_matvec` is the matvec of ``a I + b (G_h (x) G_w)`` (SSD's posterior
covariance at a resolution change) and :func:`lanczos_step` the three-term
Lanczos update for a batch of vectors. Each takes ``backend="auto" | "torch" |
"triton"``: the torch code is the specification, the Triton kernels (in
:mod:`linops._triton_kernels`, imported only when asked for) must match it to
rounding. ``"auto"`` uses Triton only for CUDA tensors with triton installed and
no autograd needed.
"""

from __future__ import annotations

import functools
import math
import numbers

import torch

from ._utils import format_shape

__all__ = ["kron_matvec", "lanczos_step", "triton_available"]

_BACKENDS = ("auto", "torch", "triton")
_DTYPES = (torch.float32, torch.float64)
# Largest float32 value: the Triton kernel receives a and b as float32 pairs.
_F32_MAX = float(torch.finfo(torch.float32).max)


@functools.cache
def triton_available() -> bool:
    """Whether the ``triton`` package can be imported.

    The result is cached for the session. Installing the extra,
    ``pip install "lineardiff[triton]"``, makes it ``True``; running the kernels
    also needs CUDA tensors, or ``TRITON_INTERPRET=1`` for CPU tensors.

    Returns
    -------
    bool

    Examples
    --------
    >>> from linops._fused import triton_available
    >>> isinstance(triton_available(), bool)
    True
    """
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _kernels():
    from . import _triton_kernels

    return _triton_kernels


# ------------------------------------------------------------------ validation


def _check_tensor(where: str, name: str, t, ndim: int | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{where}: expected {name} to be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _DTYPES:
        raise ValueError(
            f"{where}: expected {name} with dtype torch.float32 or torch.float64, got {t.dtype}. "
            f"Convert it first, e.g. {name}.float() or {name}.double()"
        )
    if ndim is not None and t.dim() != ndim:
        raise ValueError(
            f"{where}: expected {name} with {ndim} dimension{'s' if ndim != 1 else ''}, "
            f"got shape {format_shape(t.shape)}"
        )


def _check_like(where: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.dtype != ref.dtype:
        raise ValueError(
            f"{where}: expected {name} with dtype {ref.dtype} (the dtype of {ref_name}), "
            f"got {t.dtype}"
        )
    if t.device != ref.device:
        raise ValueError(
            f"{where}: expected {name} on {ref.device} (the device of {ref_name}), got {t.device}"
        )


def _check_scalar(where: str, name: str, x) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(
            f"{where}: expected {name} to be a real Python number, got {type(x).__name__}"
            + (f". Pass float({name})" if isinstance(x, torch.Tensor) else "")
        )
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{where}: expected a finite {name}, got {x}")
    return x


def _resolve_backend(where: str, backend, tensors) -> str:
    """``"torch"`` or ``"triton"`` for ``backend`` and these (validated) tensors."""
    if backend not in _BACKENDS:
        raise ValueError(f"{where}: expected backend 'auto', 'torch' or 'triton', got {backend!r}")
    if backend == "torch":
        return "torch"
    device = tensors[0].device
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if backend == "auto":
        if (
            device.type == "cuda"
            and not needs_grad
            and triton_available()
            and not _kernels().INTERPRETED
        ):
            return "triton"
        return "torch"
    if not triton_available():
        raise RuntimeError(
            f"{where}: backend='triton' needs the triton package: "
            'pip install "lineardiff[triton]"'
        )
    if needs_grad:
        raise ValueError(
            f"{where}: backend='triton' expected inputs that do not require grad (the kernels "
            "have no backward), got some that do. Use backend='torch' or 'auto' to differentiate"
        )
    if device.type != "cuda" and not _kernels().INTERPRETED:
        raise RuntimeError(
            f"{where}: backend='triton' expected CUDA tensors, got tensors on {device}. Move "
            "them to a GPU, or start Python with TRITON_INTERPRET=1 in the environment to run "
            "the kernels in Triton's (slow) CPU interpreter"
        )
    return "triton"


# ------------------------------------------------------------------ kron_matvec


def _kron_matvec_torch(v, G_h, G_w, a: float, b: float) -> torch.Tensor:  # noqa: N803
    return a * v + b * (G_h @ v @ G_w.mT)


def kron_matvec(
    v: torch.Tensor,
    G_h: torch.Tensor,  # noqa: N803 - matrix names
    G_w: torch.Tensor,  # noqa: N803
    a: float,
    b: float,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """``a v + b G_h V G_w^T`` on every trailing ``(H, W)`` slice of ``v``.

    The matvec of ``A = a I + b (G_h (x) G_w)`` with samples flattened in
    row-major order.

    Parameters
    ----------
    v : Tensor, shape (\\*batch, H, W)
        float32 or float64.
    G_h : Tensor, shape (H, H)
        Real factor along the rows; same dtype and device as ``v``.
    G_w : Tensor, shape (W, W)
        Real factor along the columns; same dtype and device as ``v``.
    a, b : float
        Finite real scalars.
    backend : {"auto", "torch", "triton"}, default "auto"
        ``"torch"``: two batched matrix products and an axpy (the specification).
        ``"triton"``: one fused kernel; needs triton and CUDA tensors (or
        ``TRITON_INTERPRET=1`` for CPU tensors) and inputs that do not
        require grad. ``"auto"``: Triton when that holds for CUDA tensors,
        else torch.

    Returns
    -------
    Tensor, shape (\\*batch, H, W)

    Raises
    ------
    TypeError
        ``v``, ``G_h`` or ``G_w`` is not a tensor, or ``a``/``b`` not a real number.
    ValueError
        Wrong shapes or dtypes, mismatched devices, an unknown backend, or
        ``backend="triton"`` with inputs requiring grad.
    RuntimeError
        ``backend="triton"`` without triton, or with CPU tensors outside the interpreter.

    Notes
    -----
    ``kron(G_h, G_w) vec(V) = vec(G_h V G_w^T)`` for row-major ``vec``: the
    column-major identity ``vec(A X B) = (B^T (x) A) vec(X)`` (Van Loan, "The
    ubiquitous Kronecker product", J. Comput. Appl. Math. 123 (2000) 85-100)
    applied to ``V^T``. SSD's posterior covariance at a resolution change,
    ``I - rho c^2 (R_h^T R_h) (x) (R_w^T R_w)``, is ``a = 1``, ``b = -rho c^2``,
    ``G = R^T R``.

    The Triton kernel runs one program per (batch item, block of rows of
    ``Y``): ``G_h V`` for those rows stays in registers between the two
    products and the axpy is applied before the single store, so no
    intermediate reaches global memory.

    Examples
    --------
    >>> import torch
    >>> from linops._fused import kron_matvec
    >>> G_h, G_w = torch.randn(4, 4, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    >>> v = torch.randn(2, 4, 3, dtype=torch.float64)
    >>> y = kron_matvec(v, G_h, G_w, 1.0, -0.5, backend="torch")
    >>> dense = torch.eye(12, dtype=torch.float64) - 0.5 * torch.kron(G_h, G_w)
    >>> torch.allclose(y.reshape(2, 12), v.reshape(2, 12) @ dense.T)
    True
    """
    where = "kron_matvec"
    _check_tensor(where, "v", v)
    if v.dim() < 2:
        raise ValueError(f"{where}: expected v with shape (..., H, W), got {format_shape(v.shape)}")
    H, W = v.shape[-2:]  # noqa: N806
    for name, G, side in (("G_h", G_h, H), ("G_w", G_w, W)):
        _check_tensor(where, name, G)
        if tuple(G.shape) != (side, side):
            raise ValueError(
                f"{where}: expected {name} with shape {format_shape((side, side))} to match v of "
                f"shape {format_shape(v.shape)}, got {format_shape(G.shape)}"
            )
        _check_like(where, name, G, "v", v)
    a = _check_scalar(where, "a", a)
    b = _check_scalar(where, "b", b)
    if _resolve_backend(where, backend, (v, G_h, G_w)) == "torch" or v.numel() == 0:
        return _kron_matvec_torch(v, G_h, G_w, a, b)
    if max(abs(a), abs(b)) > _F32_MAX:
        raise ValueError(
            f"{where}: backend='triton' expected |a| and |b| at most {_F32_MAX:.4g} (the float32 "
            f"range the kernel takes scalars in), got a={a}, b={b}. Use backend='torch'"
        )
    out = _kernels().kron_matvec(v.reshape(-1, H, W), G_h, G_w, a, b)
    return out.reshape(v.shape)


# ------------------------------------------------------------------ lanczos_step


def _lanczos_step_torch(w, v, v_prev, beta_prev):
    alpha = (v * w).sum(dim=1)
    w_new = w - alpha.unsqueeze(1) * v - beta_prev.unsqueeze(1) * v_prev
    beta = torch.linalg.vector_norm(w_new, dim=1)
    return w_new, alpha, beta


def lanczos_step(
    w: torch.Tensor,
    v: torch.Tensor,
    v_prev: torch.Tensor,
    beta_prev: torch.Tensor,
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One three-term Lanczos update for a batch of rows: ``alpha``, ``w_new``, ``beta``.

    Parameters
    ----------
    w : Tensor, shape (B, n)
        ``A v`` for the current Lanczos vectors; float32 or float64.
    v : Tensor, shape (B, n)
        Current Lanczos vectors (unit rows), same dtype and device as ``w``.
    v_prev : Tensor, shape (B, n)
        Previous Lanczos vectors (zeros at the first step).
    beta_prev : Tensor, shape (B,)
        Previous off-diagonal coefficients (zeros at the first step).
    backend : {"auto", "torch", "triton"}, default "auto"
        As in :func:`kron_matvec`.

    Returns
    -------
    w_new : Tensor, shape (B, n)
        ``w - alpha v - beta_prev v_prev`` (a new tensor; the inputs are not changed).
    alpha : Tensor, shape (B,)
        ``<v, w>`` per row: the new diagonal of the tridiagonal matrix.
    beta : Tensor, shape (B,)
        ``||w_new||_2`` per row: the new off-diagonal.

    Raises
    ------
    TypeError, ValueError, RuntimeError
        As in :func:`kron_matvec`.

    Notes
    -----
    The recurrence without reorthogonalisation (Golub and Van Loan, *Matrix
    Computations*, 4th ed., section 10.1). The torch route is several kernels
    (product, sum, two scaled subtractions, norm); the Triton kernel is one, with
    one program per row: a pass for ``alpha``, then a pass writing ``w_new``
    and accumulating its squared norm (a single pass when the row fits one
    block).

    Examples
    --------
    >>> import torch
    >>> from linops._fused import lanczos_step
    >>> v = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    >>> w = torch.tensor([[2.0, 3.0, 4.0]], dtype=torch.float64)
    >>> w_new, alpha, beta = lanczos_step(
    ...     w, v, torch.zeros_like(v), torch.zeros(1, dtype=torch.float64), backend="torch"
    ... )
    >>> alpha
    tensor([2.], dtype=torch.float64)
    >>> w_new
    tensor([[0., 3., 4.]], dtype=torch.float64)
    >>> beta
    tensor([5.], dtype=torch.float64)
    """
    where = "lanczos_step"
    _check_tensor(where, "w", w, ndim=2)
    for name, t in (("v", v), ("v_prev", v_prev)):
        _check_tensor(where, name, t)
        if t.shape != w.shape:
            raise ValueError(
                f"{where}: expected {name} with shape {format_shape(w.shape)} (the shape of w), "
                f"got {format_shape(t.shape)}"
            )
        _check_like(where, name, t, "w", w)
    _check_tensor(where, "beta_prev", beta_prev)
    if tuple(beta_prev.shape) != (w.shape[0],):
        raise ValueError(
            f"{where}: expected beta_prev with shape {format_shape((w.shape[0],))} (one per row "
            f"of w), got {format_shape(beta_prev.shape)}"
        )
    _check_like(where, "beta_prev", beta_prev, "w", w)
    if _resolve_backend(where, backend, (w, v, v_prev, beta_prev)) == "torch" or w.numel() == 0:
        return _lanczos_step_torch(w, v, v_prev, beta_prev)
    return _kernels().lanczos_step(w, v, v_prev, beta_prev)
