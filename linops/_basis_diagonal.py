"""Operators diagonal in a known orthonormal basis."""

from __future__ import annotations

import torch

from ._base import LinearOperator
from ._elementary import _cast_kept
from ._utils import TensorCache, check_no_meta, format_shape

__all__ = ["BasisDiagonal"]


class BasisDiagonal(LinearOperator):
    """An operator diagonal in an orthonormal basis: ``A = V^H diag(d) V``.

    ``V`` is a unitary operator (a transform such as :class:`DCT2` or
    :class:`FFT2`) mapping a signal to its coefficients; ``A`` multiplies the
    coefficients by ``d``. Blurring Diffusion's heat blur and SKILD's k-space
    damping have this form. Matrix functions are exact and cheap:
    ``f(A) = V^H diag(f(d)) V`` (:meth:`with_diag`).

    Parameters
    ----------
    basis : LinearOperator
        A unitary operator (``basis.is_unitary``) with ``in_shape == out_shape``.
    diag : Tensor
        The eigenvalues ``d``, broadcastable to ``basis.out_shape``. It is kept, not
        copied: if it requires grad, gradients reach it (matrix functions included).

    Notes
    -----
    With a real ``d`` the operator is self-adjoint and its eigenvalues are the
    entries of ``d``. With a real basis (``DCT2``) a real ``d`` keeps real
    signals real; with :class:`FFT2` outputs are complex.

    Examples
    --------
    >>> import torch, linops
    >>> H, W = 8, 8
    >>> u = torch.arange(H, dtype=torch.float64)
    >>> lam = (torch.pi * u / H)[:, None] ** 2 + (torch.pi * u / W)[None, :] ** 2
    >>> heat = linops.BasisDiagonal(linops.DCT2((H, W)), torch.exp(-0.5 * lam))
    >>> heat.is_self_adjoint
    True
    >>> x = torch.ones(H, W, dtype=torch.float64)
    >>> torch.allclose(heat.apply(x), x)  # the constant image is the k = 0 mode
    True
    """

    def __init__(self, basis: LinearOperator, diag: torch.Tensor) -> None:
        if not isinstance(basis, LinearOperator):
            raise TypeError(
                f"BasisDiagonal: expected basis to be a LinearOperator, got {type(basis).__name__}"
            )
        if not basis.is_unitary or basis.in_shape != basis.out_shape:
            raise ValueError(
                f"BasisDiagonal: expected a unitary basis with in_shape == out_shape "
                f"(e.g. DCT2, FFT2), got {basis!r} with is_unitary={basis.is_unitary}"
            )
        if not isinstance(diag, torch.Tensor):
            raise TypeError(
                f"BasisDiagonal: expected diag to be a torch.Tensor, got {type(diag).__name__}"
            )
        if not (diag.is_floating_point() or diag.is_complex()):
            raise ValueError(
                f"BasisDiagonal: expected a floating or complex diag, got {diag.dtype}"
            )
        check_no_meta(diag, "BasisDiagonal", "diag")
        try:
            ok = torch.broadcast_shapes(diag.shape, basis.out_shape) == torch.Size(basis.out_shape)
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"BasisDiagonal: expected diag broadcastable to {format_shape(basis.out_shape)}, "
                f"got shape {format_shape(diag.shape)}"
            )
        super().__init__(basis.in_shape, basis.in_shape)
        self.basis = basis
        self.diag = diag
        self.is_self_adjoint = not diag.is_complex()
        self.is_complex = basis.is_complex or diag.is_complex()
        self._cache = TensorCache()

    def __repr__(self) -> str:
        return f"BasisDiagonal(basis={self.basis!r}, diag shape={format_shape(self.diag.shape)})"

    def with_diag(self, diag: torch.Tensor) -> BasisDiagonal:
        """The operator with the same basis and new eigenvalues, e.g. ``f(self.diag)``."""
        return BasisDiagonal(self.basis, diag)

    def _d(self, x):
        return _cast_kept(self.diag, x, self._cache)

    def _supports_complex(self) -> bool:
        return True

    def _apply(self, x):
        return self.basis.apply_adjoint(self._d(x) * self.basis.apply(x))

    def _apply_adjoint(self, y):
        return self.basis.apply_adjoint(self._d(y).conj() * self.basis.apply(y))
