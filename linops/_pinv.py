"""Pseudo-inverses of Kronecker-structured operators."""

from __future__ import annotations

import math

import torch

from ._base import LinearOperator
from ._kronecker import Kronecker
from ._structure import _kron_factors

__all__ = ["pinv"]


def pinv(A: LinearOperator, *, rcond: float = 1e-12) -> Kronecker:
    """The Moore-Penrose pseudo-inverse of a Kronecker-structured operator.

    ``(G_h ⊗ G_w)^+ = G_h^+ ⊗ G_w^+``: two small ``torch.linalg.pinv`` calls (in float64)
    for any operator whose structure is known - ``Resize``, ``GaussianBlur``,
    ``Kronecker``, their adjoints, real multiples and compositions such as a chain of
    resizes. This is the data-consistency projection of super-resolution:
    ``x + R^+ (y - R x)`` makes ``R x = y`` exactly when ``R`` has full row rank.

    Parameters
    ----------
    A : LinearOperator
        Kronecker-structured (see above).
    rcond : float, default 1e-12
        Relative cut-off for small singular values of each factor.

    Returns
    -------
    Kronecker
        With ``in_shape == A.out_shape`` and ``out_shape == A.in_shape``.

    Raises
    ------
    ValueError
        If the operator has no Kronecker structure (use ``linops.as_scipy`` and
        ``scipy.sparse.linalg.lsqr`` for those).

    Examples
    --------
    >>> import torch, linops
    >>> R = linops.Resize((1, 8, 8), (4, 4))
    >>> y = torch.randn(1, 4, 4, dtype=torch.float64)
    >>> torch.allclose(R.apply(linops.pinv(R).apply(y)), y)
    True
    """
    if not isinstance(A, LinearOperator):
        raise TypeError(f"pinv: expected a LinearOperator, got {type(A).__name__}")
    ok = isinstance(rcond, (int, float)) and not isinstance(rcond, bool)
    if not (ok and math.isfinite(rcond) and 0 <= rcond < 1):
        raise ValueError(f"pinv: expected rcond in [0, 1) (a real number), got {rcond!r}")
    factors = _kron_factors(A, torch.float64, "cpu") if len(A.in_shape) >= 2 else None
    if factors is None:
        raise ValueError(
            f"pinv: expected a Kronecker-structured operator (Resize, GaussianBlur, Kronecker, "
            f"their adjoints and compositions), got {A!r}. For others use linops.as_scipy with "
            "scipy.sparse.linalg.lsqr"
        )
    lead = A.in_shape[:-2]
    return Kronecker(
        torch.linalg.pinv(factors.G_h, rtol=rcond),
        torch.linalg.pinv(factors.G_w, rtol=rcond),
        lead_shape=lead,
    )
