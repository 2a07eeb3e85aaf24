"""Tests for the Wolff Ising sampler, its observables, the disk cache and the exact energy.

Reference values are either computed by an independent route (transfer matrix vs Kaufman) or
quoted from docs/ising.rst, "Exact values to validate the sampler" (exact Ferdinand-Fisher
energies; Monte Carlo <|m|> and Binder U).
"""

import numpy as np
import pytest

import lineardiff.data.ising as ising_mod
from lineardiff.data import (
    T_C,
    default_spacing,
    energy_per_site,
    exact_energy_per_site,
    ising_dataset,
    magnetization,
    transfer_matrix_energy,
    wolff_configurations,
)

# docs/ising.rst, "Exact values to validate the sampler"
EXACT_ENERGY = {16: -1.4530648528, 32: -1.4336584661, 64: -1.4239383898, 128: -1.4190762721}
MC_ABS_M = {16: (0.7135, 0.0001), 32: (0.6544, 0.0002)}
MC_BINDER = {16: (0.61146, 0.00005), 32: (0.61094, 0.00010)}

N_BATCHES = 40


def batch_means(x: np.ndarray, batches: int = N_BATCHES) -> tuple[float, float]:
    """Mean and batch-means standard error over contiguous batches in chain order."""
    means = np.array([b.mean() for b in np.array_split(x, batches)])
    return float(x.mean()), float(means.std(ddof=1) / np.sqrt(batches))


def binder_jackknife(m: np.ndarray, batches: int = N_BATCHES) -> tuple[float, float]:
    """Binder cumulant and its leave-one-batch-out jackknife standard error."""
    parts = np.array_split(m, batches)
    m2 = np.array([np.sum(p**2) for p in parts])
    m4 = np.array([np.sum(p**4) for p in parts])
    sizes = np.array([len(p) for p in parts])

    def binder(s2, s4, count):
        return 1.0 - (s4 / count) / (3.0 * (s2 / count) ** 2)

    full = binder(m2.sum(), m4.sum(), sizes.sum())
    loo = binder(m2.sum() - m2, m4.sum() - m4, sizes.sum() - sizes)
    se = np.sqrt((batches - 1) / batches * np.sum((loo - loo.mean()) ** 2))
    return float(full), float(se)


@pytest.fixture(scope="module")
def critical16() -> np.ndarray:
    # ~0.7 s once compiled; batch-means s.e. of e is about 1.2e-3
    return wolff_configurations(16, 20_000, seed=0)


# ---------------------------------------------------------------------------------------------
# exact energy


@pytest.mark.parametrize("L", [4, 5, 6, 7, 8])
@pytest.mark.parametrize("T", [1.8, T_C, 3.0])
def test_kaufman_matches_transfer_matrix(L, T):
    # two independent exact routes; T on both sides of T_c exercises the sign of gamma_0
    assert abs(exact_energy_per_site(L, T) - transfer_matrix_energy(L, T)) < 1e-10


@pytest.mark.parametrize("L", sorted(EXACT_ENERGY))
def test_kaufman_matches_reference_table(L):
    assert abs(exact_energy_per_site(L) - EXACT_ENERGY[L]) < 1e-9


def test_exact_limits():
    # ground state e = -2 at low T, e -> 0 at high T; the infinite-lattice value is -sqrt 2
    assert abs(exact_energy_per_site(32, 0.2) + 2.0) < 1e-12
    assert abs(exact_energy_per_site(32, 1e4)) < 1e-3
    assert abs(exact_energy_per_site(512) + np.sqrt(2)) < 3e-3


@pytest.mark.parametrize(
    ("func", "args", "error", "match"),
    [
        (exact_energy_per_site, (1,), ValueError, r"exact_energy_per_site: expected L >= 2, got 1"),
        (
            exact_energy_per_site,
            (8, -1.0),
            ValueError,
            r"exact_energy_per_site: expected T in \(0, inf\), got -1.0",
        ),
        (exact_energy_per_site, (8.0,), TypeError, r"exact_energy_per_site: expected L as an int, got 8.0"),
        (exact_energy_per_site, (8, "2.2"), TypeError, r"expected T as a real number, got '2.2'"),
        (
            transfer_matrix_energy,
            (13,),
            ValueError,
            r"transfer_matrix_energy: expected L <= 12, got 13",
        ),
        (transfer_matrix_energy, (4, float("nan")), ValueError, r"transfer_matrix_energy: expected T in \(0, inf\), got nan"),
    ],
)
def test_exact_argument_errors(func, args, error, match):
    with pytest.raises(error, match=match):
        func(*args)


# ---------------------------------------------------------------------------------------------
# observables


def test_observables_on_known_configurations():
    up = np.ones((16, 16), np.int8)
    checker = np.where(np.add.outer(np.arange(16), np.arange(16)) % 2 == 0, 1, -1).astype(np.int8)
    # alternating rows: every horizontal bond satisfied, every vertical bond broken
    stripes = np.tile(np.array([[1], [-1]], np.int8), (8, 16))
    configs = np.stack([up, -up, checker, stripes])
    np.testing.assert_allclose(energy_per_site(configs), [-2.0, -2.0, 2.0, 0.0])
    np.testing.assert_allclose(magnetization(configs), [1.0, -1.0, 0.0, 0.0])
    assert energy_per_site(configs[None]).shape == (1, 4)


def test_energy_counts_wrap_around_bonds():
    # a single flipped spin breaks 4 bonds wherever it is, corners included (periodic lattice)
    for pos in [(0, 0), (0, 7), (7, 7), (3, 4)]:
        s = np.ones((8, 8), np.int8)
        s[pos] = -1
        assert energy_per_site(s) == pytest.approx(-2.0 + 8.0 / 64)


def test_observables_reject_non_square():
    with pytest.raises(
        ValueError,
        match=r"energy_per_site: expected configs of shape \(\.\.\., L, L\), got \(3, 4, 5\)",
    ):
        energy_per_site(np.ones((3, 4, 5)))
    with pytest.raises(ValueError, match=r"magnetization: expected configs"):
        magnetization(np.ones(4))


# ---------------------------------------------------------------------------------------------
# sampler statistics (fixed seeds; tolerances are 3 batch-means standard errors)


def test_energy_l16_matches_exact(critical16):
    e, se = batch_means(energy_per_site(critical16))
    assert 5e-4 < se < 3e-3  # the error estimate itself is sane (std(e) ~ 0.17, n = 20000)
    assert abs(e - EXACT_ENERGY[16]) < 3 * se, (e, se)


def test_energy_l32_matches_exact():
    x = wolff_configurations(32, 8_000, seed=1)
    e, se = batch_means(energy_per_site(x))
    assert abs(e - EXACT_ENERGY[32]) < 3 * se, (e, se)


def test_abs_magnetization_l16_matches_monte_carlo(critical16):
    m, se = batch_means(np.abs(magnetization(critical16)))
    ref, ref_se = MC_ABS_M[16]
    assert abs(m - ref) < 3 * np.hypot(se, ref_se), (m, se)


def test_binder_l16_matches_monte_carlo(critical16):
    u, se = binder_jackknife(magnetization(critical16))
    ref, ref_se = MC_BINDER[16]
    assert abs(u - ref) < 3 * np.hypot(se, ref_se), (u, se)


def test_signed_magnetization_is_zero(critical16):
    m, se = batch_means(magnetization(critical16))
    assert abs(m) < 3 * se, (m, se)


def test_temperature_argument_moves_the_ensemble():
    cold = wolff_configurations(16, 200, T=1.0, thermalize_sweeps=50)
    hot = wolff_configurations(16, 200, T=20.0, thermalize_sweeps=50)
    # exact energies at these temperatures: about -1.997 and -0.10
    assert energy_per_site(cold).mean() == pytest.approx(exact_energy_per_site(16, 1.0), abs=0.01)
    assert energy_per_site(hot).mean() == pytest.approx(exact_energy_per_site(16, 20.0), abs=0.02)


@pytest.mark.slow
@pytest.mark.parametrize(("L", "n"), [(32, 100_000), (64, 40_000)])
def test_large_runs_match_exact_and_monte_carlo(L, n):
    x = wolff_configurations(L, n, seed=7)
    e, se = batch_means(energy_per_site(x))
    assert abs(e - EXACT_ENERGY[L]) < 3 * se, (e, se)
    if L in MC_BINDER:
        u, use = binder_jackknife(magnetization(x))
        assert abs(u - MC_BINDER[L][0]) < 3 * np.hypot(use, MC_BINDER[L][1]), (u, use)
        m, mse = batch_means(np.abs(magnetization(x)))
        assert abs(m - MC_ABS_M[L][0]) < 3 * np.hypot(mse, MC_ABS_M[L][1]), (m, mse)


# ---------------------------------------------------------------------------------------------
# determinism and options


def test_output_format():
    x = wolff_configurations(12, 13, seed=3, chains=5, thermalize_sweeps=10)
    assert x.shape == (13, 12, 12) and x.dtype == np.int8
    assert np.all(np.abs(x) == 1)


def test_reproducible_and_seed_dependent():
    a = wolff_configurations(10, 40, seed=5, thermalize_sweeps=20)
    b = wolff_configurations(10, 40, seed=5, thermalize_sweeps=20)
    c = wolff_configurations(10, 40, seed=6, thermalize_sweeps=20)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_chains_are_independent_blocks():
    # n = 8 over 3 chains: blocks of 3, 3, 2; chain c's block does not depend on n
    x = wolff_configurations(8, 8, seed=2, chains=3, thermalize_sweeps=5)
    y = wolff_configurations(8, 7, seed=2, chains=3, thermalize_sweeps=5)
    np.testing.assert_array_equal(x[:2], y[:2])
    assert not np.array_equal(x[:3], x[3:6])


def test_more_chains_than_configurations():
    x = wolff_configurations(8, 2, chains=6, thermalize_sweeps=5)
    assert x.shape == (2, 8, 8)


def test_default_spacing():
    assert [default_spacing(L) for L in (16, 32, 64, 128)] == [10, 15, 22, 30]
    assert default_spacing(2) >= 1
    assert default_spacing(24) == round(10 * 1.5**0.57)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"L": 1}, ValueError, r"wolff_configurations: expected L >= 2, got 1"),
        ({"n": 0}, ValueError, r"wolff_configurations: expected n >= 1, got 0"),
        ({"seed": -1}, ValueError, r"wolff_configurations: expected seed in \[0, 9223372036854775807\], got -1"),
        ({"chains": 0}, ValueError, r"wolff_configurations: expected chains >= 1, got 0"),
        ({"thermalize_sweeps": -1}, ValueError, r"expected thermalize_sweeps >= 0, got -1"),
        ({"spacing": 0}, ValueError, r"wolff_configurations: expected spacing >= 1, got 0"),
        ({"T": 0.0}, ValueError, r"wolff_configurations: expected T in \(0, inf\), got 0.0"),
        ({"T": float("inf")}, ValueError, r"expected T in \(0, inf\), got inf"),
        ({"T": "hot"}, TypeError, r"wolff_configurations: expected T as a real number, got 'hot'"),
        ({"L": 8.0}, TypeError, r"wolff_configurations: expected L as an int, got 8.0"),
        ({"n": True}, TypeError, r"wolff_configurations: expected n as an int, got True"),
    ],
)
def test_argument_errors(kwargs, error, match):
    args = {"L": 8, "n": 4} | kwargs
    L, n = args.pop("L"), args.pop("n")
    with pytest.raises(error, match=match):
        wolff_configurations(L, n, **args)


# ---------------------------------------------------------------------------------------------
# disk cache


def _cached_files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_cache_round_trip(tmp_path, monkeypatch):
    x = ising_dataset(8, 20, seed=4, cache_dir=tmp_path)
    np.testing.assert_array_equal(x, wolff_configurations(8, 20, seed=4))
    name = f"ising_L8_n20_seed4_v{ising_mod.SAMPLER_VERSION}.npy"
    assert _cached_files(tmp_path) == [name]

    def no_sampling(*args, **kwargs):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(ising_mod, "wolff_configurations", no_sampling)
    np.testing.assert_array_equal(ising_dataset(8, 20, seed=4, cache_dir=tmp_path), x)
    with pytest.raises(AssertionError, match="cache"):
        ising_dataset(8, 20, seed=5, cache_dir=tmp_path)  # a different key is not a hit


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LINEARDIFF_CACHE", str(tmp_path))
    ising_dataset(6, 3)
    assert _cached_files(tmp_path / "ising") == [
        f"ising_L6_n3_seed0_v{ising_mod.SAMPLER_VERSION}.npy"
    ]


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / f"ising_L8_n5_seed0_v{ising_mod.SAMPLER_VERSION}.npy"
    real_replace = ising_mod.os.replace
    seen = {}

    def checking_replace(src, dst):
        # at the moment of the rename, the final name does not exist yet and the temporary file
        # in the same folder is already complete
        seen["target_existed"] = target.exists()
        seen["same_folder"] = str(src).startswith(str(tmp_path))
        seen["complete"] = np.load(src).shape == (5, 8, 8)
        real_replace(src, dst)

    monkeypatch.setattr(ising_mod.os, "replace", checking_replace)
    ising_dataset(8, 5, cache_dir=tmp_path)
    assert seen == {"target_existed": False, "same_folder": True, "complete": True}
    assert _cached_files(tmp_path) == [target.name]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(ising_mod.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        ising_dataset(8, 5, cache_dir=tmp_path)
    assert _cached_files(tmp_path) == []


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda path: path.write_bytes(b"\x93NUMPY truncated"),
        lambda path: np.save(path, np.ones((4, 8, 8), np.int8)),  # wrong n
        lambda path: np.save(path, np.zeros((5, 8, 8), np.int8)),  # not +-1
        lambda path: np.save(path, np.ones((5, 8, 8), np.float32)),  # wrong dtype
    ],
)
def test_corrupt_cache_is_regenerated(tmp_path, corrupt):
    path = tmp_path / f"ising_L8_n5_seed0_v{ising_mod.SAMPLER_VERSION}.npy"
    corrupt(path)
    with pytest.warns(RuntimeWarning, match="is invalid .* regenerating it"):
        x = ising_dataset(8, 5, cache_dir=tmp_path)
    expected = wolff_configurations(8, 5)
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(np.load(path), expected)


def test_dataset_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"ising_dataset: expected L >= 2, got 0"):
        ising_dataset(0, 5, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"ising_dataset: expected seed in \[0, 9223372036854775807\], got -3"):
        ising_dataset(8, 5, seed=-3, cache_dir=tmp_path)


def test_observables_refuse_occupation_numbers():
    from lineardiff.data import energy_per_site, magnetization

    ones = np.ones((2, 4, 4))
    ones[0, 1, 2] = 0.0  # a 0/1 lattice: passes as spins only by mistake
    for f in (energy_per_site, magnetization):
        with pytest.raises(ValueError, match=r"map them to spins with 2 \* x - 1"):
            f(ones)
    assert energy_per_site(np.ones((1, 4, 4)))[0] == -2.0  # the ground state is accepted
