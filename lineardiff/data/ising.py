"""Critical 2-D Ising configurations from a Wolff cluster sampler, with an on-disk cache.

The embedded, download-free benchmark data set (see ``docs/ising.rst``): ``L x L`` periodic
lattice, spins +-1, J = 1, at the critical temperature ``T_C = 2 / ln(1 + sqrt 2)`` by default.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from pathlib import Path

import numba
import numpy as np

from .._checks import check_int, check_real, check_seed, check_spin_values
from ._exact import T_C

__all__ = [
    "SAMPLER_VERSION",
    "T_C",
    "default_spacing",
    "energy_per_site",
    "ising_dataset",
    "magnetization",
    "wolff_configurations",
]

#: Bump whenever the sampler's output for a given (L, n, seed) changes: it keys the disk cache.
SAMPLER_VERSION = 1

# Cluster flips between saved configurations, from the integrated autocorrelation of the energy
# (2.6 / 3.9 / 5.8 / 8.0 flips at L = 16 / 32 / 64 / 128, docs/ising.rst): about 4 tau_int.
_SPACING = {16: 10, 32: 15, 64: 22, 128: 30}


def default_spacing(L: int) -> int:
    """Default number of Wolff cluster flips between saved configurations at size ``L``.

    10 / 15 / 22 / 30 at ``L`` = 16 / 32 / 64 / 128, otherwise ``round(10 (L/16)^0.57)`` (the
    power law through those values), at least 1.

    Examples
    --------
    >>> [default_spacing(L) for L in (8, 16, 32, 48, 128)]
    [7, 10, 15, 19, 30]
    """
    L = check_int("default_spacing", "L", L, 2)
    if L in _SPACING:
        return _SPACING[L]
    return max(1, round(10 * (L / 16) ** 0.57))


_U = np.uint64


@numba.njit(cache=False, inline="always")
def _rotl(x, k):  # pragma: no cover - compiled
    return (x << _U(k)) | (x >> _U(64 - k))


@numba.njit(cache=False, inline="always")
def _next(s0, s1, s2, s3):  # pragma: no cover - compiled
    """xoshiro256** (Blackman and Vigna 2018): ``(draw, *new_state)``.

    Hand-inlined with the state in registers instead of ``np.random``: the draw is the inner
    loop's cost.
    """
    result = _rotl(s1 * _U(5), 7) * _U(9)
    t = s1 << _U(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return result, s0, s1, s2, s3


@numba.njit(cache=False)
def _wolff_chain(L, threshold, state, thermal_sites, n_save, spacing):  # pragma: no cover
    """One Wolff chain: hot start, thermalise, then save every ``spacing`` cluster flips.

    A neighbour joins the cluster when it is aligned and a uniform 64-bit draw is below
    ``threshold`` (``p_add * 2^64``); a random site is ``(draw >> 32) * N >> 32`` (Lemire's
    multiply-shift). The join test is branchless (a draw for every neighbour, a stack write that
    only counts on a join): the random branch mispredicted half the time and cost twice as much.
    """
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    N = L * L
    nbr = np.empty(4 * N, np.int32)
    for r in range(L):
        for c in range(L):
            x = 4 * (r * L + c)
            nbr[x] = ((r - 1) % L) * L + c
            nbr[x + 1] = ((r + 1) % L) * L + c
            nbr[x + 2] = r * L + (c - 1) % L
            nbr[x + 3] = r * L + (c + 1) % L
    spins = np.empty(N, np.int8)
    for i in range(N):
        draw, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
        spins[i] = 1 if (draw >> _U(63)) == _U(0) else -1
    # at most N - 1 sites wait on the stack when one is written (N pushed, at least one popped)
    stack = np.empty(N, np.int32)
    out = np.empty((n_save, N), np.int8)
    n_u = _U(N)

    flipped = 0
    saved = 0
    since = 0
    # the loop ends after thermalisation once n_save configurations are stored
    while saved < n_save or flipped < thermal_sites:
        # one cluster flip; spins are flipped as they join, so no visited mask is needed
        draw, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
        site = np.int64(((draw >> _U(32)) * n_u) >> _U(32))
        old = spins[site]
        spins[site] = -old
        stack[0] = site
        top = 1
        size = 1
        while top > 0:
            top -= 1
            x = 4 * stack[top]
            for j in range(4):
                y = nbr[x + j]
                draw, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
                sy = spins[y]
                join = np.int64((sy == old) & (draw < threshold))
                spins[y] = sy - 2 * join * sy
                stack[top] = y
                top += join
                size += join
        if flipped < thermal_sites:
            flipped += size
            continue
        since += 1
        if since == spacing:
            since = 0
            out[saved, :] = spins
            saved += 1
    return out


def wolff_configurations(
    L: int,
    n: int,
    *,
    seed: int = 0,
    chains: int = 4,
    T: float | None = None,
    thermalize_sweeps: int = 500,
    spacing: int | None = None,
) -> np.ndarray:
    """Sample ``n`` Ising configurations on the ``L x L`` torus with Wolff cluster updates.

    Parameters
    ----------
    L : int
        Linear lattice size, ``L >= 2``.
    n : int
        Number of configurations, ``n >= 1``.
    seed : int, optional
        Non-negative root seed; each chain gets a child of ``numpy.random.SeedSequence(seed)``.
    chains : int, optional
        Number of independent chains (each thermalised separately), ``chains >= 1``.
    T : float, optional
        Temperature; ``None`` means the critical temperature :data:`T_C`.
    thermalize_sweeps : int, optional
        Thermalisation length per chain in sweeps; a sweep is cluster flips totalling ``L^2``
        flipped sites.
    spacing : int, optional
        Cluster flips between saved configurations; ``None`` means :func:`default_spacing`.

    Returns
    -------
    numpy.ndarray, shape (n, L, L), dtype int8
        Spins +-1. Chain ``c`` contributes a contiguous block of ``n // chains`` configurations
        (one more for the first ``n % chains`` chains) in its time order; blocks are concatenated
        in chain order, so the result depends only on the arguments.

    Notes
    -----
    Wolff, Phys. Rev. Lett. 62, 361 (1989): grow a cluster from a random site, adding each
    aligned neighbour with probability ``1 - exp(-2 J / T)``, and flip it. Periodic boundaries,
    J = 1. The cluster is grown with an explicit stack in a numba-compiled loop; the first call in
    a process compiles it (about a second).

    Examples
    --------
    >>> x = wolff_configurations(8, 3, seed=1)
    >>> x.shape, x.dtype
    ((3, 8, 8), dtype('int8'))
    >>> bool(np.all(np.abs(x) == 1))
    True
    """
    where = "wolff_configurations"
    L = check_int(where, "L", L, 2)
    n = check_int(where, "n", n, 1)
    seed = check_seed(where, "seed", seed)
    chains = check_int(where, "chains", chains, 1)
    thermalize_sweeps = check_int(where, "thermalize_sweeps", thermalize_sweeps, 0)
    spacing = default_spacing(L) if spacing is None else check_int(where, "spacing", spacing, 1)
    T = T_C if T is None else check_real(where, "T", T, low=0)

    p_add = -math.expm1(-2.0 / T)
    # p_add * 2^64 as an integer threshold; p_add < 1 for T > 0 but may round to 2^64 in float
    threshold = np.uint64(min(math.ldexp(p_add, 64), 2.0**64 - 2048))
    counts = [n // chains + (c < n % chains) for c in range(chains)]
    children = np.random.SeedSequence(seed).spawn(chains)
    blocks = []
    for count, child in zip(counts, children, strict=True):
        if count == 0:
            continue
        state = child.generate_state(4, np.uint64)
        state[0] |= np.uint64(1)  # xoshiro's state must not be all zero
        sites = thermalize_sweeps * L * L
        blocks.append(_wolff_chain(L, threshold, state, sites, count, spacing))
    return np.concatenate(blocks).reshape(n, L, L)


def _check_configs(where: str, configs) -> np.ndarray:
    configs = np.asarray(configs)
    kind = configs.dtype
    if not any(np.issubdtype(kind, k) for k in (np.floating, np.integer, np.bool_)):
        raise TypeError(f"{where}: expected configs as a real numeric array, got dtype {kind}")
    if configs.ndim < 2 or configs.shape[-1] != configs.shape[-2]:
        raise ValueError(f"{where}: expected configs of shape (..., L, L), got {configs.shape}")
    return check_spin_values(where, "configs", configs)


def energy_per_site(configs) -> np.ndarray:
    """Energy per site ``-(1/N) sum_x s(x) [s(x + e1) + s(x + e2)]`` on the torus.

    Parameters
    ----------
    configs : array_like, shape (\\*batch, L, L)
        Spins +-1 (any real dtype).

    Returns
    -------
    numpy.ndarray, shape (\\*batch,), float64

    Examples
    --------
    >>> float(energy_per_site(np.ones((4, 4))))
    -2.0
    """
    s = _check_configs("energy_per_site", configs).astype(np.float64)
    bonds = s * (np.roll(s, -1, axis=-1) + np.roll(s, -1, axis=-2))
    return -bonds.mean(axis=(-2, -1))


def magnetization(configs) -> np.ndarray:
    """Signed magnetisation per site ``m = (1/N) sum_x s(x)``.

    Parameters
    ----------
    configs : array_like, shape (\\*batch, L, L)

    Returns
    -------
    numpy.ndarray, shape (\\*batch,), float64

    Examples
    --------
    >>> magnetization(np.array([[[1, 1], [1, -1]]]))
    array([0.5])
    """
    s = _check_configs("magnetization", configs)
    return s.mean(axis=(-2, -1), dtype=np.float64)


def _default_cache_dir() -> Path:
    root = os.environ.get("LINEARDIFF_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "lineardiff"
    return base / "ising"


def _cache_path(cache_dir: Path, L: int, n: int, seed: int) -> Path:
    return cache_dir / f"ising_L{L}_n{n}_seed{seed}_v{SAMPLER_VERSION}.npy"


def _load_valid(path: Path, L: int, n: int) -> np.ndarray:
    """Load a cached set, raising ``ValueError`` unless it is exactly what was asked for."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as err:
        raise ValueError(f"unreadable ({err})") from err
    if x.shape != (n, L, L) or x.dtype != np.int8:
        raise ValueError(f"expected int8 array of shape {(n, L, L)}, got {x.dtype} {x.shape}")
    if not np.all((x == 1) | (x == -1)):
        raise ValueError("expected spins +-1")
    return x


def _save_atomic(path: Path, x: np.ndarray) -> None:
    """Write ``x`` to a temporary file in the same folder, then ``os.replace`` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, x, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ising_dataset(
    L: int, n: int, *, seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> np.ndarray:
    """Critical Ising configurations from :func:`wolff_configurations`, cached on disk.

    Parameters
    ----------
    L : int
        Linear lattice size, ``L >= 2``.
    n : int
        Number of configurations, ``n >= 1``.
    seed : int, optional
        Non-negative root seed.
    cache_dir : str or os.PathLike, optional
        Cache folder; defaults to ``$LINEARDIFF_CACHE/ising`` when that variable is set, else
        ``~/.cache/lineardiff/ising``.

    Returns
    -------
    numpy.ndarray, shape (n, L, L), dtype int8
        Identical to ``wolff_configurations(L, n, seed=seed)`` with default options.

    Notes
    -----
    Files are named by ``(L, n, seed, SAMPLER_VERSION)`` and written atomically (temporary file
    in the same folder, then ``os.replace``), so a reader never sees a partial file. A cached
    file that cannot be read or has the wrong shape, dtype or values is regenerated with a
    ``RuntimeWarning``.
    """
    where = "ising_dataset"
    L = check_int(where, "L", L, 2)
    n = check_int(where, "n", n, 1)
    seed = check_seed(where, "seed", seed)
    folder = _default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = _cache_path(folder, L, n, seed)
    if path.exists():
        try:
            return _load_valid(path, L, n)
        except ValueError as err:
            warnings.warn(
                f"{where}: cached file {path} is invalid ({err}); regenerating it",
                RuntimeWarning,
                stacklevel=2,
            )
    x = wolff_configurations(L, n, seed=seed)
    _save_atomic(path, x)
    return x
