"""Tests for the Ising observables and the bootstrap comparison (lineardiff.metrics).

Expected values come from hand-made configurations with values derived by hand (stated inline),
direct O(N^2) loops, identities between observables, or the Monte Carlo references of
docs/ising.rst ("Exact values to validate the sampler").
Statistical tests use fixed seeds.
"""

import math

import numpy as np
import pytest
from error_tables import raises_test

from lineardiff.data import T_C, energy_per_site, magnetization, wolff_configurations
from lineardiff.metrics import (
    CURVES,
    SCALARS,
    binarize,
    block_binder,
    compare,
    four_point_connected,
    radial_correlation,
    seam_energy,
    structure_factor,
    summary,
    two_point,
)

# docs/ising.rst, "Exact values to validate the sampler" (Monte Carlo, value and s.e.)
MC_BINDER_16 = (0.61146, 0.00005)
MC_ABS_M_16 = (0.7135, 0.0001)

# Float64 round-off on sums of O(L^2) terms of size 1.
ATOL = 1e-12


def checkerboard(L):
    i = np.arange(L)
    return np.where((i[:, None] + i[None, :]) % 2 == 0, 1, -1).astype(np.int8)[None]


def domain_wall(L):
    """Left half +1, right half -1: two vertical walls (one inside, one across the seam)."""
    x = np.ones((1, L, L), dtype=np.int8)
    x[:, :, L // 2 :] = -1
    return x


def random_spins(n, L, seed):
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=(n, L, L))


# ---------------------------------------------------------------- hand-made configurations


def test_all_up():
    x = np.ones((3, 8, 8), dtype=np.int8)
    s = summary(x, n_boot=10)
    assert s["e"] == {"value": -2.0, "se": 0.0}
    assert s["abs_m"]["value"] == 1.0 and s["m"]["value"] == 1.0
    assert s["U"]["value"] == pytest.approx(2 / 3, abs=ATOL)
    assert s["chi"]["value"] == 64.0 and s["C"]["value"] == 0.0
    assert s["seam"]["value"] == -1.0
    np.testing.assert_allclose(two_point(x), 1.0, atol=ATOL)
    np.testing.assert_allclose(radial_correlation(x)[1], 1.0, atol=ATOL)
    # every corner product is 1: G4c = 1 - 3 * 1 * 1
    np.testing.assert_allclose(four_point_connected(x, [1, 3, 7]), -2.0, atol=ATOL)
    for b in (1, 2, 4, 8):
        assert block_binder(x, b) == pytest.approx(2 / 3, abs=ATOL)
    k, S = structure_factor(x)
    np.testing.assert_allclose(S, [64.0, 0, 0, 0, 0], atol=1e-9)


def test_checkerboard():
    x = checkerboard(6)
    s = summary(np.concatenate([x, -x]), n_boot=10)
    assert s["e"]["value"] == 2.0 and s["m"]["value"] == 0.0 and s["abs_m"]["value"] == 0.0
    assert s["seam"]["value"] == 1.0  # L even: every wrap-around bond is antiparallel
    c2 = two_point(x)
    d = np.arange(6)
    np.testing.assert_allclose(c2, (-1.0) ** (d[:, None] + d[None, :]), atol=ATOL)
    assert math.isnan(s["U"]["value"])  # m = 0 everywhere: U undefined
    # 2 x 2 blocks of a checkerboard sum to zero
    assert math.isnan(block_binder(x, 2))


def test_domain_wall():
    L = 8
    x = domain_wall(L)
    # 2L broken bonds out of 2N: e = -2 + 2 * (2L) / N
    assert energy_per_site(x)[0] == pytest.approx(-2 + 4 * L / L**2)
    assert magnetization(x)[0] == 0.0
    # the seam carries L broken (horizontal) and L intact (vertical) bonds
    assert seam_energy(x)[0] == 0.0
    assert seam_energy(np.roll(x, 1, axis=-1))[0] == -1.0  # wall moved off the seam
    # C2(0, d1) = 1 - 4 min(d1, L - d1) / L  (fraction of columns crossing a wall, twice)
    d = np.arange(L)
    np.testing.assert_allclose(two_point(x)[0], 1 - 4 * np.minimum(d, L - d) / L, atol=ATOL)
    np.testing.assert_allclose(two_point(x)[:, 0], 1.0, atol=ATOL)


def test_binarize():
    x = np.array([[0.7, -0.3], [0.0, -2.0]])
    s, soft = binarize(x)
    assert s.dtype == np.int8 and s.tolist() == [[1, -1], [1, -1]]
    assert soft == 0.5
    # observables binarise real inputs with the same rule (ties to +1)
    cont = np.where(np.ones((2, 4, 4)) > 0, 0.2, 0.0)
    assert summary(cont, n_boot=5)["e"]["value"] == -2.0


# ---------------------------------------------------------------- independent routes


def test_two_point_matches_direct_loop():
    x = random_spins(3, 5, seed=1).astype(float)
    n, L, _ = x.shape
    direct = np.zeros((L, L))
    for c in range(n):
        for d0 in range(L):
            for d1 in range(L):
                for i in range(L):
                    for j in range(L):
                        direct[d0, d1] += x[c, i, j] * x[c, (i + d0) % L, (j + d1) % L]
    direct /= n * L * L
    np.testing.assert_allclose(two_point(x), direct, atol=ATOL)


def test_radial_and_structure_factor_match_direct_loops():
    x = random_spins(4, 6, seed=2).astype(float)
    n, L, _ = x.shape
    c2 = two_point(x)
    sums, counts = np.zeros(L // 2 + 1), np.zeros(L // 2 + 1)
    spow, scount = np.zeros(L // 2 + 1), np.zeros(L // 2 + 1)
    pos = np.arange(L)
    for d0 in range(L):
        for d1 in range(L):
            rad = math.hypot(min(d0, L - d0), min(d1, L - d1))
            b = math.floor(rad + 0.5)
            # explicit DFT at q = 2 pi (d0, d1) / L
            phase = np.exp(-2j * np.pi * (d0 * pos[:, None] + d1 * pos[None, :]) / L)
            power = np.mean(np.abs((x * phase).sum(axis=(1, 2))) ** 2) / L**2
            if b <= L // 2:
                sums[b] += c2[d0, d1]
                counts[b] += 1
                spow[b] += power
                scount[b] += 1
    r, g = radial_correlation(x)
    np.testing.assert_array_equal(r, np.arange(1, L // 2 + 1))
    np.testing.assert_allclose(g, sums[1:] / counts[1:], atol=ATOL)
    k, S = structure_factor(x)
    np.testing.assert_allclose(k, 2 * np.pi * np.arange(L // 2 + 1) / L)
    np.testing.assert_allclose(S, spow / scount, atol=1e-9)
    # S(0) = N <m^2>
    assert S[0] == pytest.approx(L**2 * np.mean(magnetization(x) ** 2))


def test_four_point_matches_direct_loop():
    x = random_spins(3, 5, seed=3).astype(float)
    n, L, _ = x.shape
    for l in (1, 2, 4):
        acc = {"4": 0.0, "ab": 0.0, "cd": 0.0, "ad": 0.0, "bc": 0.0, "ac": 0.0, "bd": 0.0}
        for c in range(n):
            for i in range(L):
                for j in range(L):
                    sa = x[c, i, j]
                    sb = x[c, i, (j + l) % L]
                    sc = x[c, (i + l) % L, (j + l) % L]
                    sd = x[c, (i + l) % L, j]
                    acc["4"] += sa * sb * sc * sd
                    acc["ab"] += sa * sb
                    acc["cd"] += sc * sd
                    acc["ad"] += sa * sd
                    acc["bc"] += sb * sc
                    acc["ac"] += sa * sc
                    acc["bd"] += sb * sd
        m = {k: v / (n * L * L) for k, v in acc.items()}
        expected = m["4"] - m["ab"] * m["cd"] - m["ad"] * m["bc"] - m["ac"] * m["bd"]
        assert four_point_connected(x, l)[0] == pytest.approx(expected, abs=ATOL)


def test_block_binder_direct_and_full_block_is_binder():
    x = random_spins(50, 8, seed=4)
    # b = L is the ordinary Binder cumulant of the summary
    assert block_binder(x, 8) == pytest.approx(summary(x, n_boot=5)["U"]["value"], abs=ATOL)
    # b = 2 against an explicit loop over blocks
    blocks = [
        x[c, i : i + 2, j : j + 2].mean()
        for c in range(50)
        for i in (0, 2, 4, 6)
        for j in (0, 2, 4, 6)
    ]
    mb = np.array(blocks)
    expected = 1 - np.mean(mb**4) / (3 * np.mean(mb**2) ** 2)
    assert block_binder(x, 2) == pytest.approx(expected, abs=ATOL)


def test_monte_carlo_identities():
    x = wolff_configurations(16, 2000, seed=5)
    c2 = two_point(x)
    e = energy_per_site(x).mean()
    # the axis average of the nearest-neighbour correlation is exactly -e / 2 (same bond sum)
    assert 0.5 * (c2[0, 1] + c2[1, 0]) == pytest.approx(-e / 2, abs=ATOL)
    s = summary(x, n_boot=50)
    # chi = S(0) and the seam is an ordinary pair of bond rows: <seam> ~ <e> / 2 (within 4 s.e.)
    assert s["chi"]["value"] == pytest.approx(structure_factor(x)[1][0])
    assert abs(s["seam"]["value"] - s["e"]["value"] / 2) < 4 * math.hypot(
        s["seam"]["se"], s["e"]["se"] / 2
    )
    # C = K_c^2 N var(e) by its definition
    assert s["C"]["value"] == pytest.approx(256 * np.var(energy_per_site(x)) / T_C**2)


# ---------------------------------------------------------------- statistics


def test_bootstrap_se_matches_analytic_for_the_mean():
    x = wolff_configurations(16, 4000, seed=6)
    s = summary(x, n_boot=400, seed=1)
    e = energy_per_site(x)
    analytic = e.std() / math.sqrt(e.size)
    # relative s.e. of a bootstrap s.e. estimate with 400 replicates is ~ 1/sqrt(800) = 3.5 %
    assert s["e"]["se"] == pytest.approx(analytic, rel=0.15)


def test_two_monte_carlo_sets_pass():
    a = wolff_configurations(16, 4000, seed=11)
    b = wolff_configurations(16, 4000, seed=12)
    out = compare(a, b)
    assert out["passes"], out["failures"]
    assert set(out["scalars"]) == set(SCALARS)
    for h in out["histograms"].values():
        assert h["w1"] < h["w1_max"] and h["ks_pvalue"] > 1e-3
    # the pass rule includes a Hotelling test of every curve (tests/.../test_curves.py)
    assert set(out["curves"]) == set(CURVES)
    assert all(c["pvalue"] > 1e-3 for c in out["curves"].values())


def test_off_critical_monte_carlo_fails():
    a = wolff_configurations(16, 2000, seed=13, T=2.5)
    b = wolff_configurations(16, 2000, seed=14)
    out = compare(a, b)
    assert not out["passes"]
    assert abs(out["scalars"]["U"]["z"]) > 10
    assert abs(out["scalars"]["e"]["z"]) > 10
    assert any(f.startswith("e histogram") for f in out["failures"])


def test_binder_and_abs_m_against_reference():
    x = wolff_configurations(16, 20000, seed=15)
    s = summary(x, n_boot=200, seed=2)
    for key, (ref, ref_se) in (("U", MC_BINDER_16), ("abs_m", MC_ABS_M_16)):
        se = math.hypot(s[key]["se"], ref_se)
        assert abs(s[key]["value"] - ref) < 3 * se, (key, s[key], ref)


def test_compare_is_reproducible_and_antisymmetric():
    a = random_spins(30, 4, seed=7)
    b = random_spins(40, 4, seed=8)
    out1, out2 = compare(a, b, n_boot=30, seed=3), compare(a, b, n_boot=30, seed=3)
    assert out1 == out2
    rev = compare(b, a, n_boot=30, seed=3)
    assert rev["scalars"]["e"]["diff"] == -out1["scalars"]["e"]["diff"]


# ---------------------------------------------------------------- errors


test_errors = raises_test(
    [
        (
            lambda: two_point(np.ones((4, 4))),
            ValueError,
            r"two_point: expected configs of shape \(n, L, L\)",
        ),
        (lambda: two_point(np.ones((2, 4, 5))), ValueError, r"got \(2, 4, 5\)"),
        (
            lambda: summary(np.ones((1, 4, 4))),
            ValueError,
            r"summary: expected at least 2 configurations, got 1",
        ),
        (
            lambda: summary(np.full((2, 4, 4), np.nan)),
            ValueError,
            r"summary: expected finite configs, got 32 NaN or inf values \(the first at index \(0, 0, 0\)\)",
        ),
        (
            lambda: summary(np.ones((2, 4, 4)), n_boot=1),
            ValueError,
            "summary: expected n_boot >= 2, got 1",
        ),
        (
            lambda: summary(np.ones((2, 4, 4)), seed=1.5),
            TypeError,
            "summary: expected seed as an int, got 1.5",
        ),
        (
            lambda: block_binder(np.ones((2, 6, 6)), 4),
            ValueError,
            "block_binder: expected a block size b dividing L = 6, got 4",
        ),
        (
            lambda: four_point_connected(np.ones((2, 4, 4)), [4]),
            ValueError,
            r"expected every l in 1 .. 3, got 4",
        ),
        (
            lambda: compare(np.ones((2, 4, 4)), np.ones((2, 6, 6))),
            ValueError,
            "compare: expected a and b at the same L, got L = 4 and L = 6",
        ),
        (lambda: binarize(np.array(["a"])), TypeError, "binarize: expected a real numeric array"),
        (
            lambda: four_point_connected(np.ones((2, 4, 4)), [1.0]),
            TypeError,
            "four_point_connected: expected l as an int, got 1.0",
        ),
        (
            lambda: compare(np.ones((2, 4, 4)), np.ones((2, 4, 4)), seed=-1),
            ValueError,
            "compare: expected seed in \\[0, 9223372036854775807\\], got -1",
        ),
    ]
)


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    x = torch.ones(2, 4, 4)
    assert summary(x, n_boot=5)["e"]["value"] == -2.0
    assert binarize(torch.tensor([0.1, -0.9]))[0].tolist() == [1, -1]
