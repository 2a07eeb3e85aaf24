"""Ising configurations in, and the torus geometry, shared by the Ising metrics.

Both :mod:`lineardiff.metrics.ising` (scalars, correlation functions, the comparison) and
:mod:`lineardiff.metrics._curves` (curves with influence functions) read configurations
through :func:`as_spins`; this module imports neither of them.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_spin_values

__all__ = ["as_numeric", "as_spins", "min_image_radius"]


def as_numeric(where: str, x) -> np.ndarray:
    """``x`` (array-like or a tensor on any device) as a real or boolean NumPy array."""
    if hasattr(x, "detach"):  # torch tensors, on any device
        x = x.detach().cpu().numpy()
    try:
        x = np.asarray(x)
    except Exception as err:  # pragma: no cover - exotic inputs
        raise TypeError(f"{where}: expected an array, got {type(x).__name__}") from err
    if x.dtype == object or not (
        np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)
    ):
        raise TypeError(f"{where}: expected a real numeric array, got dtype {x.dtype}")
    if np.iscomplexobj(x):
        raise TypeError(f"{where}: expected a real numeric array, got dtype {x.dtype}")
    return x


def as_spins(where: str, configs, *, min_n: int = 1) -> np.ndarray:
    """Validate ``(n, L, L)`` and return +-1 spins as float64 (sign, ties to +1).

    The values are checked by :func:`check_spin_values` (finite; spins +-1 or real values
    around 0, not 0/1 data).
    """
    x = as_numeric(where, configs)
    if x.ndim != 3 or x.shape[-1] != x.shape[-2] or x.shape[-1] < 2:
        raise ValueError(f"{where}: expected configs of shape (n, L, L) with L >= 2, got {x.shape}")
    if x.shape[0] < min_n:
        raise ValueError(f"{where}: expected at least {min_n} configurations, got {x.shape[0]}")
    check_spin_values(where, "configs", x)
    return np.where(x >= 0, 1.0, -1.0)


def min_image_radius(L: int) -> np.ndarray:
    """``|d|`` of every displacement ``d`` on the ``L x L`` torus (minimum image), shape (L, L).

    The same array serves wave-vector indices ``(j0, j1)`` of the FFT grid.
    """
    d = np.arange(L)
    d = np.minimum(d, L - d)
    return np.hypot(d[:, None], d[None, :])
