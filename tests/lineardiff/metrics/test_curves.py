"""Tests for the curve influence functions and the Hotelling comparison (lineardiff.metrics).

Independent routes: curve values against the public observables (radial_correlation,
structure_factor, four_point_connected, block_binder); covariances against per-configuration
curves, leave-one-out recomputation and the bootstrap; the Hotelling statistic against Gaussian
draws from a chosen covariance and against independent Monte Carlo sets; failing ensembles and
the G4c reference values of docs/ising.rst ("Observables"). Fixed seeds throughout.
"""

import math

import numpy as np
import pytest
from error_tables import raises_test
from scipy import ndimage, stats

from lineardiff.data import wolff_configurations
from lineardiff.metrics import (
    CURVES,
    block_binder,
    compare,
    curve_estimates,
    four_point_connected,
    hotelling,
    hotelling_statistic,
    radial_correlation,
    structure_factor,
    summary,
)

# docs/ising.rst, "Observables": G4c(l) at L = 64 (Monte Carlo), quoted to 4 decimals.
G4C_REFERENCE_64 = {1: -0.8282, 2: -0.6041, 4: -0.4456, 8: -0.3417, 16: -0.2812, 32: -0.2590}

# docs/ising.rst, "The pass rule": Hotelling p > 1e-3 for every curve.
P_MIN = 1e-3


def random_spins(n, L, seed):
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=(n, L, L))


def public_curves(x, ls, bs):
    """Every curve from the public one-curve functions (an independent route)."""
    return {
        "G": radial_correlation(x)[1],
        "S": structure_factor(x)[1],
        "G4c": four_point_connected(x, ls),
        "U_b": np.array([block_binder(x, b) for b in bs]),
    }


# ---------------------------------------------------------------- values and influence functions


@pytest.mark.parametrize(("L", "source"), [(5, "random"), (6, "random"), (16, "mc")])
def test_values_match_public_functions(L, source):
    x = random_spins(40, L, seed=L) if source == "random" else wolff_configurations(L, 300, seed=1)
    est = curve_estimates(x)
    assert list(est) == list(CURVES)
    expected = public_curves(x, est["G4c"].x, est["U_b"].x)
    for name in CURVES:
        e = est[name]
        assert e.value.shape == e.x.shape == (e.influence.shape[1],)
        # FFT and matrix-product round-off on sums of N = L^2 terms; S(0) is of order N
        np.testing.assert_allclose(e.value, expected[name], rtol=1e-12, atol=1e-12 * L * L)
        np.testing.assert_allclose(e.influence.mean(axis=0), 0.0, atol=1e-12 * L * L)
    np.testing.assert_array_equal(est["G"].x, np.arange(1, L // 2 + 1))


def test_default_sizes_and_selection():
    est = curve_estimates(np.ones((2, 32, 32)))
    assert est["G4c"].x.tolist() == [1, 2, 4, 8, 16]
    assert est["U_b"].x.tolist() == [2, 4, 8, 16, 32]
    # L = 24: the powers of two up to L / 2 and dividing L, then L / 2 and L themselves
    est = curve_estimates(np.ones((2, 24, 24)), curves=("U_b", "G4c"))
    assert list(est) == ["U_b", "G4c"]
    assert est["G4c"].x.tolist() == [1, 2, 4, 8, 12]
    assert est["U_b"].x.tolist() == [2, 4, 8, 24]
    est = curve_estimates(np.ones((2, 8, 8)), curves=("G4c",), ls=[3, 7])
    assert est["G4c"].x.tolist() == [3, 7] and est["G4c"].value.tolist() == [-2.0, -2.0]


def test_linear_curves_covariance_is_the_per_configuration_covariance():
    # G and S are averages of per-configuration curves, so Cov = (sample covariance, ddof 0) / n
    # exactly; the per-configuration curves come from the public functions one configuration at
    # a time.
    x = wolff_configurations(16, 400, seed=2)
    est = curve_estimates(x, curves=("G", "S"))
    for name, func in (("G", radial_correlation), ("S", structure_factor)):
        per = np.array([func(c[None])[1] for c in x])
        direct = np.cov(per, rowvar=False, ddof=0) / len(x)
        scale = np.abs(direct).max()
        np.testing.assert_allclose(est[name].cov, direct, rtol=1e-9, atol=1e-12 * scale)
        np.testing.assert_allclose(est[name].se, np.sqrt(np.diag(direct)), rtol=1e-9)


def test_nonlinear_influence_matches_leave_one_out():
    # (n - 1)(theta - theta_(-i)) = IF_i - delta_i^T H delta_i / (2 (n - 1)) + O(n^-2), with
    # delta_i the deviation of configuration i's moments from their mean. For G4c the Hessian H
    # of <abcd> - <ab>^2 - <ad>^2 - <ac><bd> has entries -2, -2, -1, -1 and every |delta| <= 2,
    # so the second-order term is at most 12 / (n - 1): tolerance 15 / (n - 1). A wrong
    # gradient coefficient is off by O(1).
    n = 200
    x = wolff_configurations(16, n, seed=3)
    ls = [1, 2, 4, 8]
    est = curve_estimates(x, curves=("G4c",), ls=ls)["G4c"]
    theta = four_point_connected(x, ls)
    for i in range(0, n, 20):
        loo = four_point_connected(np.delete(x, i, axis=0), ls)
        np.testing.assert_allclose((n - 1) * (theta - loo), est.influence[i], atol=15 / (n - 1))


def test_binder_influence_matches_scalar_bootstrap():
    # U_b at b = L is the ordinary Binder cumulant: its influence-function s.e. against the
    # bootstrap s.e. of summary (400 replicates: relative s.e. of an s.e. ~ 1/sqrt(800) = 3.5 %)
    x = wolff_configurations(16, 4000, seed=4)
    est = curve_estimates(x, curves=("U_b",))["U_b"]
    boot = summary(x, n_boot=400, seed=5)["U"]
    assert est.value[-1] == pytest.approx(boot["value"], abs=1e-12)
    assert est.se[-1] == pytest.approx(boot["se"], rel=0.15)


def test_influence_covariance_matches_bootstrap():
    # Whitened by the influence-function covariance, the bootstrap covariance of B replicates is a
    # Wishart(B - 1) / (B - 1) matrix with the identity as mean (up to O(1/n) for the nonlinear
    # curves): for p <= 5 points and B = 300 its eigenvalues lie within the Marchenko-Pastur edges
    # (1 -+ sqrt(p / B))^2 = 0.76 .. 1.27 up to O(B^(-2/3)) ~ 0.03 fluctuations; we allow 0.7 .. 1.4.
    # A covariance wrong by a factor 1.5 in any direction fails. L = 8 keeps the 300 public-route
    # replicates cheap.
    n, B = 600, 300
    x = wolff_configurations(8, n, seed=6)
    est = curve_estimates(x)
    ls, bs = est["G4c"].x, est["U_b"].x
    rng = np.random.default_rng(7)
    reps = {name: [] for name in CURVES}
    for _ in range(B):
        rep = public_curves(x[rng.integers(0, n, size=n)], ls, bs)
        for name in CURVES:
            reps[name].append(rep[name])
    for name in CURVES:
        boot = np.cov(np.array(reps[name]), rowvar=False)
        chol = np.linalg.cholesky(est[name].cov)
        white = np.linalg.solve(chol, np.linalg.solve(chol, boot).T)
        eig = np.linalg.eigvalsh(0.5 * (white + white.T))
        assert 0.7 < eig.min() and eig.max() < 1.4, (name, eig)


# ---------------------------------------------------------------- the Hotelling statistic


def test_hotelling_statistic_follows_chi2_with_the_rank_as_dof():
    # Gaussian differences from a chosen covariance of rank 4 in R^6 with a spectrum spanning
    # 8 decades: chi2 must follow chi^2_4 exactly (KS p-value > 1e-3 over 2000 draws) with
    # dof = 4 every time. Dropping the null space wrongly (dof 6) or keeping round-off
    # eigenvalues (chi2 of order 1e16) fails.
    rng = np.random.default_rng(8)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    spectrum = np.array([1e2, 1.0, 1e-3, 1e-6, 0.0, 0.0])
    cov = (q * spectrum) @ q.T
    root = q * np.sqrt(spectrum)
    draws = [hotelling_statistic(root @ rng.standard_normal(6), cov) for _ in range(2000)]
    assert {r.dof for r in draws} == {4}
    chi2 = np.array([r.chi2 for r in draws])
    assert stats.kstest(chi2, stats.chi2(4).cdf).pvalue > 1e-3
    p = np.array([r.pvalue for r in draws])
    np.testing.assert_allclose(p, stats.chi2.sf(chi2, 4))


def test_hotelling_statistic_hand_values():
    # diagonal covariance: chi2 = sum d^2 / var = 1 + 1/4; max deviation = max |d| / se
    r = hotelling_statistic([1.0, 1.0], [[1.0, 0.0], [0.0, 4.0]], x=[3, 5])
    assert r.chi2 == pytest.approx(1.25) and r.dof == 2 and r.max_dev == 1.0
    assert r.pvalue == pytest.approx(math.exp(-1.25 / 2))  # chi^2_2 survival is exp(-x/2)
    assert r.x.tolist() == [3, 5] and r.se.tolist() == [1.0, 2.0]
    # rank one: d along the fluctuating direction counts once, across it is infinitely off
    assert hotelling_statistic([1.0, 1.0], np.ones((2, 2))).chi2 == pytest.approx(1.0)
    assert hotelling_statistic([1.0, -1.0], np.ones((2, 2))).chi2 == math.inf
    # nothing fluctuates: equal curves pass, different ones fail
    same = hotelling_statistic([0.0, 0.0], np.zeros((2, 2)))
    assert (same.chi2, same.dof, same.pvalue, same.max_dev) == (0.0, 0, 1.0, 0.0)
    off = hotelling_statistic([0.0, 1e-3], np.zeros((2, 2)))
    assert (off.chi2, off.pvalue, off.max_dev) == (math.inf, 0.0, math.inf)
    assert math.isnan(hotelling_statistic([math.nan, 0.0], np.eye(2)).pvalue)


def test_monte_carlo_pairs_follow_the_null_and_pass():
    # Six independent pairs of 2000 vs 2000 at L = 16. Each pair must pass compare (so every
    # Hotelling p > 1e-3), and per curve the summed chi2 over the pairs must be consistent with
    # chi^2 of the summed dof on both sides (p in (1e-3, 1 - 1e-3)): a covariance too small
    # inflates chi2, one too large deflates it. Each side has probability 1e-3 under the null.
    pvalues = {name: [] for name in CURVES}
    chi2 = {name: 0.0 for name in CURVES}
    dof = {name: 0 for name in CURVES}
    for pair in range(6):
        a = wolff_configurations(16, 2000, seed=100 + 2 * pair)
        b = wolff_configurations(16, 2000, seed=101 + 2 * pair)
        out = compare(a, b, n_boot=100)
        assert out["passes"], out["failures"]
        for name in CURVES:
            c = out["curves"][name]
            assert c["dof"] == len(c["x"])  # full rank
            pvalues[name].append(c["pvalue"])
            chi2[name] += c["chi2"]
            dof[name] += c["dof"]
    for name in CURVES:
        total = stats.chi2.sf(chi2[name], dof[name])
        assert P_MIN < total < 1 - P_MIN, (name, chi2[name], dof[name], pvalues[name])


def test_hotelling_matches_curve_estimates():
    a, b = random_spins(300, 8, seed=9), random_spins(200, 8, seed=10)
    res = hotelling(a, b, curves=("G4c", "S"))
    assert list(res) == ["G4c", "S"]
    ea, eb = curve_estimates(a), curve_estimates(b)
    for name, r in res.items():
        d = ea[name].value - eb[name].value
        # the null covariance of d: the influence functions of both sets pooled
        ia, ib = ea[name].influence, eb[name].influence
        cov = (ia.T @ ia + ib.T @ ib) / (300 + 200) * (1 / 300 + 1 / 200)
        np.testing.assert_allclose(r.diff, d)
        # full-rank covariance: the truncated inverse is the inverse
        assert r.chi2 == pytest.approx(d @ np.linalg.solve(cov, d), rel=1e-9)
        assert r.max_dev == pytest.approx(np.max(np.abs(d) / np.sqrt(np.diag(cov))), rel=1e-12)


def test_hotelling_holds_its_level_when_one_set_is_small():
    # Monte Carlo against Monte Carlo, 32 configurations against 2,000 (the demo's sizes):
    # the test must reject at p < 1e-3 about once in a thousand. With the covariance of d
    # estimated from each set separately (Cov_a + Cov_b) it rejected G and S in about 40 %
    # of such draws at L = 32 (a p x p covariance from 32 configurations); pooled under the
    # null it rejects at its level. 60 draws: 3 rejections at 1e-3 would be a 4e-5 event,
    # and at 0.05 the count is binomial(60, 0.05), below 9 with probability 0.99.
    from lineardiff.data.ising import wolff_configurations

    ref = wolff_configurations(16, 2000, seed=10_000)
    pool = wolff_configurations(16, 60 * 32, seed=777)
    p = np.array([[r.pvalue for r in hotelling(pool[32 * i: 32 * (i + 1)], ref).values()]
                  for i in range(60)])
    assert (p < 1e-3).sum(axis=0).max() < 3, p.min(axis=0)
    assert (p < 0.05).sum(axis=0).max() < 9, (p < 0.05).sum(axis=0)


# ---------------------------------------------------------------- compare with curves


def test_compare_curves_option():
    a, b = random_spins(30, 8, seed=11), random_spins(30, 8, seed=12)
    full = compare(a, b, n_boot=20)
    none = compare(a, b, n_boot=20, curves=())
    only = compare(a, b, n_boot=20, curves=["U_b"])
    assert list(full["curves"]) == list(CURVES) and none["curves"] == {}
    assert list(only["curves"]) == ["U_b"] and only["curves"]["U_b"] == full["curves"]["U_b"]
    assert none["scalars"] == full["scalars"] and none["histograms"] == full["histograms"]
    entry = full["curves"]["G"]
    assert set(entry) == {"x", "diff", "se", "chi2", "dof", "pvalue", "max_dev"}
    assert entry["x"] == [1, 2, 3, 4]


def test_compare_constant_sets():
    # both sets constant (zero covariance): equal curves pass, different curves fail with chi2 = inf
    up = np.ones((3, 8, 8))
    assert all(c["pvalue"] == 1.0 for c in compare(up, -up, n_boot=10)["curves"].values())
    # a wall between columns 4 and 5 (and across the seam): 2 x 2 blocks with |m_B| = 0 and 1,
    # so U_2 = 1 - (3/4) / (3 (3/4)^2) = 5/9 where the all-up set has 2/3
    wall = np.ones((3, 8, 8))
    wall[:, :, 5:] = -1
    out = compare(up, wall, n_boot=10)
    assert out["curves"]["U_b"]["diff"][0] == pytest.approx(2 / 3 - 5 / 9)
    for name in CURVES:
        assert out["curves"][name]["chi2"] == math.inf
        assert any(f.startswith(f"{name} curve: Hotelling p = 0") for f in out["failures"])
    # m = 0 in every configuration: U_L is undefined (NaN), which fails like a NaN z-score
    wall[:, :, 4] = -1
    out = compare(up, wall, n_boot=10)
    assert math.isnan(out["curves"]["U_b"]["pvalue"])
    assert any(f.startswith("U_b curve: Hotelling p = nan") for f in out["failures"])


def test_off_critical_t229_fails():
    # T = 2.29 is 0.9 % above T_c. Measured at L = 32 and 10,000 vs 10,000: U differs by about
    # 15 s.e. (z ~ -15); at 3000 vs 3000 the expected |z| is 15 sqrt(0.3) ~ 8, well past 3.5, so
    # the test is decisive with a 4.5 s.e. margin while sampling only 6000 configurations.
    a = wolff_configurations(32, 3000, seed=13, T=2.29)
    b = wolff_configurations(32, 3000, seed=14)
    out = compare(a, b)
    assert not out["passes"]
    assert out["scalars"]["U"]["z"] < -5
    assert any(f.startswith("U: ") for f in out["failures"])
    for name in CURVES:
        assert out["curves"][name]["pvalue"] < P_MIN, name


def test_blurred_critical_set_fails():
    # Gaussian blur (sigma 0.6 px, periodic) and re-binarisation removes isolated spins: the
    # energy drops by tens of s.e. and every curve fails its Hotelling test at 1000 vs 1000.
    c = wolff_configurations(16, 1000, seed=15)
    blurred = ndimage.gaussian_filter(c.astype(float), sigma=(0, 0.6, 0.6), mode="wrap")
    blurred = np.where(blurred >= 0, 1, -1)
    out = compare(blurred, wolff_configurations(16, 1000, seed=16))
    assert not out["passes"]
    assert abs(out["scalars"]["e"]["z"]) > 10
    for name in CURVES:
        assert out["curves"][name]["pvalue"] < P_MIN, name
        assert any(f.startswith(f"{name} curve") for f in out["failures"])


def test_g4c_reference_at_l64():
    # docs/ising.rst ("Observables"): G4c at L = 64 within 3 combined s.e. (ours from the
    # influence functions on 5000 configurations, about 0.001 .. 0.004; the reference's
    # rounding to 4 decimals, 5e-5 / sqrt(3) as a uniform error; its Monte Carlo s.e. is not
    # quoted and taken as 0).
    x = wolff_configurations(64, 5000, seed=17)
    est = curve_estimates(x, curves=("G4c",))["G4c"]
    assert est.x.tolist() == list(G4C_REFERENCE_64)
    ref = np.array(list(G4C_REFERENCE_64.values()))
    se = np.hypot(est.se, 5e-5 / math.sqrt(3))
    assert np.all(np.abs(est.value - ref) < 3 * se), (est.value, est.se)


# ---------------------------------------------------------------- errors


test_errors = raises_test(
    [
        (
            lambda: curve_estimates(np.ones((2, 8, 8)), curves="G"),
            TypeError,
            r"curve_estimates: expected curves as a sequence of names from \('G', 'S', 'G4c', 'U_b'\), got str",
        ),
        (
            lambda: curve_estimates(np.ones((2, 8, 8)), curves=("G", "E")),
            ValueError,
            r"curve_estimates: expected curve names from .*, got 'E'",
        ),
        (
            lambda: curve_estimates(np.ones((2, 8, 8)), ls=[2, 8]),
            ValueError,
            r"curve_estimates: expected every l in 1 \.\. 7, got 8",
        ),
        (
            lambda: curve_estimates(np.ones((2, 8, 8)), ls=[]),
            ValueError,
            "curve_estimates: expected at least one l, got none",
        ),
        (
            lambda: curve_estimates(np.ones((2, 8, 8)), bs=[3]),
            ValueError,
            "curve_estimates: expected block sizes b dividing L = 8, got 3",
        ),
        (
            lambda: curve_estimates(np.ones((2, 8, 8)), bs=[2.0]),
            TypeError,
            "curve_estimates: expected b as an int, got 2.0",
        ),
        (
            lambda: curve_estimates(np.ones((8, 8))),
            ValueError,
            r"curve_estimates: expected configs of shape \(n, L, L\) with L >= 2, got \(8, 8\)",
        ),
        (
            lambda: hotelling(np.ones((2, 4, 4)), np.ones((2, 8, 8))),
            ValueError,
            "hotelling: expected a and b at the same L, got L = 4 and L = 8",
        ),
        (
            lambda: hotelling(np.ones((2, 4, 4)), np.full((2, 4, 4), np.nan)),
            ValueError,
            r"hotelling \(b\): expected finite configs, got 32 NaN or inf values \(the first at index",
        ),
        (
            lambda: hotelling_statistic(np.ones((2, 2)), np.eye(2)),
            ValueError,
            r"hotelling_statistic: expected diff of shape \(p,\), got \(2, 2\)",
        ),
        (
            lambda: hotelling_statistic(np.ones(3), np.eye(2)),
            ValueError,
            r"hotelling_statistic: expected cov of shape \(3, 3\), got \(2, 2\)",
        ),
        (
            lambda: hotelling_statistic(np.ones(2), np.eye(2), x=[1]),
            ValueError,
            r"hotelling_statistic: expected x of shape \(2,\), got \(1,\)",
        ),
        (
            lambda: hotelling_statistic(np.ones(2), np.eye(2), atol=-1.0),
            ValueError,
            r"hotelling_statistic: expected atol in \[0, inf\), got -1.0",
        ),
        (
            lambda: compare(np.ones((2, 4, 4)), np.ones((2, 4, 4)), curves=("G", "X")),
            ValueError,
            "compare: expected curve names from .*, got 'X'",
        ),
        (
            lambda: hotelling_statistic(np.ones(2), np.eye(2), atol="0"),
            TypeError,
            "hotelling_statistic: expected atol as a real number, got '0'",
        ),
    ]
)
