"""Frechet (Inception) distance between two sets of features (Heusel et al. 2017)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from .._checks import check_real
from ._arrays import feature_matrix, real_array, same_dim

__all__ = ["feature_statistics", "fid", "frechet_distance"]

# An imaginary part of sqrtm's diagonal above this fraction of its real part means the product of
# the covariances is numerically singular (pytorch-fid uses an absolute 1e-3).
_IMAG_RTOL = 1e-3


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``ddof = 1``) of a set of features, the sufficient statistics of FID.

    Parameters
    ----------
    features : array_like or Tensor, shape (n, d)
        ``n >= 2``.

    Returns
    -------
    mu : numpy.ndarray, shape (d,), float64
    sigma : numpy.ndarray, shape (d, d), float64

    Examples
    --------
    >>> mu, sigma = feature_statistics(np.array([[0.0, 1.0], [2.0, 1.0]]))
    >>> mu.tolist(), sigma.tolist()
    ([1.0, 1.0], [[2.0, 0.0], [0.0, 0.0]])
    """
    f = feature_matrix("feature_statistics", "features", features)
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _mean_cov(where: str, name: str, mu, sigma) -> tuple[np.ndarray, np.ndarray]:
    mu = real_array(where, f"mu{name}", mu)
    sigma = real_array(where, f"sigma{name}", sigma)
    if mu.ndim != 1 or mu.size < 1:
        raise ValueError(f"{where}: expected mu{name} of shape (d,), got {mu.shape}")
    d = mu.size
    if sigma.shape != (d, d):
        raise ValueError(f"{where}: expected sigma{name} of shape ({d}, {d}), got {sigma.shape}")
    scale = max(float(np.abs(sigma).max()), np.finfo(np.float64).tiny)
    if not np.allclose(sigma, sigma.T, rtol=0.0, atol=1e-6 * scale):
        raise ValueError(f"{where}: expected a symmetric sigma{name}, got an asymmetric matrix")
    return mu, sigma


def _sqrtm_is_usable(c: np.ndarray) -> bool:
    if not np.all(np.isfinite(c)):
        return False
    if not np.iscomplexobj(c):
        return True
    diag = np.diagonal(c)
    return float(np.abs(diag.imag).max()) <= _IMAG_RTOL * max(1.0, float(np.abs(diag.real).max()))


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps: float = 1e-6) -> float:
    """Frechet distance between the Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Parameters
    ----------
    mu1, mu2 : array_like, shape (d,)
    sigma1, sigma2 : array_like, shape (d, d)
        Symmetric positive semi-definite covariances.
    eps : float, optional
        Diagonal offset added to both covariances (with a ``RuntimeWarning``) when
        ``sqrtm(sigma1 @ sigma2)`` is not finite or has a large imaginary part.

    Returns
    -------
    float
        ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``; may be a tiny negative
        number (round-off) for identical statistics.

    Notes
    -----
    Dowson & Landau (1982), as used for FID by Heusel et al. (2017), "GANs trained by a two
    time-scale update rule", eq. (6). ``(sigma1 sigma2)^(1/2)`` is ``scipy.linalg.sqrtm``; a
    singular product (fewer samples than dimensions) can give non-finite values or an imaginary
    part, the standard fix (pytorch-fid) being the ``eps`` offset. Imaginary round-off on the
    diagonal below ``1e-3`` of its real part is dropped.

    Examples
    --------
    >>> d = frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
    >>> round(d, 12)  # |mu1 - mu2|^2 + sum (1 - 2)^2
    4.0
    """
    where = "frechet_distance"
    mu1, sigma1 = _mean_cov(where, "1", mu1, sigma1)
    mu2, sigma2 = _mean_cov(where, "2", mu2, sigma2)
    if mu1.size != mu2.size:
        raise ValueError(
            f"{where}: expected statistics of the same dimension, got {mu1.size} and {mu2.size}"
        )
    eps = check_real(where, "eps", eps, low=0)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not _sqrtm_is_usable(covmean):
        warnings.warn(
            f"{where}: sqrtm(sigma1 @ sigma2) is not finite or not real (a singular product, "
            f"e.g. fewer samples than feature dimensions); adding {eps:g} to the diagonal of both "
            f"covariances",
            RuntimeWarning,
            stacklevel=2,
        )
        offset = eps * np.eye(mu1.size)
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not _sqrtm_is_usable(covmean):
            raise ValueError(
                f"{where}: expected covariances whose product has a real square root, got a "
                f"non-finite or complex sqrtm even with eps = {eps:g} on the diagonal; pass a "
                f"larger eps"
            )
    diff = mu1 - mu2
    tr_covmean = float(np.trace(covmean).real)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid(features_a, features_b, *, eps: float = 1e-6) -> float:
    """Frechet (Inception) distance between two sets of features.

    Parameters
    ----------
    features_a, features_b : array_like or Tensor, shape (n_a, d) and (n_b, d)
        At least 2 rows each; for Inception features the outputs of :func:`compute_features`.
    eps : float, optional
        As in :func:`frechet_distance`.

    Returns
    -------
    float
        :func:`frechet_distance` of their :func:`feature_statistics`.

    Notes
    -----
    The estimate is biased upwards at finite ``n`` (by about ``tr(sigma) / n`` per set), so
    compare models at the same ``n``; Inception FIDs are usually quoted at 50,000 vs the
    training set.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.standard_normal((500, 3))
    >>> abs(fid(a, a)) < 1e-9, round(fid(a, a + 1.0), 9)  # shift by 1 in 3 dimensions
    (True, 3.0)
    """
    where = "fid"
    a = feature_matrix(where, "features_a", features_a)
    b = feature_matrix(where, "features_b", features_b)
    same_dim(where, a, b)
    mu_a, sigma_a = feature_statistics(a)
    mu_b, sigma_b = feature_statistics(b)
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b, eps=eps)
