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
from ._funm import ConvergenceError, FunmResult, expm, funm, invsqrtm, logm, sqrtm
from ._fused import kron_matvec, lanczos_step, triton_available
from ._kronecker import Kronecker
from ._lanczos_basis import clear_workspace
from ._pinv import pinv
from ._resize import Resize
from ._scipy import as_scipy
from ._solve import SolveResult, cg, lsqr, minres, solve
from ._spectral import PowerIterationResult, lambda_max, spectral_norm
from ._spectral_bounds import SpectralBounds, spectral_bounds

__all__ = [
    "Adjoint",
    "BasisDiagonal",
    "ConvergenceError",
    "Composed",
    "DCT2",
    "Dense",
    "Diagonal",
    "FFT2",
    "FunctionOperator",
    "FunmResult",
    "GaussianBlur",
    "Identity",
    "Kronecker",
    "LinearOperator",
    "PowerIterationResult",
    "Resize",
    "Scaled",
    "ScaledIdentity",
    "SolveResult",
    "SpectralBounds",
    "Sum",
    "as_scipy",
    "cg",
    "dct",
    "dct2",
    "expm",
    "funm",
    "clear_workspace",
    "gaussian_blur_matrix",
    "idct",
    "idct2",
    "invsqrtm",
    "kron_matvec",
    "lambda_max",
    "lanczos_step",
    "pinv",
    "logm",
    "lsqr",
    "minres",
    "solve",
    "spectral_bounds",
    "spectral_norm",
    "sqrtm",
    "testing",
    "triton_available",
]

__version__ = "0.1.0"
