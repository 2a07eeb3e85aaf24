"""Kronecker products of 1-D operators acting on the last two axes."""

from __future__ import annotations

import torch

from . import _banded
from ._base import LinearOperator
from ._utils import (
    TensorCache,
    as_shape,
    check_no_meta,
    complex_dtype,
    dense_copy,
    format_shape,
    real_dtype,
)

__all__ = ["Kronecker"]


def _factor_size(factor, where: str) -> tuple[int, int]:
    """(rows, cols) of a 1-D factor given as a matrix or a 1-D operator."""
    if isinstance(factor, torch.Tensor):
        if factor.dim() != 2:
            raise ValueError(
                f"{where}: expected a 2-D matrix, got shape {format_shape(factor.shape)}"
            )
        if not (factor.is_floating_point() or factor.is_complex()):
            raise ValueError(f"{where}: expected a floating or complex matrix, got {factor.dtype}")
        check_no_meta(factor, where, "a matrix")
        return int(factor.shape[0]), int(factor.shape[1])
    if isinstance(factor, LinearOperator):
        if len(factor.in_shape) != 1 or len(factor.out_shape) != 1:
            raise ValueError(
                f"{where}: expected a 1-D operator (in_shape and out_shape of length 1), got "
                f"{format_shape(factor.in_shape)} -> {format_shape(factor.out_shape)}"
            )
        return factor.out_shape[0], factor.in_shape[0]
    raise TypeError(f"{where}: expected a Tensor or a LinearOperator, got {type(factor).__name__}")


def _is_hermitian(factor) -> bool:
    if isinstance(factor, LinearOperator):
        return factor.is_self_adjoint
    return factor.shape[0] == factor.shape[1] and torch.equal(factor, factor.mH)


class Kronecker(LinearOperator):
    """A separable operator ``A_h (x) A_w`` on the last two axes: ``Y = A_h X A_w^T``.

    With samples flattened in row-major order the matrix is
    ``kron(A_h, A_w)`` (times an identity on ``lead_shape``).

    Parameters
    ----------
    A_h : Tensor, shape (H_out, H), or 1-D LinearOperator
        Factor acting along the rows (second-to-last axis).
    A_w : Tensor, shape (W_out, W), or 1-D LinearOperator
        Factor acting along the columns (last axis).
    lead_shape : sequence of int, default ()
        Per-sample axes in front of ``(H, W)`` that the operator acts on
        independently, e.g. ``(C,)`` for images of shape ``(C, H, W)``.
        Leading batch dimensions pass through in any case; ``lead_shape``
        only changes :attr:`in_shape` (and so :meth:`to_dense`).

    Notes
    -----
    Operator factors are materialised once per dtype and device with
    :meth:`~LinearOperator.to_dense`; 1-D factors are small (their size is
    one image side). Multiplication is two batched matrix products, ordered
    to do the cheaper one first.

    Examples
    --------
    >>> import torch, linops
    >>> A_h, A_w = torch.randn(3, 4, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    >>> K = linops.Kronecker(A_h, A_w)
    >>> K.in_shape, K.out_shape
    ((4, 5), (3, 2))
    >>> torch.allclose(K.to_dense(), torch.kron(A_h, A_w))
    True
    """

    def __init__(self, A_h, A_w, *, lead_shape=()) -> None:  # noqa: N803 - matrix names
        rows_h, cols_h = _factor_size(A_h, "Kronecker: A_h")
        rows_w, cols_w = _factor_size(A_w, "Kronecker: A_w")
        self._inputs = (A_h, A_w)
        self._init_kronecker((cols_h, cols_w), (rows_h, rows_w), lead_shape)
        self.is_self_adjoint = _is_hermitian(A_h) and _is_hermitian(A_w)
        self.is_complex = any(
            f.is_complex if isinstance(f, LinearOperator) else f.is_complex() for f in self._inputs
        )

    def _init_kronecker(self, in_hw, out_hw, lead_shape) -> None:
        """Shared set-up for subclasses that build their factors lazily."""
        lead = () if len(lead_shape) == 0 else as_shape(lead_shape, f"{self.name}: lead_shape")
        LinearOperator.__init__(self, (*lead, *in_hw), (*lead, *out_hw))
        self.lead_shape = lead
        self._factor_cache = TensorCache()

    def _build_factors(self, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The two factor matrices in ``dtype`` (a real floating dtype) on ``device``."""
        out = []
        for f in self._inputs:
            if isinstance(f, LinearOperator):
                m = f.to_dense(dtype=dtype, device=device)
            else:
                m = f.to(device=device, dtype=complex_dtype(dtype) if f.is_complex() else dtype)
                # a copy with row-major strides; one that requires grad keeps its history
                m = m.contiguous() if m.requires_grad else dense_copy(m)
            out.append(m)
        return out[0], out[1]

    def factor_matrices(self, *, dtype: torch.dtype = torch.float64, device=None):
        """The 1-D factor matrices ``(A_h, A_w)`` as dense tensors.

        Parameters
        ----------
        dtype : torch.dtype, default float64
            Precision; complex factors come back in the matching complex dtype.
        device : torch.device or str, optional

        Returns
        -------
        A_h : Tensor, shape (H_out, H)
        A_w : Tensor, shape (W_out, W)
        """
        dtype = real_dtype(dtype)
        device = torch.device("cpu") if device is None else torch.device(device)
        if self._grad_inputs():
            # factors that carry the caller's graph are rebuilt at every call: a cached one
            # would tie later calls to the first graph and miss in-place parameter updates
            factors = self._build_factors(dtype, device)
            if factors[0].requires_grad or factors[1].requires_grad:
                return factors
        return self._factor_cache.get((dtype, device), lambda: self._build_factors(dtype, device))

    def _grad_inputs(self) -> bool:
        """Whether a factor may carry gradients: a tensor that requires grad, or an operator."""
        if not torch.is_grad_enabled():
            return False
        return any(
            isinstance(f, LinearOperator) or f.requires_grad for f in getattr(self, "_inputs", ())
        )

    def _matrices_for(self, x: torch.Tensor):
        mh, mw = self.factor_matrices(dtype=real_dtype(x.dtype), device=x.device)
        dtype = torch.promote_types(torch.promote_types(mh.dtype, mw.dtype), x.dtype)
        return x.to(dtype), mh.to(dtype), mw.to(dtype)

    @staticmethod
    def _two_sided(x, left, right):
        """``left @ x @ right`` on the last two axes, cheaper product first."""
        h, w = x.shape[-2:]
        h2, w2 = left.shape[0], right.shape[1]
        if h2 * w * (h + w2) <= h * w2 * (w + h2):
            return torch.matmul(torch.matmul(left, x), right)
        return torch.matmul(left, torch.matmul(x, right))

    def _supports_complex(self) -> bool:
        return True

    def _banded(self, x, adjoint: bool):
        """The compiled banded route for large real images, or None (see :mod:`_banded`)."""
        out_hw = self.in_shape[-2:] if adjoint else self.out_shape[-2:]
        if self.is_complex or x.requires_grad or out_hw[0] * out_hw[1] < _banded.MIN_PIXELS:
            return None
        if self._grad_inputs() and any(m.requires_grad for m in self.factor_matrices()):
            return None  # the compiled kernel has no backward

        def build():
            mh, mw = self.factor_matrices(dtype=torch.float64)
            left, right = (mh.T, mw.T) if adjoint else (mh, mw)
            bands = (_banded.band(left), _banded.band(right))
            return None if None in bands else bands

        bands = self._factor_cache.get(("band", adjoint), build)
        return None if bands is None else _banded.two_sided(x, bands[0], bands[1], out_hw)

    def _apply(self, x):
        fast = self._banded(x, adjoint=False)
        if fast is not None:
            return fast
        x, mh, mw = self._matrices_for(x)
        return self._two_sided(x, mh, mw.transpose(0, 1))

    def _apply_adjoint(self, y):
        fast = self._banded(y, adjoint=True)
        if fast is not None:
            return fast
        y, mh, mw = self._matrices_for(y)
        return self._two_sided(y, mh.mH, mw.conj())
