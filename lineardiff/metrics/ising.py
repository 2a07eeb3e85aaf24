"""Observables of 2-D Ising configurations and a bootstrap comparison against Monte Carlo.

Definitions, reference values and the pass rule follow ``docs/ising.rst``. Every observable wraps
around the torus. Configurations are arrays of shape ``(n, L, L)``; real-valued model outputs are
binarised with ``sign`` (ties to +1) on the way in, so every function also accepts them directly.
Data that is neither spins +-1 nor real values around 0 is refused with a :class:`ValueError`:
0/1 lattices (map them with ``2 * x - 1``), non-negative data with zeros, NaN and inf.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import stats as _stats

from .._checks import check_int, check_seed, check_spin_values
from ..data import T_C, energy_per_site, magnetization
from ._curves import CURVES, check_curves, compare_curves
from ._lattice import as_numeric, as_spins, min_image_radius

__all__ = [
    "CURVES",
    "SCALARS",
    "binarize",
    "block_binder",
    "compare",
    "four_point_connected",
    "radial_correlation",
    "seam_energy",
    "structure_factor",
    "summary",
    "two_point",
]

#: Names of the scalars returned by :func:`summary` and compared by :func:`compare`.
SCALARS = ("e", "abs_m", "m", "m2", "m4", "U", "chi", "C", "seam")

# docs/ising.rst, "Comparing a sample set with Monte Carlo": thresholds at n = 10,000 vs 10,000.
_Z_MAX = 3.5
_W1_MAX = {"e": 0.005, "abs_m": 0.008}
_W1_REFERENCE_N = 10_000

# Bound on the number of gathered elements per bootstrap chunk (memory, not accuracy).
_BOOT_CHUNK_ELEMENTS = 1 << 22


def binarize(x) -> tuple[np.ndarray, float]:
    """Binarise model outputs with ``sign`` (ties to +1) and measure how sharp they were.

    Parameters
    ----------
    x : array_like or Tensor, shape (\\*batch,)
        Real values around 0, e.g. generated configurations of shape ``(n, L, L)``. NaN, inf
        and 0/1 data (no negative value, some zeros) are refused: map 0/1 data with
        ``2 * x - 1``.

    Returns
    -------
    spins : numpy.ndarray, same shape as ``x``, int8
        ``+1`` where ``x >= 0``, ``-1`` elsewhere.
    fraction_soft : float
        Fraction of entries with ``|x| < 0.5``: a sharpness diagnostic (0 for clean +-1 outputs).

    Examples
    --------
    >>> s, soft = binarize(np.array([0.9, -0.2, 0.0, -1.1]))
    >>> s.tolist(), soft
    ([1, -1, 1, -1], 0.5)
    """
    a = check_spin_values("binarize", "x", as_numeric("binarize", x))
    spins = np.where(a >= 0, 1, -1).astype(np.int8)
    soft = float(np.mean(np.abs(a) < 0.5)) if a.size else 0.0
    return spins, soft


def two_point(configs) -> np.ndarray:
    """Two-point function ``C2(d) = <(1/N) sum_x s(x) s(x + d)>`` on the torus, via FFT.

    Parameters
    ----------
    configs : array_like, shape (n, L, L)
        Spins +-1 or real values around 0 (binarised with ``sign``; 0/1 data is refused).

    Returns
    -------
    numpy.ndarray, shape (L, L), float64
        ``C2[d0, d1]`` for the displacement ``d = (d0, d1)`` along axes ``(-2, -1)``, averaged over
        configurations; ``C2[0, 0] = 1``.

    Notes
    -----
    ``sum_x s(x) s(x + d) = IFFT(|FFT s|^2)(d)`` (Wiener-Khinchin); the power spectrum is averaged
    over configurations before the single inverse transform.

    Examples
    --------
    >>> c = two_point(np.ones((2, 4, 4)))
    >>> bool(np.allclose(c, 1.0))
    True
    """
    s = as_spins("two_point", configs)
    L = s.shape[-1]
    power = np.abs(np.fft.rfft2(s)) ** 2
    return np.fft.irfft2(power.mean(axis=0), s=(L, L)) / (L * L)


def _radial_bins(values: np.ndarray, radius: np.ndarray, rmax: int, rmin: int) -> np.ndarray:
    r = np.arange(rmin, rmax + 1)
    out = np.full(r.shape, np.nan)
    for i, ri in enumerate(r):
        mask = (radius >= ri - 0.5) & (radius < ri + 0.5)
        if mask.any():
            out[i] = values[mask].mean()
    return out


def radial_correlation(configs) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged two-point function ``G(r)``, r = 1 .. L // 2.

    Parameters
    ----------
    configs : array_like, shape (n, L, L)
        Spins +-1 or real values around 0 (binarised with ``sign``; 0/1 data is refused).

    Returns
    -------
    r : numpy.ndarray, shape (L // 2,), int
    G : numpy.ndarray, shape (L // 2,), float64
        Mean of ``C2(d)`` over the displacements with minimum-image ``|d|`` in
        ``[r - 1/2, r + 1/2)``.

    Examples
    --------
    >>> r, g = radial_correlation(np.ones((1, 8, 8)))
    >>> r.tolist(), bool(np.allclose(g, 1.0))
    ([1, 2, 3, 4], True)
    """
    s = as_spins("radial_correlation", configs)
    L = s.shape[-1]
    c2 = two_point(s)
    r = np.arange(1, L // 2 + 1)
    return r, _radial_bins(c2, min_image_radius(L), L // 2, 1)


def structure_factor(configs) -> tuple[np.ndarray, np.ndarray]:
    """Radially binned structure factor ``S(k) = <|sum_x s(x) exp(-i k.x)|^2> / N``.

    Parameters
    ----------
    configs : array_like, shape (n, L, L)
        Spins +-1 or real values around 0 (binarised with ``sign``; 0/1 data is refused).

    Returns
    -------
    k : numpy.ndarray, shape (L // 2 + 1,), float64
        ``2 pi j / L`` for j = 0 .. L // 2.
    S : numpy.ndarray, shape (L // 2 + 1,), float64
        Mean of ``S(q)`` over the lattice wave vectors ``q = 2 pi (j0, j1) / L`` (minimum image)
        with ``|(j0, j1)|`` in ``[j - 1/2, j + 1/2)``. ``S(0) = N <m^2>`` is the susceptibility.

    Examples
    --------
    >>> k, S = structure_factor(np.ones((1, 4, 4)))
    >>> S.tolist()
    [16.0, 0.0, 0.0]
    """
    s = as_spins("structure_factor", configs)
    L = s.shape[-1]
    power = (np.abs(np.fft.fft2(s)) ** 2).mean(axis=0) / (L * L)
    j = np.arange(L // 2 + 1)
    return 2 * np.pi * j / L, _radial_bins(power, min_image_radius(L), L // 2, 0)


def _shift_mean(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a * b))


def four_point_connected(configs, ls) -> np.ndarray:
    """SKILD's connected four-point function over the corners of ``l x l`` squares.

    Parameters
    ----------
    configs : array_like, shape (n, L, L)
        Spins +-1 or real values around 0 (binarised with ``sign``; 0/1 data is refused).
    ls : int or sequence of int
        Square sides, each in ``1 .. L - 1``.

    Returns
    -------
    numpy.ndarray, shape (len(ls),), float64

    Notes
    -----
    With corners ``a = x``, ``b = x + l e1``, ``c = x + l (e1 + e2)``, ``d = x + l e2``,
    ``G4c(l) = <s_a s_b s_c s_d> - <s_a s_b><s_c s_d> - <s_a s_d><s_b s_c> - <s_a s_c><s_b s_d>``
    where every expectation is averaged over positions ``x`` and configurations (docs/ising.rst).
    For a fully ordered lattice every moment is 1, so ``G4c = -2``.

    Examples
    --------
    >>> four_point_connected(np.ones((1, 4, 4)), [1, 2]).tolist()
    [-2.0, -2.0]
    """
    where = "four_point_connected"
    s = as_spins(where, configs)
    L = s.shape[-1]
    ls_list = [ls] if isinstance(ls, numbers.Integral) else list(ls)
    out = np.empty(len(ls_list))
    for i, l in enumerate(ls_list):
        l = check_int(where, "l", l, 1)
        if l >= L:
            raise ValueError(f"{where}: expected every l in 1 .. {L - 1}, got {l}")
        a = s
        b = np.roll(s, -l, axis=-1)
        d = np.roll(s, -l, axis=-2)
        c = np.roll(b, -l, axis=-2)
        four = float(np.mean(a * b * c * d))
        ab, cd = _shift_mean(a, b), _shift_mean(c, d)
        ad, bc = _shift_mean(a, d), _shift_mean(b, c)
        ac, bd = _shift_mean(a, c), _shift_mean(b, d)
        out[i] = four - ab * cd - ad * bc - ac * bd
    return out


def block_binder(configs, b: int) -> float:
    """Multiscale Binder cumulant ``U_b`` of ``b x b`` block spins.

    Parameters
    ----------
    configs : array_like, shape (n, L, L)
        Spins +-1 or real values around 0 (binarised with ``sign``; 0/1 data is refused).
    b : int
        Block side; must divide ``L``. ``b = L`` gives the ordinary Binder cumulant.

    Returns
    -------
    float
        ``1 - <m_B^4> / (3 <m_B^2>^2)`` with ``m_B`` the block mean (block sum / b^2), averaged
        over all blocks and configurations; NaN when every block sums to zero.

    Examples
    --------
    >>> round(block_binder(np.ones((3, 8, 8)), 2), 6)
    0.666667
    """
    where = "block_binder"
    s = as_spins(where, configs)
    L = s.shape[-1]
    b = check_int(where, "b", b, 1)
    if L % b:
        raise ValueError(f"{where}: expected a block size b dividing L = {L}, got {b}")
    n = s.shape[0]
    mb = s.reshape(n, L // b, b, L // b, b).mean(axis=(2, 4))
    m2 = np.mean(mb**2)
    m4 = np.mean(mb**4)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(1.0 - m4 / (3.0 * m2**2))


def seam_energy(configs) -> np.ndarray:
    """Energy per bond of the wrap-around bonds only, per configuration.

    Parameters
    ----------
    configs : array_like, shape (n, L, L)
        Spins +-1 or real values around 0 (binarised with ``sign``; 0/1 data is refused).

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        ``-(1/2L) [sum_y s(y, L-1) s(y, 0) + sum_x s(L-1, x) s(0, x)]``. On a translation-invariant
        ensemble its mean is ``<e> / 2`` (two bonds per site); a network with zero padding shows a
        different value here.

    Examples
    --------
    >>> x = np.ones((1, 4, 4)); x[0, :, 0] = -1  # two vertical domain walls, one on the seam
    >>> seam_energy(x).tolist()
    [0.0]
    """
    s = as_spins("seam_energy", configs)
    horizontal = s[:, :, -1] * s[:, :, 0]
    vertical = s[:, -1, :] * s[:, 0, :]
    # 0.0 - x maps the -0.0 of a half-broken seam to 0.0
    return 0.0 - (horizontal.sum(axis=-1) + vertical.sum(axis=-1)) / (2 * s.shape[-1])


def _per_config(where: str, configs, min_n: int) -> dict[str, np.ndarray | int]:
    s = as_spins(where, configs, min_n=min_n)
    return {
        "e": energy_per_site(s),
        "m": magnetization(s),
        "seam": seam_energy(s),
        "N": s.shape[-1] ** 2,
    }


def _scalars(e: np.ndarray, m: np.ndarray, seam: np.ndarray, N: int) -> dict[str, np.ndarray]:
    """The summary scalars, reduced over the last axis (so bootstrap replicates vectorise)."""
    m2 = np.mean(m**2, axis=-1)
    m4 = np.mean(m**4, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        U = 1.0 - m4 / (3.0 * m2**2)
    return {
        "e": np.mean(e, axis=-1),
        "abs_m": np.mean(np.abs(m), axis=-1),
        "m": np.mean(m, axis=-1),
        "m2": m2,
        "m4": m4,
        "U": U,
        "chi": N * m2,
        "C": N * np.var(e, axis=-1) / T_C**2,
        "seam": np.mean(seam, axis=-1),
    }


def _bootstrap(obs: dict, n_boot: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Bootstrap replicates (resampling whole configurations) of every scalar, shape (n_boot,)."""
    n = obs["e"].shape[0]
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // n)
    parts = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        parts.append(_scalars(obs["e"][idx], obs["m"][idx], obs["seam"][idx], obs["N"]))
    return {k: np.concatenate([p[k] for p in parts]) for k in SCALARS}


def summary(configs, *, n_boot: int = 200, seed: int = 0) -> dict[str, dict[str, float]]:
    """Scalar Ising observables with bootstrap standard errors.

    Parameters
    ----------
    configs : array_like, shape (n, L, L)
        ``n >= 2`` configurations: spins +-1 or real values around 0 (binarised with
        ``sign``; 0/1 data is refused).
    n_boot : int, optional
        Bootstrap replicates (resampling configurations with replacement).
    seed : int, optional
        Seed of the bootstrap's ``numpy.random.default_rng``.

    Returns
    -------
    dict
        For each name in :data:`SCALARS` a dict ``{"value": float, "se": float}``: ``e`` (energy
        per site), ``abs_m`` (``<|m|>``), ``m`` (signed ``<m>``, 0 by symmetry), ``m2``, ``m4``,
        ``U`` (Binder ``1 - <m^4> / (3 <m^2>^2)``), ``chi`` (``N <m^2>``), ``C``
        (``K_c^2 N (<e^2> - <e>^2)`` with ``K_c = 1 / T_c``) and ``seam`` (:func:`seam_energy`).

    Raises
    ------
    ValueError
        For a wrong shape, fewer than 2 configurations, NaN or inf (naming the count and the
        first index), or data that is neither spins +-1 nor real values around 0: a 0/1
        lattice would read as all up (``|m| = 1``), so it is refused; map it with ``2 * x - 1``.

    Notes
    -----
    ``value`` is the estimate on the full sample; ``se`` is the standard deviation of the bootstrap
    replicates. Configurations are treated as independent (the Monte Carlo sets are saved at
    spacings well beyond the autocorrelation time, docs/ising.rst).

    Examples
    --------
    >>> out = summary(np.ones((10, 4, 4)), n_boot=20)
    >>> out["e"], out["U"]["value"]
    ({'value': -2.0, 'se': 0.0}, 0.6666666666666667)
    """
    where = "summary"
    n_boot = check_int(where, "n_boot", n_boot, 2)
    seed = check_seed(where, "seed", seed)
    obs = _per_config(where, configs, min_n=2)
    value = _scalars(obs["e"], obs["m"], obs["seam"], obs["N"])
    reps = _bootstrap(obs, n_boot, np.random.default_rng(seed))
    return {k: {"value": float(value[k]), "se": float(np.std(reps[k], ddof=1))} for k in SCALARS}


def compare(a, b, *, n_boot: int = 200, seed: int = 0, curves=CURVES) -> dict:
    """Compare two sets of configurations (e.g. model samples vs Monte Carlo) at the same L.

    Parameters
    ----------
    a, b : array_like, shape (n_a, L, L) and (n_b, L, L)
        Spins +-1 or real values around 0 (binarised with ``sign``; 0/1 data is refused);
        at least 2 configurations each.
    n_boot : int, optional
        Bootstrap replicates; ``a`` and ``b`` are resampled independently.
    seed : int, optional
        Root seed; ``a`` and ``b`` get independent children of ``SeedSequence(seed)``.
    curves : sequence of str, optional
        Curves to test (names from ``CURVES``); ``()`` skips the curve tests.

    Returns
    -------
    dict
        ``"scalars"``: for each name in :data:`SCALARS` a dict with ``a``, ``b``, ``diff``
        (``a - b``), ``se`` (bootstrap s.e. of the difference) and ``z`` (``diff / se``; 0 when both
        are 0, inf when only ``se`` is).
        ``"histograms"``: for ``"e"`` and ``"abs_m"`` a dict with ``w1`` (Wasserstein-1),
        ``w1_max`` (its threshold), ``ks`` and ``ks_pvalue`` (two-sample Kolmogorov-Smirnov).
        ``"curves"``: for each requested curve a dict with ``x`` (abscissa), ``diff`` and ``se``
        (lists), ``chi2``, ``dof`` and ``pvalue`` (covariance-aware Hotelling test,
        :func:`hotelling`) and ``max_dev`` (largest pointwise ``|diff| / se``).
        ``"passes"``: bool; ``"failures"``: list of readable reasons (empty when it passes).

    Notes
    -----
    Pass rule of docs/ising.rst: every scalar ``|z| < 3.5``; ``W1(e) < 0.005`` and
    ``W1(|m|) < 0.008``, thresholds set at L = 32 for 10,000 vs 10,000 and scaled by
    ``sqrt(10000 / n)`` with ``n = 2 / (1 / n_a + 1 / n_b)`` (the noise of a difference scales with
    ``sqrt(1/n_a + 1/n_b)``). The L = 32 thresholds are applied at every L. Every curve needs a
    Hotelling p-value ``> 1e-3`` (a p-value needs no scaling with ``n``); its covariance comes
    from per-configuration influence functions, not the bootstrap.

    Examples
    --------
    >>> x = np.ones((10, 4, 4))
    >>> out = compare(x, x, n_boot=20)
    >>> out["passes"], out["scalars"]["e"]["z"], out["curves"]["G"]["pvalue"]
    (True, 0.0, 1.0)
    """
    where = "compare"
    n_boot = check_int(where, "n_boot", n_boot, 2)
    seed = check_seed(where, "seed", seed)
    curves = check_curves(where, curves)
    s_a = as_spins(f"{where} (a)", a, min_n=2)
    s_b = as_spins(f"{where} (b)", b, min_n=2)
    obs_a = _per_config(where, s_a, min_n=2)
    obs_b = _per_config(where, s_b, min_n=2)
    if obs_a["N"] != obs_b["N"]:
        La, Lb = math.isqrt(obs_a["N"]), math.isqrt(obs_b["N"])
        raise ValueError(f"{where}: expected a and b at the same L, got L = {La} and L = {Lb}")
    seq_a, seq_b = np.random.SeedSequence(seed).spawn(2)
    val_a = _scalars(obs_a["e"], obs_a["m"], obs_a["seam"], obs_a["N"])
    val_b = _scalars(obs_b["e"], obs_b["m"], obs_b["seam"], obs_b["N"])
    rep_a = _bootstrap(obs_a, n_boot, np.random.default_rng(seq_a))
    rep_b = _bootstrap(obs_b, n_boot, np.random.default_rng(seq_b))

    failures = []
    scalars = {}
    for k in SCALARS:
        diff = float(val_a[k] - val_b[k])
        se = float(np.std(rep_a[k] - rep_b[k], ddof=1))
        if se > 0:
            z = diff / se
        else:
            z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        scalars[k] = {"a": float(val_a[k]), "b": float(val_b[k]), "diff": diff, "se": se, "z": z}
        if not abs(z) < _Z_MAX:  # NaN (e.g. undefined U) fails too
            failures.append(f"{k}: |z| = {abs(z):.2f}, expected < {_Z_MAX}")

    n_a, n_b = obs_a["e"].shape[0], obs_b["e"].shape[0]
    n_eff = 2.0 / (1.0 / n_a + 1.0 / n_b)
    scale = math.sqrt(_W1_REFERENCE_N / n_eff)
    histograms = {}
    for k, xa, xb in (
        ("e", obs_a["e"], obs_b["e"]),
        ("abs_m", np.abs(obs_a["m"]), np.abs(obs_b["m"])),
    ):
        w1 = float(_stats.wasserstein_distance(xa, xb))
        ks = _stats.ks_2samp(xa, xb)
        w1_max = _W1_MAX[k] * scale
        histograms[k] = {
            "w1": w1,
            "w1_max": w1_max,
            "ks": float(ks.statistic),
            "ks_pvalue": float(ks.pvalue),
        }
        if not w1 < w1_max:
            failures.append(f"{k} histogram: W1 = {w1:.4g}, expected < {w1_max:.4g}")
    curve_entry, curve_failures = compare_curves(s_a, s_b, curves)
    failures += curve_failures
    return {
        "scalars": scalars,
        "histograms": histograms,
        "curves": curve_entry,
        "passes": not failures,
        "failures": failures,
    }
