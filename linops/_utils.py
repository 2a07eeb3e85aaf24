"""Small private helpers shared by the operators."""

from __future__ import annotations

import cmath
import math
import numbers
from collections.abc import Sequence

import torch


def format_shape(shape: Sequence[int]) -> str:
    """Format a shape as a plain tuple, ``(3, 64, 64)``."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(s) for s in shape) + ")"


def as_shape(shape, where: str) -> tuple[int, ...]:
    """Validate a per-sample shape: a sequence of positive ints (or a single int)."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (int(shape),)
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        raise TypeError(f"{where}: expected a sequence of positive ints, got {shape!r}")
    out = []
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"{where}: expected a sequence of positive ints, got {tuple(shape)!r}")
        out.append(int(s))
    return tuple(out)


#: half precisions: resizes, FFTs and DCTs have no kernels for them on every device
HALF_DTYPES = (torch.float16, torch.bfloat16, torch.complex32)


def check_scalar(value, where: str, name: str = "scale"):
    """A finite real or complex Python/NumPy number, or a 0-d tensor (kept as is).

    Booleans, strings and tensors with more than one element are a :class:`TypeError`;
    NaN and inf a :class:`ValueError` (a tensor scale is not synchronised to check it).
    """
    if isinstance(value, torch.Tensor):
        if value.dim() != 0:
            raise TypeError(
                f"{where}: expected {name} as a number or a 0-d tensor, got a tensor of shape "
                f"{format_shape(value.shape)}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        raise TypeError(f"{where}: expected {name} as a real or complex number, got {value!r}")
    try:
        finite = cmath.isfinite(value)
    except OverflowError:  # an int beyond float range
        finite = False
    if not finite:
        raise ValueError(f"{where}: expected a finite {name}, got {value!r}")
    return value


def check_data(x, where: str, name: str) -> torch.Tensor:
    """A tensor to compute on: floating or complex, not half precision, with data (not meta)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or x.is_complex()):
        raise ValueError(
            f"{where}: expected {name} with a floating or complex dtype, got {x.dtype}. "
            f"Convert it first, e.g. {name}.float() or {name}.double()"
        )
    if x.dtype in HALF_DTYPES:
        raise TypeError(
            f"{where}: expected {name} as float32, float64, complex64 or complex128, got "
            f"{x.dtype} (resizes, FFTs and DCTs have no half-precision kernels on every "
            f"device). Convert it first, e.g. {name}.float()"
        )
    if x.device.type == "meta":
        raise ValueError(f"{where}: expected {name} with data, got a tensor on the meta device")
    return x


def check_no_meta(t: torch.Tensor, where: str, name: str) -> None:
    """An operator's tensor must hold data: a ``meta`` tensor fails at the first apply."""
    if t.device.type == "meta":
        raise ValueError(f"{where}: expected {name} with data, got a tensor on the meta device")


def check_dtype(dtype, where: str, *, complex_ok: bool = True) -> torch.dtype:
    """float32 or float64 (or complex64/complex128 when ``complex_ok``)."""
    ok = (torch.float32, torch.float64)
    if complex_ok:
        ok += (torch.complex64, torch.complex128)
    if not isinstance(dtype, torch.dtype) or dtype not in ok:
        names = ", ".join(str(d) for d in ok)
        raise TypeError(f"{where}: expected dtype in ({names}), got {dtype!r}")
    return dtype


def check_device(device, where: str) -> torch.device | None:
    """``None`` or a device that exists in this build and on this machine."""
    if device is None:
        return None
    if isinstance(device, str):
        try:
            device = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"{where}: expected device such as 'cpu' or 'cuda:0', got {device!r}"
            ) from None
    if not isinstance(device, torch.device):
        raise TypeError(f"{where}: expected device as a str or torch.device, got {device!r}")
    if device.type == "cpu":
        return device
    if device.type == "cuda" and torch.cuda.is_available() \
            and (device.index or 0) < torch.cuda.device_count():
        return device
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and mps is not None and mps.is_available():
        return device
    no_cuda = device.type == "cuda" and torch.version.cuda is None
    why = " (this torch build has no CUDA)" if no_cuda else ""
    raise ValueError(f"{where}: expected an available device, got {str(device)!r}{why}")


def check_generator(generator, where: str):
    """A :class:`torch.Generator` or ``None``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{where}: expected generator as a torch.Generator or None, got "
            f"{type(generator).__name__}"
        )
    return generator


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype of the same precision (complex64 -> float32)."""
    return torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype of the same precision (float32 -> complex64)."""
    if dtype.is_complex:
        return dtype
    return {torch.float64: torch.complex128, torch.float16: torch.complex32}.get(
        dtype, torch.complex64
    )


def dense_copy(t: torch.Tensor) -> torch.Tensor:
    """A copy with row-major strides (``contiguous()`` may keep odd strides on size-1 axes)."""
    return torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t)


def cast_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Move ``t`` to ``like``'s device and precision, keeping ``t`` complex if it is."""
    precision = real_dtype(like.dtype)
    dtype = complex_dtype(precision) if t.is_complex() else precision
    return t.to(device=like.device, dtype=dtype)


def cast_scalar(c, like: torch.Tensor):
    """A Python scalar stays as is; a 0-d tensor is cast like :func:`cast_like`."""
    if isinstance(c, torch.Tensor):
        return cast_like(c, like)
    return c


class TensorCache:
    """A per-(dtype, device) cache of tensors derived from an operator's data.

    Operators are immutable, so anything derived from their parameters (a
    cast copy, 1-D factor matrices, a linearised VJP) can be built once per
    dtype and device and reused.
    """

    def __init__(self) -> None:
        self._store: dict = {}

    def get(self, key, build):
        try:
            return self._store[key]
        except KeyError:
            value = build()
            self._store[key] = value
            return value

    def __getstate__(self):
        return {"_store": {}}


def adjoint_mismatch(A, dtype, device) -> tuple[float, float, bool]:
    """Randomised symmetry test of an operator: ``(mismatch, tol, finite)``.

    ``mismatch = |<A u, w> - <u, A w>|`` relative to the norms for two fixed random vectors,
    ``tol = 10 eps sqrt(2 n)`` (the rounding of two inner products of length ``n``), and
    whether ``A`` returned finite values. Shared by the matrix functions and the solvers.
    """
    g = torch.Generator(device="cpu").manual_seed(20261122)
    u = torch.randn(A.in_shape, dtype=torch.float64, generator=g).to(device=device, dtype=dtype)
    w = torch.randn(A.in_shape, dtype=torch.float64, generator=g).to(device=device, dtype=dtype)
    with torch.no_grad():
        Au, Aw = A.apply(u), A.apply(w)
    finite = bool(torch.isfinite(Au).all() and torch.isfinite(Aw).all())
    lhs, rhs = torch.vdot(Au.reshape(-1), w.reshape(-1)), torch.vdot(u.reshape(-1), Aw.reshape(-1))
    scale = max(
        float(torch.linalg.vector_norm(Au) * torch.linalg.vector_norm(w)),
        float(torch.linalg.vector_norm(u) * torch.linalg.vector_norm(Aw)),
    )
    mismatch = abs(complex(lhs - rhs)) / scale if scale > 0 else 0.0
    return mismatch, 10 * torch.finfo(dtype).eps * math.sqrt(2 * A.shape[0]), finite
