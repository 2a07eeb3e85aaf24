"""Interoperability with :mod:`scipy.sparse.linalg`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ._base import LinearOperator
from ._utils import check_device

if TYPE_CHECKING:
    import scipy.sparse.linalg as spla

__all__ = ["as_scipy"]


def as_scipy(A: LinearOperator, *, dtype=np.float64, device=None) -> spla.LinearOperator:
    """Wrap an operator as a :class:`scipy.sparse.linalg.LinearOperator`.

    SciPy's iterative solvers and eigensolvers (``cg``, ``lsqr``, ``eigsh``,
    ``svds``, ...) then run on it. Vectors are flattened samples; they are
    moved to torch (on ``device``) for each product and back.

    Parameters
    ----------
    A : LinearOperator
    dtype : numpy dtype, default float64
        Of the wrapped operator; complex operators are promoted to complex.
    device : torch.device or str, optional
        Where the products run.

    Returns
    -------
    scipy.sparse.linalg.LinearOperator
        Of shape ``A.shape``, with ``matvec``, ``rmatvec`` and ``matmat``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse.linalg as spla, linops, torch
    >>> A = linops.Diagonal(torch.tensor([1.0, 2.0, 4.0]))
    >>> x, info = spla.cg(linops.as_scipy(A), np.ones(3))
    >>> np.round(x, 6), info
    (array([1.  , 0.5 , 0.25]), 0)
    """
    if not isinstance(A, LinearOperator):
        raise TypeError(f"as_scipy: expected a LinearOperator, got {type(A).__name__}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"as_scipy: expected dtype as a NumPy dtype, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64, np.complex64, np.complex128):
        raise TypeError(
            f"as_scipy: expected dtype float32, float64, complex64 or complex128, got {dtype}"
        )
    device = check_device(device, "as_scipy")
    if A.is_complex:
        dtype = np.result_type(dtype, np.complex64)
    m, n = A.shape

    def product(fn, V, shape):
        V = np.asarray(V).astype(dtype, copy=False)
        k = V.shape[1]
        X = torch.as_tensor(np.ascontiguousarray(V.T), device=device).reshape(k, *shape)
        return fn(X).reshape(k, -1).T.cpu().numpy()

    def matmat(V):
        return product(A.apply, V, A.in_shape)

    def rmatmat(V):
        return product(A.apply_adjoint, V, A.out_shape)

    def matvec(v):
        return matmat(np.reshape(v, (-1, 1)))[:, 0]

    def rmatvec(v):
        return rmatmat(np.reshape(v, (-1, 1)))[:, 0]

    # imported here, not with linops: scipy.sparse.linalg alone takes 0.3 s to import
    import scipy.sparse.linalg as spla

    return spla.LinearOperator(
        (m, n), matvec=matvec, rmatvec=rmatvec, matmat=matmat, rmatmat=rmatmat, dtype=dtype
    )
