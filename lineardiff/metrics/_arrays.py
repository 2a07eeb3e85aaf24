"""Feature sets and Gaussian statistics in: NumPy float64 arrays, checked (FID and KID)."""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_finite_array

__all__ = ["feature_matrix", "real_array", "same_dim"]


def real_array(where: str, name: str, x) -> np.ndarray:
    """``x`` (array-like or a tensor) as a finite float64 array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        x = np.asarray(x)
    except Exception as err:  # pragma: no cover - exotic inputs
        raise TypeError(f"{where}: expected {name} as an array, got {type(x).__name__}") from err
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{where}: expected {name} as a real numeric array, got dtype {x.dtype}")
    return check_finite_array(where, name, x.astype(np.float64, copy=False))


def feature_matrix(where: str, name: str, x, *, min_n: int = 2) -> np.ndarray:
    """``x`` as a finite float64 ``(n, d)`` array with ``n >= min_n``."""
    f = real_array(where, name, x)
    if f.ndim != 2 or f.shape[1] < 1:
        raise ValueError(f"{where}: expected {name} of shape (n, d), got {f.shape}")
    if f.shape[0] < min_n:
        raise ValueError(f"{where}: expected at least {min_n} rows in {name}, got {f.shape[0]}")
    return f


def same_dim(where: str, a: np.ndarray, b: np.ndarray) -> None:
    """Refuse two feature sets of different dimensions."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{where}: expected features of the same dimension, got {a.shape[1]} and {b.shape[1]}"
        )
