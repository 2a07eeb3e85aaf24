"""Elementary operators: identity, scaled identity, diagonal and dense matrices."""

from __future__ import annotations

import math
import numbers

import torch

from ._base import LinearOperator
from ._utils import (
    TensorCache,
    as_shape,
    cast_like,
    cast_scalar,
    check_no_meta,
    check_scalar,
    format_shape,
)

__all__ = ["Dense", "Diagonal", "Identity", "ScaledIdentity"]


class Identity(LinearOperator):
    """The identity on tensors of a given shape.

    Parameters
    ----------
    shape : sequence of int
        Per-sample shape.

    Examples
    --------
    >>> import torch, linops
    >>> linops.Identity((2, 3)).apply(torch.ones(4, 2, 3)).shape
    torch.Size([4, 2, 3])
    """

    is_self_adjoint = True
    is_unitary = True

    def __init__(self, shape) -> None:
        super().__init__(shape, shape)

    def _supports_complex(self) -> bool:
        return True

    def _apply(self, x):
        return x

    _apply_adjoint = _apply


class ScaledIdentity(LinearOperator):
    """``c I``: multiplication by a scalar.

    Parameters
    ----------
    shape : sequence of int
        Per-sample shape.
    scale : float, complex or 0-d Tensor
        The scalar ``c``. A tensor that requires grad is kept as a tensor (so that
        gradients reach it); any other tensor is turned into a Python number.

    Examples
    --------
    >>> import torch, linops
    >>> linops.ScaledIdentity((3,), 0.5).apply(torch.ones(3))
    tensor([0.5000, 0.5000, 0.5000])
    """

    def __init__(self, shape, scale) -> None:
        super().__init__(shape, shape)
        if isinstance(scale, torch.Tensor) and scale.dim() == 0 and not scale.requires_grad:
            scale = scale.item()
        keep = isinstance(scale, torch.Tensor) and scale.dim() == 0 and scale.requires_grad
        if not keep and (isinstance(scale, bool) or not isinstance(scale, numbers.Number)):
            raise TypeError(
                f"ScaledIdentity: expected a real or complex scalar scale, got {scale!r}"
            )
        if not keep:
            check_scalar(scale, "ScaledIdentity")
        self.scale = scale
        complex_scale = scale.is_complex() if keep else isinstance(scale, complex)
        self.is_self_adjoint = not complex_scale
        self.is_complex = complex_scale
        size = float(scale.detach().abs()) if keep else abs(scale)
        self.is_unitary = math.isclose(size, 1.0, rel_tol=0, abs_tol=1e-15)

    def __repr__(self) -> str:
        return f"ScaledIdentity(shape={format_shape(self.in_shape)}, scale={self.scale})"

    def _adjoint(self) -> LinearOperator:
        if self.is_self_adjoint:
            return self
        return ScaledIdentity(self.in_shape, _conj(self.scale))

    def _supports_complex(self) -> bool:
        return True

    def _apply(self, x):
        return cast_scalar(self.scale, x) * x

    def _apply_adjoint(self, y):
        return _conj(cast_scalar(self.scale, y)) * y


def _conj(c):
    return c.conj() if isinstance(c, torch.Tensor) else c.conjugate()


def _cast_kept(t: torch.Tensor, like: torch.Tensor, cache: TensorCache) -> torch.Tensor:
    """``t`` cast like ``like``; cached per (dtype, device) unless ``t`` requires grad.

    A cast of a tensor that requires grad is a node of the caller's graph: a cached one
    would tie every later call to the graph of the first (a second backward through it
    fails) and would miss in-place updates of ``t`` by an optimiser.
    """
    if t.requires_grad:
        return cast_like(t, like)
    return cache.get((like.dtype, like.device), lambda: cast_like(t, like))


class Diagonal(LinearOperator):
    """Elementwise multiplication by a fixed tensor, ``y = d * x``.

    Parameters
    ----------
    diag : Tensor
        The multiplier ``d``, real or complex. It must broadcast to ``shape``. It is
        kept, not copied: if it requires grad, gradients of everything computed with
        the operator reach it.
    shape : sequence of int, optional
        Per-sample shape; defaults to ``diag.shape``. Use it with a
        broadcastable ``diag``, e.g. a per-channel gain of shape ``(C, 1, 1)``
        on images of shape ``(C, H, W)``.

    Examples
    --------
    >>> import torch, linops
    >>> gain = linops.Diagonal(torch.tensor([1.0, 2.0]).reshape(2, 1, 1), shape=(2, 3, 3))
    >>> gain.apply(torch.ones(2, 3, 3))[:, 0, 0]
    tensor([1., 2.])
    """

    def __init__(self, diag: torch.Tensor, shape=None) -> None:
        if not isinstance(diag, torch.Tensor):
            raise TypeError(
                f"Diagonal: expected diag to be a torch.Tensor, got {type(diag).__name__}"
            )
        if not (diag.is_floating_point() or diag.is_complex()):
            raise ValueError(
                f"Diagonal: expected diag with a floating or complex dtype, got {diag.dtype}"
            )
        check_no_meta(diag, "Diagonal", "diag")
        shape = tuple(diag.shape) if shape is None else as_shape(shape, "Diagonal: shape")
        if len(shape) == 0:
            raise ValueError(
                "Diagonal: expected a diag with at least one dimension, got a 0-d tensor"
            )
        try:
            torch.broadcast_shapes(diag.shape, shape)
            ok = torch.broadcast_shapes(diag.shape, shape) == torch.Size(shape)
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"Diagonal: expected diag broadcastable to shape {format_shape(shape)}, "
                f"got diag of shape {format_shape(diag.shape)}"
            )
        super().__init__(shape, shape)
        self.diag = diag
        self.is_complex = diag.is_complex()
        self.is_self_adjoint = not self.is_complex
        self._cache = TensorCache()

    def _d(self, x):
        return _cast_kept(self.diag, x, self._cache)

    def _supports_complex(self) -> bool:
        return True

    def _apply(self, x):
        return self._d(x) * x

    def _apply_adjoint(self, y):
        return self._d(y).conj() * y


class Dense(LinearOperator):
    """A matrix acting on flattened samples.

    Parameters
    ----------
    matrix : Tensor, shape (m, n)
        Real or complex matrix. It is kept, not copied: if it requires grad,
        gradients of everything computed with the operator reach it.
    in_shape : sequence of int, optional
        Per-sample input shape with ``prod(in_shape) == n``; default ``(n,)``.
    out_shape : sequence of int, optional
        Per-sample output shape with ``prod(out_shape) == m``; default ``(m,)``.

    Examples
    --------
    >>> import torch, linops
    >>> A = linops.Dense(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    >>> A.apply_adjoint(torch.tensor([1.0, 0.0]))
    tensor([1., 2.])
    """

    def __init__(self, matrix: torch.Tensor, in_shape=None, out_shape=None) -> None:
        if not isinstance(matrix, torch.Tensor):
            raise TypeError(
                f"Dense: expected matrix to be a torch.Tensor, got {type(matrix).__name__}"
            )
        if matrix.dim() != 2:
            raise ValueError(
                f"Dense: expected a 2-D matrix, got shape {format_shape(matrix.shape)}"
            )
        if not (matrix.is_floating_point() or matrix.is_complex()):
            raise ValueError(f"Dense: expected a floating or complex matrix, got {matrix.dtype}")
        check_no_meta(matrix, "Dense", "matrix")
        m, n = matrix.shape
        in_shape = (n,) if in_shape is None else as_shape(in_shape, "Dense: in_shape")
        out_shape = (m,) if out_shape is None else as_shape(out_shape, "Dense: out_shape")
        if math.prod(in_shape) != n:
            raise ValueError(
                f"Dense: expected in_shape with {n} elements (matrix has {n} columns), "
                f"got {format_shape(in_shape)}"
            )
        if math.prod(out_shape) != m:
            raise ValueError(
                f"Dense: expected out_shape with {m} elements (matrix has {m} rows), "
                f"got {format_shape(out_shape)}"
            )
        super().__init__(in_shape, out_shape)
        self.matrix = matrix
        self.is_complex = matrix.is_complex()
        self._cache = TensorCache()

    def _m(self, x):
        return _cast_kept(self.matrix, x, self._cache)

    def _supports_complex(self) -> bool:
        return True

    def _pair(self, x):
        m = self._m(x)
        dtype = torch.promote_types(m.dtype, x.dtype)
        return x.reshape(x.shape[0], -1).to(dtype), m.to(dtype)

    def _apply(self, x):
        x, m = self._pair(x)
        return x @ m.transpose(0, 1)

    def _apply_adjoint(self, y):
        y, m = self._pair(y)
        return y @ m.conj()
