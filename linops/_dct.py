"""The orthonormal 2-D DCT-II, computed with FFTs."""

from __future__ import annotations

import math

import torch

from ._base import LinearOperator
from ._utils import TensorCache, as_shape, format_shape

__all__ = ["DCT2", "dct", "dct2", "idct", "idct2"]

_TWIDDLES = TensorCache()


def _twiddle(n: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``exp(-i pi k / 2n)`` and the orthonormal scale of each DCT-II coefficient."""

    def build():
        k = torch.arange(n, dtype=torch.float64)
        phase = torch.exp(-1j * math.pi * k / (2 * n))
        scale = torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64)
        scale[0] = math.sqrt(1.0 / n)
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        return phase.to(device=device, dtype=cdtype), scale.to(device=device, dtype=dtype)

    return _TWIDDLES.get((n, dtype, torch.device(device)), build)


def dct(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Orthonormal DCT-II of a real tensor along one axis (``scipy.fft.dct(norm="ortho")``).

    Makhoul's algorithm: reorder the samples (even ones, then odd ones
    reversed), take one complex FFT of the same length and rotate it by
    ``exp(-i pi k / 2n)``.

    Parameters
    ----------
    x : Tensor
        Real floating tensor.
    dim : int, default -1

    Returns
    -------
    Tensor, same shape as ``x``
    """
    x, dim, empty = _check_real(x, dim, "dct")
    if empty:
        return x.clone()
    return _dct(x, dim)


def _check_real(x, dim, where: str):
    """A real float32/float64 tensor with data and a valid axis; ``(x, dim, empty)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: expected x to be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        hint = " (transform the real and imaginary parts)" if x.is_complex() else ""
        raise TypeError(f"{where}: expected a real float32 or float64 x, got {x.dtype}{hint}")
    if x.device.type == "meta":
        raise ValueError(f"{where}: expected x with data, got a tensor on the meta device")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -x.dim() <= dim < x.dim():
        raise ValueError(
            f"{where}: expected dim in [{-x.dim()}, {x.dim() - 1}] for x of shape "
            f"{format_shape(x.shape)}, got {dim!r}"
        )
    if x.shape[dim] == 0:
        raise ValueError(f"{where}: expected a non-empty axis dim={dim}, got x of shape "
                         f"{format_shape(x.shape)}")
    return x, dim, x.numel() == 0


def _dct(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    phase, scale = _twiddle(n, x.dtype, x.device)
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    y = torch.real(torch.fft.fft(v, dim=-1) * phase) * scale
    return y.movedim(-1, dim)


def idct(y: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inverse (and transpose) of :func:`dct`: the orthonormal DCT-III along one axis.

    Parameters
    ----------
    y : Tensor
        Real floating tensor.
    dim : int, default -1

    Returns
    -------
    Tensor, same shape as ``y``
    """
    y, dim, empty = _check_real(y, dim, "idct")
    if empty:
        return y.clone()
    return _idct(y, dim)


def _idct(y: torch.Tensor, dim: int = -1) -> torch.Tensor:
    y = y.movedim(dim, -1)
    n = y.shape[-1]
    phase, scale = _twiddle(n, y.dtype, y.device)
    u = y / scale
    # W_k = u_k - i u_{n-k} (u_n = 0) is the rotated FFT of the reordered signal.
    u_rev = torch.cat([torch.zeros_like(u[..., :1]), u[..., 1:].flip(-1)], dim=-1)
    spectrum = torch.complex(u, -u_rev) * phase.conj()
    v = torch.real(torch.fft.ifft(spectrum, dim=-1))
    x = torch.empty_like(v)
    half = (n + 1) // 2
    x[..., ::2] = v[..., :half]
    x[..., 1::2] = v[..., half:].flip(-1)
    return x.movedim(-1, dim)


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two axes (``scipy.fft.dctn(norm="ortho")``)."""
    x, _, empty = _check_2d(x, "dct2")
    return x.clone() if empty else _dct2(x)


def idct2(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct2` over the last two axes."""
    y, _, empty = _check_2d(y, "idct2")
    return y.clone() if empty else _idct2(y)


def _check_2d(x, where: str):
    if isinstance(x, torch.Tensor) and x.dim() < 2:
        raise ValueError(f"{where}: expected x with at least two axes, got shape "
                         f"{format_shape(x.shape)}")
    x, _, _ = _check_real(x, -1, where)
    return _check_real(x, -2, where)


def _dct2(x: torch.Tensor) -> torch.Tensor:
    return _dct(_dct(x, dim=-1), dim=-2)


def _idct2(y: torch.Tensor) -> torch.Tensor:
    return _idct(_idct(y, dim=-2), dim=-1)


class DCT2(LinearOperator):
    """The orthonormal 2-D DCT-II over the last two axes.

    ``DCT2`` is orthogonal, so its adjoint is its inverse (the orthonormal
    DCT-III); both run in ``O(HW log HW)`` with FFTs.

    Parameters
    ----------
    shape : sequence of int
        Per-sample shape with at least two axes, e.g. ``(C, H, W)``; the
        transform acts on the last two.

    Notes
    -----
    With ``N`` samples, coefficient ``k`` is
    ``X_k = s_k sum_n x_n cos(pi k (2n + 1) / 2N)``, ``s_0 = sqrt(1/N)``,
    ``s_k = sqrt(2/N)``: the matrix is orthogonal, and it is the basis in
    which Blurring Diffusion's heat equation and SKILD's damping are diagonal.

    Examples
    --------
    >>> import torch, linops
    >>> D = linops.DCT2((4, 6))
    >>> x = torch.randn(4, 6, dtype=torch.float64)
    >>> torch.allclose(D.apply_adjoint(D.apply(x)), x)
    True
    >>> D.apply(torch.ones(4, 6))[0, 0]  # the mean times sqrt(HW)
    tensor(4.8990)
    """

    is_unitary = True

    def __init__(self, shape) -> None:
        shape = as_shape(shape, "DCT2: shape")
        if len(shape) < 2:
            raise ValueError(
                f"DCT2: expected a shape with at least two axes, got {format_shape(shape)}"
            )
        super().__init__(shape, shape)

    def _apply(self, x):
        return _dct2(x)

    def _apply_adjoint(self, y):
        return _idct2(y)
