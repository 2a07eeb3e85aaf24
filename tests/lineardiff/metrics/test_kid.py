"""Kernel distance KID (lineardiff.metrics._kid).

Expected values come from direct O(n^2) loops and the polynomial-kernel MMD^2 of Gaussians in
closed form; the statistical tests use fixed seeds and compare within 4 standard errors.
"""

import numpy as np
import pytest
from error_tables import raises_test
from feature_inputs import correlated, random_spd

from lineardiff.metrics import kid


def mmd2_loop(x, y):
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, as plain loops."""
    m, d = x.shape

    def k(u, v):
        return (sum(ui * vi for ui, vi in zip(u, v, strict=True)) / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def expected_kernel(ma, sa, mb, sb):
    """E (X.Y / d + 1)^3 for independent X ~ N(ma, sa), Y ~ N(mb, sb).

    With s = X.Y: E s = ma.mb; E s^2 = tr((sa + ma ma^T)(sb + mb mb^T)); conditioning on Y,
    s ~ N(ma.Y, Y^T sa Y), whose third moment is m^3 + 3 m v, and averaging over Y gives
    E s^3 = c^3 + 3 c ma^T sb ma + 3 c (mb^T sa mb + tr(sa sb)) + 6 ma^T sb sa mb, c = ma.mb.
    """
    d = ma.size
    c = ma @ mb
    e2 = np.trace((sa + np.outer(ma, ma)) @ (sb + np.outer(mb, mb)))
    e3 = (
        c**3
        + 3 * c * (ma @ sb @ ma)
        + 3 * c * (mb @ sa @ mb + np.trace(sa @ sb))
        + 6 * ma @ sb @ sa @ mb
    )
    return 1 + 3 * c / d + 3 * e2 / d**2 + e3 / d**3


def mmd2_gaussians(ma, sa, mb, sb):
    return (
        expected_kernel(ma, sa, ma, sa)
        + expected_kernel(mb, sb, mb, sb)
        - 2 * expected_kernel(ma, sa, mb, sb)
    )


def test_kid_matches_an_on2_loop():
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 3)) + 0.5
    # subset_size = n: every subset is a permutation of the whole set, which leaves MMD^2 as is
    r = kid(x, y, subsets=3, subset_size=12)
    np.testing.assert_allclose(r.values, mmd2_loop(x, y), rtol=1e-12)
    assert r.value == pytest.approx(mmd2_loop(x, y), rel=1e-12) and r.std < 1e-12
    assert r.subset_size == 12 and r.values.shape == (3,)


def independent_estimates(ma, sa, mb, sb, *, reps, m, seed):
    """KID on `reps` independent pairs of samples: independent unbiased estimates of MMD^2."""
    rng = np.random.default_rng(seed)
    out = np.empty(reps)
    for i in range(reps):
        x = rng.multivariate_normal(ma, sa, m)
        y = rng.multivariate_normal(mb, sb, m)
        out[i] = kid(x, y, subsets=1, subset_size=m).value
    return out


def test_kid_is_unbiased_for_the_same_distribution():
    rng = np.random.default_rng(11)
    d = 4
    mu, s = rng.standard_normal(d), random_spd(d, rng, 0.2, 2.0)
    est = independent_estimates(mu, s, mu, s, reps=300, m=40, seed=12)
    se = est.std(ddof=1) / np.sqrt(est.size)
    assert abs(est.mean()) < 4 * se  # 4 s.e.: fails by chance with probability 6e-5
    assert (est < 0).any()  # unbiased, hence not clipped at zero


def test_kid_matches_the_analytic_mmd2_of_gaussians():
    rng = np.random.default_rng(13)
    d = 3
    ma, mb = np.array([0.5, -0.3, 1.0]), np.array([0.2, 0.4, -0.1])
    sa, sb = random_spd(d, rng, 0.2, 1.5), random_spd(d, rng, 0.1, 1.0)
    truth = mmd2_gaussians(ma, sa, mb, sb)
    est = independent_estimates(ma, sa, mb, sb, reps=300, m=40, seed=14)
    se = est.std(ddof=1) / np.sqrt(est.size)
    assert truth > 10 * se  # the comparison below can tell this MMD^2 from zero
    assert abs(est.mean() - truth) < 4 * se


def test_kid_subsets_seed_and_defaults():
    a, b = correlated(60, 5, seed=15), correlated(50, 5, seed=16, shift=0.5)
    r1, r2 = (
        kid(a, b, subsets=8, subset_size=20, seed=3),
        kid(a, b, subsets=8, subset_size=20, seed=3),
    )
    np.testing.assert_array_equal(r1.values, r2.values)
    assert not np.array_equal(r1.values, kid(a, b, subsets=8, subset_size=20, seed=4).values)
    assert r1.value == pytest.approx(r1.values.mean()) and r1.std == pytest.approx(r1.values.std())
    assert kid(a, b, subsets=2).subset_size == 50  # min(1000, n_a, n_b)



A = np.zeros((10, 3))

test_kid_errors = raises_test(
    [
        (
            lambda: kid(A, np.zeros((8, 3)), subset_size=9),
            ValueError,
            r"kid: expected subset_size <= min\(n_a, n_b\) = 8, got 9",
        ),
        (lambda: kid(A, A, subset_size=1), ValueError, "kid: expected subset_size >= 2, got 1"),
        (lambda: kid(A, A, subsets=0), ValueError, "kid: expected subsets >= 1, got 0"),
        (lambda: kid(A, A, seed=1.5), TypeError, "kid: expected seed as an int, got 1.5"),
        (lambda: kid(A, A, seed=-1), ValueError, "kid: expected seed in \\[0, 9223372036854775807\\], got -1"),
        (
            lambda: kid(A, np.zeros((10, 2))),
            ValueError,
            "kid: expected features of the same dimension, got 3 and 2",
        ),
        (
            lambda: kid(A, np.full((10, 3), np.nan)),
            ValueError,
            r"kid: expected finite features_b, got 30 NaN or inf values \(the first at index",
        ),
    ]
)
