"""The dense route of :func:`linops.funm` (``method="dense"``).

``A`` is materialised as a matrix and ``f(A) v`` computed from its ``eigh``: ``O(n^3)``,
for small problems and tests; its backward is :class:`linops._funm_grad._DenseFunction`.
"""

from __future__ import annotations

import torch

from ._base import LinearOperator
from ._funm_functions import _clamp, _spectrum_checker
from ._funm_grad import _DenseFunction
from ._lanczos import derivative


def _dense(A: LinearOperator, v, f, name, where):
    D = A.to_dense(dtype=v.dtype, device=v.device)  # noqa: N806
    if not bool(torch.isfinite(D.detach()).all()):
        raise ValueError(f"{where}: expected an operator with finite entries, got NaN or inf")
    D = (D + D.mH) / 2  # noqa: N806
    flat = v.reshape(-1, D.shape[0])
    fc = lambda x: f(_clamp(x, name))  # noqa: E731
    if torch.is_grad_enabled() and (D.requires_grad or v.requires_grad) and not D.is_complex():
        out, lam = _DenseFunction.apply(D, flat, fc, derivative(fc, where))
    else:
        lam, U = torch.linalg.eigh(D)  # noqa: N806
        out = (flat @ U) * fc(lam) @ U.mH
    _spectrum_checker(name, where, v.dtype, float(lam.detach().abs().max()))(lam)
    return out.reshape(v.shape)
