"""Frechet distance and FID (lineardiff.metrics._fid).

Expected values come from closed forms (diagonal Gaussians) and an independent
eigendecomposition route for ``tr (S1 S2)^(1/2)``.
"""

import warnings

import numpy as np
import pytest
import torch
from error_tables import raises_test
from feature_inputs import correlated, random_spd

from lineardiff.metrics import _fid, feature_statistics, fid, frechet_distance


def sqrt_psd(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_eig(mu1, s1, mu2, s2):
    """Independent route: tr (s1 s2)^(1/2) = tr (s1^(1/2) s2 s1^(1/2))^(1/2), a symmetric PSD matrix."""
    r = sqrt_psd(s1)
    ev = np.linalg.eigvalsh(r @ s2 @ r)
    tr = np.sqrt(np.clip(ev, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr)


def test_fid_of_a_set_with_itself_is_zero():
    a = correlated(2000, 16, seed=0)
    # sqrtm(S S) reproduces S up to round-off of order cond(S) * eps * |S|; 1e-10 of tr S leaves
    # a wide margin (measured ~1e-14) while still far below any real difference.
    assert abs(fid(a, a)) < 1e-10 * np.trace(np.cov(a, rowvar=False))


def test_fid_is_symmetric_and_rotation_invariant():
    a = correlated(500, 8, seed=1)
    b = correlated(700, 8, seed=2, shift=0.3)
    ab = fid(a, b)
    assert ab > 0.1
    assert fid(b, a) == pytest.approx(ab, rel=1e-10)
    q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((8, 8)))
    assert fid(a @ q, b @ q) == pytest.approx(ab, rel=1e-9)


def test_feature_statistics_and_fid_use_mean_and_unbiased_covariance():
    a, b = correlated(50, 4, seed=4), correlated(60, 4, seed=5, shift=1.0)
    mu, sigma = feature_statistics(torch.from_numpy(a))
    np.testing.assert_allclose(mu, a.mean(0), rtol=1e-14)
    np.testing.assert_allclose(sigma, np.cov(a, rowvar=False, ddof=1), rtol=1e-13)
    expected = frechet_eig(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid(a, b) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(6)
    d = 12
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    # commuting (diagonal) covariances: tr(S1 + S2 - 2 (S1 S2)^(1/2)) = sum (sqrt v1 - sqrt v2)^2
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("d", [2, 7, 40])
def test_frechet_distance_general_matches_eigen_route(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(d, rng), random_spd(d, rng, lo=0.01, hi=10.0)
    got = frechet_distance(mu1, s1, mu2, s2)
    # both routes lose about cond(S) * eps relative to tr S; 1e-9 is far above that
    assert got == pytest.approx(
        frechet_eig(mu1, s1, mu2, s2), rel=1e-9, abs=1e-9 * np.trace(s1 + s2)
    )


def test_rank_deficient_covariances_fewer_samples_than_dimensions():
    a, b = correlated(10, 32, seed=7), correlated(12, 32, seed=8, shift=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the offset route may or may not trigger
        got = fid(a, b)
    expected = frechet_eig(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    # sqrtm of a singular product is accurate to about sqrt(eps) relative (measured 2e-8)
    assert got == pytest.approx(expected, rel=1e-5)


def test_singular_product_offsets_the_diagonal_and_warns(monkeypatch):
    real_sqrtm = _fid.scipy.linalg.sqrtm
    calls = []

    def flaky(m):
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(_fid.scipy.linalg, "sqrtm", flaky)
    rng = np.random.default_rng(9)
    s1, s2 = random_spd(5, rng), random_spd(5, rng)
    mu = np.zeros(5)
    with pytest.warns(
        RuntimeWarning,
        match=r"frechet_distance: sqrtm\(sigma1 @ sigma2\) is not finite or not real .*adding 0.001 to the diagonal",
    ):
        got = frechet_distance(mu, s1, mu, s2, eps=1e-3)
    e = 1e-3 * np.eye(5)
    np.testing.assert_allclose(calls[1], (s1 + e) @ (s2 + e))
    # the offset enters the square-root term only, as in pytorch-fid
    tr = np.trace(real_sqrtm((s1 + e) @ (s2 + e))).real
    assert got == pytest.approx(np.trace(s1) + np.trace(s2) - 2 * tr, rel=1e-12)


def test_persistent_complex_sqrtm_raises(monkeypatch):
    monkeypatch.setattr(_fid.scipy.linalg, "sqrtm", lambda m: m.astype(complex) + 1j)
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="pass a larger eps"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))


def test_small_imaginary_round_off_is_dropped(monkeypatch):
    real_sqrtm = _fid.scipy.linalg.sqrtm
    monkeypatch.setattr(_fid.scipy.linalg, "sqrtm", lambda m: real_sqrtm(m) + 1e-9j)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
    assert got == pytest.approx(4.0, rel=1e-12)



A = np.zeros((5, 3))
Z, EYE = np.zeros(2), np.eye(2)

test_fid_errors = raises_test(
    [
        (
            lambda: fid(np.zeros(5), A),
            ValueError,
            r"fid: expected features_a of shape \(n, d\), got \(5,\)",
        ),
        (
            lambda: fid(A, np.zeros((1, 3))),
            ValueError,
            "fid: expected at least 2 rows in features_b, got 1",
        ),
        (
            lambda: fid(A, np.zeros((5, 4))),
            ValueError,
            "fid: expected features of the same dimension, got 3 and 4",
        ),
        (
            lambda: fid(np.full((5, 3), np.nan), A),
            ValueError,
            r"fid: expected finite features_a, got 15 NaN or inf values \(the first at index \(0, 0\)\)",
        ),
        (
            lambda: fid(np.array([["a"]]), A),
            TypeError,
            "fid: expected features_a as a real numeric array, got dtype <U1",
        ),
    ]
)

test_frechet_distance_errors = raises_test(
    [
        (
            lambda: frechet_distance(np.zeros((1, 2)), EYE, Z, EYE),
            ValueError,
            r"frechet_distance: expected mu1 of shape \(d,\), got \(1, 2\)",
        ),
        (
            lambda: frechet_distance(Z, EYE, Z, np.eye(3)),
            ValueError,
            r"frechet_distance: expected sigma2 of shape \(2, 2\), got \(3, 3\)",
        ),
        (
            lambda: frechet_distance(Z, np.array([[1.0, 0.5], [0.0, 1.0]]), Z, EYE),
            ValueError,
            "frechet_distance: expected a symmetric sigma1",
        ),
        (
            lambda: frechet_distance(Z, EYE, np.zeros(3), np.eye(3)),
            ValueError,
            "frechet_distance: expected statistics of the same dimension, got 2 and 3",
        ),
        (
            lambda: frechet_distance(Z, EYE, Z, np.full((2, 2), np.inf)),
            ValueError,
            r"frechet_distance: expected finite sigma2, got 4 NaN or inf values \(the first at",
        ),
        (
            lambda: frechet_distance(Z, EYE, Z, EYE, eps=0),
            ValueError,
            r"frechet_distance: expected eps in \(0, inf\), got 0.0",
        ),
        (
            lambda: frechet_distance(Z, EYE, Z, EYE, eps="1e-6"),
            TypeError,
            "frechet_distance: expected eps as a real number, got '1e-6'",
        ),
    ]
)
