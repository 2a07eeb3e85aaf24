"""The orthonormal 2-D discrete Fourier transform."""

from __future__ import annotations

import torch

from ._base import LinearOperator
from ._utils import as_shape, format_shape

__all__ = ["FFT2"]


class FFT2(LinearOperator):
    """The orthonormal 2-D DFT over the last two axes (``torch.fft.fft2(norm="ortho")``).

    The operator maps ``C^(H W)`` to ``C^(H W)``: outputs are complex, real
    inputs are taken as complex numbers with zero imaginary part. The adjoint
    is defined for the complex inner product ``<a, b> = sum(conj(a) * b)``;
    the transform is unitary, so the adjoint is the inverse,
    ``torch.fft.ifft2(norm="ortho")``, and also returns complex tensors.
    ``to_dense`` gives the complex DFT matrix and
    :func:`linops.testing.dottest` draws complex vectors for it.

    Parameters
    ----------
    shape : sequence of int
        Per-sample shape with at least two axes.

    Examples
    --------
    >>> import torch, linops
    >>> F = linops.FFT2((4, 4))
    >>> X = F.apply(torch.ones(4, 4))
    >>> X.dtype, X[0, 0]
    (torch.complex64, tensor(4.+0.j))
    """

    is_unitary = True
    is_complex = True

    def __init__(self, shape) -> None:
        shape = as_shape(shape, "FFT2: shape")
        if len(shape) < 2:
            raise ValueError(
                f"FFT2: expected a shape with at least two axes, got {format_shape(shape)}"
            )
        super().__init__(shape, shape)

    def _supports_complex(self) -> bool:
        return True

    def _apply(self, x):
        return torch.fft.fft2(x, norm="ortho")

    def _apply_adjoint(self, y):
        return torch.fft.ifft2(y, norm="ortho")
