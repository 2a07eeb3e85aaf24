"""Kernel (Inception) distance between two sets of features (Binkowski et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import check_int, check_seed
from ._arrays import feature_matrix, same_dim

__all__ = ["KIDResult", "kid"]


@dataclass(frozen=True, eq=False)
class KIDResult:
    """Kernel distance: mean and spread of the unbiased MMD^2 over random subsets.

    Attributes
    ----------
    value : float
        Mean over subsets (the KID).
    std : float
        Standard deviation over subsets (``ddof = 0``, as torch-fidelity reports it). Subsets of
        one sample overlap, so this is not the standard error of ``value``.
    values : numpy.ndarray, shape (subsets,)
        The unbiased MMD^2 of each subset; can be negative.
    subset_size : int
    """

    value: float
    std: float
    values: np.ndarray
    subset_size: int


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    m = x.shape[0]
    kxx = _poly_kernel(x, x)
    kyy = _poly_kernel(y, y)
    kxy = _poly_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def kid_options(where: str, subsets, subset_size, seed, n_min: int) -> tuple[int, int, int]:
    """Checked ``(subsets, subset_size, seed)`` of :func:`kid` for sets of ``>= n_min`` rows."""
    subsets = check_int(where, "subsets", subsets, 1)
    seed = check_seed(where, "seed", seed)
    if subset_size is None:
        subset_size = min(1000, n_min)
    subset_size = check_int(where, "subset_size", subset_size, 2)
    if subset_size > n_min:
        raise ValueError(
            f"{where}: expected subset_size <= min(n_a, n_b) = {n_min}, got {subset_size}"
        )
    return subsets, subset_size, seed


def kid(
    features_a,
    features_b,
    *,
    subsets: int = 100,
    subset_size: int | None = None,
    seed: int = 0,
) -> KIDResult:
    r"""Kernel (Inception) distance: unbiased MMD^2 with a cubic polynomial kernel.

    Parameters
    ----------
    features_a, features_b : array_like or Tensor, shape (n_a, d) and (n_b, d)
    subsets : int, optional
        Number of random subsets.
    subset_size : int, optional
        Rows drawn (without replacement) from each set per subset, ``2 <= subset_size <=
        min(n_a, n_b)``; default ``min(1000, n_a, n_b)``.
    seed : int, optional
        Seed of ``numpy.random.default_rng`` drawing the subsets.

    Returns
    -------
    KIDResult

    Notes
    -----
    Binkowski et al. (2018), "Demystifying MMD GANs", eq. (4) with ``k(x, y) = (x.y / d + 1)^3``:
    for subsets ``X, Y`` of size ``m``

    .. math::

        \widehat{\mathrm{MMD}}^2 = \frac{1}{m(m-1)} \sum_{i \ne j} [k(x_i, x_j) + k(y_i, y_j)]
        - \frac{2}{m^2} \sum_{i,j} k(x_i, y_j),

    an unbiased estimate of the population MMD^2 (so it can be negative). The defaults (100
    subsets of 1000) are those of torch-fidelity and clean-fid.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.standard_normal((200, 4)), rng.standard_normal((200, 4))
    >>> r = kid(a, b, subsets=10, subset_size=100)
    >>> abs(r.value) < 0.05, r.values.shape
    (True, (10,))
    """
    where = "kid"
    a = feature_matrix(where, "features_a", features_a)
    b = feature_matrix(where, "features_b", features_b)
    same_dim(where, a, b)
    subsets, subset_size, seed = kid_options(
        where, subsets, subset_size, seed, min(a.shape[0], b.shape[0])
    )
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(a.shape[0], subset_size, replace=False)]
        y = b[rng.choice(b.shape[0], subset_size, replace=False)]
        values[i] = _mmd2_unbiased(x, y)
    return KIDResult(
        value=float(values.mean()), std=float(values.std()), values=values, subset_size=subset_size
    )
