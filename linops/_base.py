"""The abstract :class:`LinearOperator` and its validation."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from ._utils import as_shape, check_data, check_device, format_shape

__all__ = ["LinearOperator"]


class LinearOperator:
    """A linear map between tensors of fixed per-sample shapes.

    A ``LinearOperator`` maps tensors whose trailing shape is :attr:`in_shape`
    to tensors whose trailing shape is :attr:`out_shape`; any leading (batch)
    dimensions pass through unchanged. It is a light immutable object, not an
    ``nn.Module``: tensors it holds are cast to the input's dtype and device at
    every call, so one operator serves float32 and float64, CPU and GPU.

    Subclasses implement only the private :meth:`_apply` and
    :meth:`_apply_adjoint`, which receive a tensor of shape
    ``(N, *in_shape)`` (respectively ``(N, *out_shape)``) with exactly one
    batch dimension, already validated. The public :meth:`apply` and
    :meth:`apply_adjoint` check the argument, fold the batch dimensions and
    unfold them again.

    Parameters
    ----------
    in_shape : sequence of int
        Per-sample input shape, e.g. ``(C, H, W)``.
    out_shape : sequence of int
        Per-sample output shape.

    Notes
    -----
    The adjoint is taken with respect to the Euclidean inner product
    ``<a, b> = sum(conj(a) * b)`` on the flattened samples, so that
    ``<A u, v> = <u, A^H v>``. For real operators this is the transpose.

    The algebra builds new operators lazily: ``A @ B`` (composition),
    ``A + B``, ``A - B``, ``c * A``, ``-A`` and ``A.H`` (adjoint). ``@`` composes
    operators only: apply one to a tensor with ``A.apply(x)`` or ``A(x)`` (``A @ x`` raises a
    :class:`TypeError`, since torch would read it as a product with the columns of ``x``).

    Examples
    --------
    >>> import torch, linops
    >>> D = linops.Diagonal(torch.tensor([1.0, 2.0, 3.0]))
    >>> (2 * D + linops.Identity((3,))).apply(torch.ones(3))
    tensor([3., 5., 7.])
    >>> (D @ D.H).to_dense()
    tensor([[1., 0., 0.],
            [0., 4., 0.],
            [0., 0., 9.]], dtype=torch.float64)
    """

    #: Whether the operator equals its own adjoint (used by matrix functions).
    is_self_adjoint: bool = False
    #: Whether the operator is unitary (``A^H A = A A^H = I``), e.g. an orthonormal transform.
    is_unitary: bool = False
    #: Whether outputs are complex even for real inputs (e.g. :class:`FFT2`).
    is_complex: bool = False

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int]) -> None:
        self._in_shape = as_shape(in_shape, f"{type(self).__name__}: in_shape")
        self._out_shape = as_shape(out_shape, f"{type(self).__name__}: out_shape")

    # ------------------------------------------------------------------ shapes
    @property
    def in_shape(self) -> tuple[int, ...]:
        """Per-sample input shape (batch dimensions excluded)."""
        return self._in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Per-sample output shape (batch dimensions excluded)."""
        return self._out_shape

    @property
    def shape(self) -> tuple[int, int]:
        """Shape ``(prod(out_shape), prod(in_shape))`` of the equivalent matrix."""
        return (math.prod(self._out_shape), math.prod(self._in_shape))

    @property
    def name(self) -> str:
        """Short name used in error messages."""
        return type(self).__name__

    def __repr__(self) -> str:
        return (
            f"{self.name}(in_shape={format_shape(self.in_shape)}, "
            f"out_shape={format_shape(self.out_shape)})"
        )

    # ------------------------------------------------------------- public API
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the operator: ``y = A x``.

        Parameters
        ----------
        x : Tensor, shape (\\*batch, \\*in_shape)
            Floating (float32/float64) or complex input; any device.

        Returns
        -------
        Tensor, shape (\\*batch, \\*out_shape)

        Raises
        ------
        TypeError
            If ``x`` is not a tensor.
        ValueError
            If the trailing shape of ``x`` is not :attr:`in_shape` or its
            dtype is not floating or complex.
        """
        return self._call(x, adjoint=False)

    def apply_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply the adjoint: ``x = A^H y``.

        Parameters
        ----------
        y : Tensor, shape (\\*batch, \\*out_shape)

        Returns
        -------
        Tensor, shape (\\*batch, \\*in_shape)
        """
        return self._call(y, adjoint=True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x)

    def _call(self, x: torch.Tensor, *, adjoint: bool, impl=None) -> torch.Tensor:
        method = "apply_adjoint" if adjoint else "apply"
        arg = "y" if adjoint else "x"
        expected = self._out_shape if adjoint else self._in_shape
        result_shape = self._in_shape if adjoint else self._out_shape
        where = f"{self.name}.{method}"
        check_data(x, where, arg)
        nd = len(expected)
        if x.dim() < nd or tuple(x.shape[x.dim() - nd :]) != expected:
            raise ValueError(
                f"{where}: expected {arg} with trailing shape {format_shape(expected)}, "
                f"got {format_shape(x.shape)}"
            )
        batch = x.shape[: x.dim() - nd]
        flat = x.reshape(-1, *expected)
        empty = flat.shape[0] == 0
        if empty:  # no sample (FFTs refuse empty inputs): apply to one zero sample, keep none
            flat = torch.cat([flat, flat.new_zeros((1, *expected))])
        if impl is None:
            impl = self._apply_adjoint if adjoint else self._apply
        if x.is_complex() and not self._supports_complex():
            out = torch.complex(impl(flat.real.contiguous()), impl(flat.imag.contiguous()))
        else:
            out = impl(flat)
        if empty:
            out = out[:0]
        return out.reshape(*batch, *result_shape)

    def _supports_complex(self) -> bool:
        """Whether ``_apply`` accepts complex tensors natively.

        When ``False`` a complex input is split into real and imaginary parts,
        which is exact for an operator with real coefficients.
        """
        return False

    # ------------------------------------------------------ subclass contract
    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to ``x`` of shape ``(N, *in_shape)``; return ``(N, *out_shape)``."""
        raise NotImplementedError(f"{self.name}: _apply is not implemented")

    def _apply_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply the adjoint to ``y`` of shape ``(N, *out_shape)``."""
        raise NotImplementedError(
            f"{self.name}: _apply_adjoint is not implemented. Implement it, or wrap the "
            "forward map in linops.FunctionOperator to get the adjoint by autograd"
        )

    # ---------------------------------------------------------------- algebra
    @property
    def H(self) -> LinearOperator:  # noqa: N802 - the conventional name for the adjoint
        """The adjoint operator ``A^H`` (conjugate transpose)."""
        return self._adjoint()

    def _adjoint(self) -> LinearOperator:
        if self.is_self_adjoint:
            return self
        from ._algebra import Adjoint

        return Adjoint(self)

    def __matmul__(self, other):
        """``A @ B`` composes operators; it never applies ``A`` to a tensor.

        ``A @ x`` with a tensor ``x`` is refused: for ``in_shape=(n,)`` and ``x`` of shape
        ``(n, n)`` torch and scipy would multiply the *columns*, while the batch convention
        of this library applies ``A`` to the *rows* (the trailing dimensions). Write
        ``A.apply(x)`` or ``A(x)``, which say which one is meant.
        """
        from ._algebra import Composed

        if isinstance(other, torch.Tensor):
            raise TypeError(
                f"{self.name} @ Tensor: expected a LinearOperator on the right of @ (@ composes "
                "operators); apply an operator to a tensor with A.apply(x) or A(x), which act "
                "on the trailing dimensions in_shape of x"
            )
        if isinstance(other, LinearOperator):
            return Composed(self, other)
        return NotImplemented

    def __rmatmul__(self, other):
        if isinstance(other, torch.Tensor):
            raise TypeError(
                f"Tensor @ {self.name}: expected LinearOperators on both sides of @; apply the "
                "adjoint to a tensor with A.apply_adjoint(y) or A.H(y)"
            )
        return NotImplemented

    def __add__(self, other):
        from ._algebra import Sum

        if isinstance(other, LinearOperator):
            return Sum(self, other)
        self._refuse_shift(other, "+")
        return NotImplemented

    def __radd__(self, other):
        self._refuse_shift(other, "+")
        return NotImplemented

    def __sub__(self, other):
        if isinstance(other, LinearOperator):
            return self + (-1.0) * other
        self._refuse_shift(other, "-")
        return NotImplemented

    def _refuse_shift(self, other, op: str) -> None:
        """``A + c`` is ambiguous (every entry, or the diagonal?): name the operator to add."""
        if _is_scalar(other):
            raise TypeError(
                f"{self.name} {op} {type(other).__name__}: expected a LinearOperator on both "
                f"sides of {op}; for a shift write A {op} c * linops.Identity(A.in_shape)"
            )

    def __neg__(self):
        return (-1.0) * self

    def __mul__(self, other):
        from ._algebra import Scaled

        if _is_scalar(other):
            return Scaled(self, other)
        if isinstance(other, torch.Tensor):
            raise TypeError(
                f"{self.name} * Tensor: expected a scalar (a number or a 0-d tensor), got a "
                f"tensor of shape {format_shape(other.shape)}; for entrywise weights compose "
                "with linops.Diagonal"
            )
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other):
        if _is_scalar(other):
            if not isinstance(other, torch.Tensor) and other == 0:
                raise ValueError(f"{self.name} / 0: expected a nonzero divisor, got {other!r}")
            return (1.0 / other) * self
        return NotImplemented

    # ------------------------------------------------------------------ dense
    def to_dense(
        self,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        chunk_size: int = 4096,
    ) -> torch.Tensor:
        """Materialise the operator as a dense matrix.

        The matrix acts on samples flattened in row-major order, so that
        ``A.apply(x).reshape(-1) == A.to_dense() @ x.reshape(-1)``. Meant for
        tests and small problems: it costs ``prod(in_shape)`` applications.

        Parameters
        ----------
        dtype : torch.dtype, default float64
            Floating dtype of the probe vectors; a complex operator returns the
            matching complex dtype.
        device : torch.device or str, optional
        chunk_size : int, default 4096
            Number of basis vectors applied per call (bounds the memory).

        Returns
        -------
        Tensor, shape (prod(out_shape), prod(in_shape))
        """
        where = f"{self.name}.to_dense"
        if not isinstance(dtype, torch.dtype) or not (dtype.is_floating_point or dtype.is_complex):
            raise ValueError(f"{where}: expected a floating or complex dtype, got {dtype}")
        device = check_device(device, where)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) \
                or chunk_size < 1:
            raise ValueError(f"{where}: expected chunk_size >= 1 (an int), got {chunk_size!r}")
        m, n = self.shape
        cols = []
        for start in range(0, n, chunk_size):
            stop = min(n, start + chunk_size)
            basis = torch.zeros(stop - start, n, dtype=dtype, device=device)
            basis[torch.arange(stop - start), torch.arange(start, stop)] = 1
            cols.append(self.apply(basis.reshape(stop - start, *self._in_shape)).reshape(-1, m))
        return torch.cat(cols, dim=0).transpose(0, 1).contiguous()


def _is_scalar(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Number):
        return True
    return isinstance(value, torch.Tensor) and value.dim() == 0
