"""Operator algebra: adjoint, composition, sum and scalar multiple."""

from __future__ import annotations

import torch

from ._base import LinearOperator
from ._utils import cast_scalar, check_scalar, format_shape

__all__ = ["Adjoint", "Composed", "Scaled", "Sum"]


def _is_adjoint_pair(a: LinearOperator, b: LinearOperator) -> bool:
    """Structural test for ``b == a^H`` (identity of the wrapped objects)."""
    if a.is_self_adjoint and a is b:
        return True
    return (isinstance(a, Adjoint) and a.operator is b) or (
        isinstance(b, Adjoint) and b.operator is a
    )


def _is_real_scalar(c) -> bool:
    if isinstance(c, torch.Tensor):
        return not c.is_complex()
    return not isinstance(c, complex)


class Adjoint(LinearOperator):
    """The adjoint ``A^H`` of an operator; usually obtained as ``A.H``.

    Parameters
    ----------
    operator : LinearOperator
        The operator ``A``; ``Adjoint(A).H`` returns ``A`` itself.
    """

    def __init__(self, operator: LinearOperator) -> None:
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"Adjoint: expected a LinearOperator, got {type(operator).__name__}")
        super().__init__(operator.out_shape, operator.in_shape)
        self.operator = operator
        self.is_unitary = operator.is_unitary
        self.is_complex = operator.is_complex

    @property
    def name(self) -> str:
        return f"{self.operator.name}.H"

    def __repr__(self) -> str:
        return f"{self.operator!r}.H"

    def _adjoint(self) -> LinearOperator:
        return self.operator

    def _supports_complex(self) -> bool:
        return True

    def _apply(self, x):
        return self.operator.apply_adjoint(x)

    def _apply_adjoint(self, y):
        return self.operator.apply(y)


class Composed(LinearOperator):
    """The composition ``A_1 @ A_2 @ ... @ A_k`` (``A_k`` acts first).

    Nested compositions are flattened. Each operator's ``in_shape`` must equal
    the next one's ``out_shape``.

    Parameters
    ----------
    *operators : LinearOperator
        At least two operators, outermost first.

    Examples
    --------
    >>> import torch, linops
    >>> R = linops.Resize((8, 8), (4, 4))
    >>> (R.H @ R).is_self_adjoint
    True
    """

    def __init__(self, *operators: LinearOperator) -> None:
        flat: list[LinearOperator] = []
        for op in operators:
            if not isinstance(op, LinearOperator):
                raise TypeError(f"Composed: expected LinearOperators, got {type(op).__name__}")
            flat.extend(op.operators if isinstance(op, Composed) else (op,))
        if len(flat) < 2:
            raise ValueError(f"Composed: expected at least two operators, got {len(flat)}")
        for left, right in zip(flat[:-1], flat[1:], strict=False):
            if left.in_shape != right.out_shape:
                raise ValueError(
                    f"Composed: expected {right.name} to have out_shape equal to "
                    f"{left.name}.in_shape {format_shape(left.in_shape)}, "
                    f"got {format_shape(right.out_shape)}"
                )
        super().__init__(flat[-1].in_shape, flat[0].out_shape)
        self.operators = tuple(flat)
        k = len(flat)
        self.is_self_adjoint = all(
            _is_adjoint_pair(flat[i], flat[k - 1 - i]) for i in range((k + 1) // 2)
        )
        self.is_unitary = all(op.is_unitary for op in flat)
        self.is_complex = any(op.is_complex for op in flat)

    @property
    def name(self) -> str:
        return "Composed"

    def __repr__(self) -> str:
        return " @ ".join(repr(op) for op in self.operators)

    def _adjoint(self) -> LinearOperator:
        if self.is_self_adjoint:
            return self
        return Composed(*(op.H for op in reversed(self.operators)))

    def _supports_complex(self) -> bool:
        return True

    def _apply(self, x):
        for op in reversed(self.operators):
            x = op.apply(x)
        return x

    def _apply_adjoint(self, y):
        for op in self.operators:
            y = op.apply_adjoint(y)
        return y


class Sum(LinearOperator):
    """The sum ``A_1 + ... + A_k`` of operators with equal shapes.

    Parameters
    ----------
    *operators : LinearOperator
        At least two operators with the same ``in_shape`` and ``out_shape``.
    """

    def __init__(self, *operators: LinearOperator) -> None:
        flat: list[LinearOperator] = []
        for op in operators:
            if not isinstance(op, LinearOperator):
                raise TypeError(f"Sum: expected LinearOperators, got {type(op).__name__}")
            flat.extend(op.operators if isinstance(op, Sum) else (op,))
        if len(flat) < 2:
            raise ValueError(f"Sum: expected at least two operators, got {len(flat)}")
        first = flat[0]
        for op in flat[1:]:
            if (op.in_shape, op.out_shape) != (first.in_shape, first.out_shape):
                raise ValueError(
                    f"Sum: expected operators of shape {format_shape(first.in_shape)} -> "
                    f"{format_shape(first.out_shape)}, got {op.name} of shape "
                    f"{format_shape(op.in_shape)} -> {format_shape(op.out_shape)}"
                )
        super().__init__(first.in_shape, first.out_shape)
        self.operators = tuple(flat)
        self.is_self_adjoint = all(op.is_self_adjoint for op in flat)
        self.is_complex = any(op.is_complex for op in flat)

    @property
    def name(self) -> str:
        return "Sum"

    def __repr__(self) -> str:
        return "(" + " + ".join(repr(op) for op in self.operators) + ")"

    def _adjoint(self) -> LinearOperator:
        if self.is_self_adjoint:
            return self
        return Sum(*(op.H for op in self.operators))

    def _supports_complex(self) -> bool:
        return True

    def _apply(self, x):
        out = self.operators[0].apply(x)
        for op in self.operators[1:]:
            out = out + op.apply(x)
        return out

    def _apply_adjoint(self, y):
        out = self.operators[0].apply_adjoint(y)
        for op in self.operators[1:]:
            out = out + op.apply_adjoint(y)
        return out


class Scaled(LinearOperator):
    """A scalar multiple ``c A``; usually obtained as ``c * A``.

    Parameters
    ----------
    operator : LinearOperator
    scale : float, complex or 0-d Tensor
        Nested multiples are merged into one scale.
    """

    def __init__(self, operator: LinearOperator, scale) -> None:
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"Scaled: expected a LinearOperator, got {type(operator).__name__}")
        check_scalar(scale, "Scaled")
        if isinstance(operator, Scaled):
            scale = scale * operator.scale
            operator = operator.operator
        super().__init__(operator.in_shape, operator.out_shape)
        self.operator = operator
        self.scale = scale
        self.is_self_adjoint = operator.is_self_adjoint and _is_real_scalar(scale)
        self.is_complex = operator.is_complex or not _is_real_scalar(scale)

    @property
    def name(self) -> str:
        return f"Scaled[{self.operator.name}]"

    def __repr__(self) -> str:
        return f"{self.scale} * {self.operator!r}"

    def _adjoint(self) -> LinearOperator:
        if self.is_self_adjoint:
            return self
        scale = self.scale
        conj = scale.conj() if isinstance(scale, torch.Tensor) else complex(scale).conjugate()
        if _is_real_scalar(scale):
            conj = scale
        return Scaled(self.operator.H, conj)

    def _supports_complex(self) -> bool:
        return True

    def _apply(self, x):
        return cast_scalar(self.scale, x) * self.operator.apply(x)

    def _apply_adjoint(self, y):
        scale = cast_scalar(self.scale, y)
        scale = scale.conj() if isinstance(scale, torch.Tensor) else scale.conjugate()
        return scale * self.operator.apply_adjoint(y)
