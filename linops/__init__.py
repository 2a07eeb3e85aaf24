"""Implicit linear operators on PyTorch tensors.

Operators map tensors of a per-sample shape to another, with leading batch
dimensions passing through; each knows its adjoint exactly (to rounding).
``linops`` imports nothing else of this repository.
"""

from . import testing
from ._algebra import Adjoint, Composed, Scaled, Sum
from ._base import LinearOperator
from ._basis_diagonal import BasisDiagonal
from ._blur import GaussianBlur, gaussian_blur_matrix
from ._dct import DCT2, dct, dct2, idct, idct2
from ._elementary import Dense, Diagonal, Identity, ScaledIdentity
from ._fft import FFT2
from ._function import FunctionOperator
from ._kronecker import Kronecker
from ._resize import Resize
from ._scipy import as_scipy
from ._spectral import PowerIterationResult, lambda_max, spectral_norm

__all__ = [
    "Adjoint",
    "BasisDiagonal",
    "Composed",
    "DCT2",
    "Dense",
    "Diagonal",
    "FFT2",
    "FunctionOperator",
    "GaussianBlur",
    "Identity",
    "Kronecker",
    "LinearOperator",
    "PowerIterationResult",
    "Resize",
    "Scaled",
    "ScaledIdentity",
    "Sum",
    "as_scipy",
    "dct",
    "dct2",
    "gaussian_blur_matrix",
    "idct",
    "idct2",
    "lambda_max",
    "spectral_norm",
    "testing",
]

__version__ = "0.1.0"
