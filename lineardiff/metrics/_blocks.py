"""Block spins for the super-resolution protocol of docs/ising.rst."""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_seed, check_spin_values

__all__ = ["block_consistency", "majority_blocks"]


def _configs(where: str, x, name: str = "configs") -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{where}: expected configs of shape (n, L, L) or (n, 1, L, L), got "
                         f"{np.shape(x)}")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise TypeError(f"{where}: expected real numbers, got dtype {a.dtype}")
    check_spin_values(where, name, a)
    return np.where(a >= 0, 1, -1).astype(np.int64)


def _block_sums(where: str, s: np.ndarray, b: int) -> np.ndarray:
    n, L, _ = s.shape
    if L % b:
        raise ValueError(f"{where}: expected a block size dividing L = {L}, got {b}")
    return s.reshape(n, L // b, b, L // b, b).sum(axis=(2, 4))


def majority_blocks(configs, b: int = 2, *, seed: int = 0) -> np.ndarray:
    """Majority-rule ``b x b`` block spins with random tie-breaks.

    Parameters
    ----------
    configs : array_like, shape (n, L, L)
        Spins +-1 or real values around 0 (binarised with ``sign``, ties to +1; 0/1 data
        is refused).
    b : int, default 2
        Block side; must divide ``L``.
    seed : int, default 0
        Seed of the tie-breaks.

    Returns
    -------
    numpy.ndarray, shape (n, L // b, L // b), int8

    Examples
    --------
    >>> x = np.array([[[1, 1, -1, -1], [1, -1, -1, -1], [1, 1, 1, -1], [1, 1, 1, 1]]])
    >>> majority_blocks(x, 2)[0].tolist()
    [[1, -1], [1, 1]]
    """
    where = "majority_blocks"
    b = check_int(where, "b", b, 1)
    seed = check_seed(where, "seed", seed)
    sums = _block_sums(where, _configs(where, configs), b)
    ties = np.random.default_rng(seed).choice(np.array([-1, 1]), size=sums.shape)
    return np.where(sums > 0, 1, np.where(sums < 0, -1, ties)).astype(np.int8)


def block_consistency(outputs, coarse, b: int = 2) -> dict[str, float]:
    """How often the majority of each output block matches the coarse input.

    Parameters
    ----------
    outputs : array_like, shape (n, L, L)
        Super-resolved configurations (binarised with ``sign``).
    coarse : array_like, shape (n, L // b, L // b)
        The block spins they were conditioned on.
    b : int, default 2

    Returns
    -------
    dict
        ``"consistency"``: fraction of non-tied output blocks whose majority equals the input;
        ``"tied"``: fraction of tied output blocks (0.083 for 2x2 blocks of critical Monte Carlo,
        docs/ising.rst); ``"full_agreement"``: fraction of blocks whose every spin equals the
        input (0.717 for Monte Carlo).

    Examples
    --------
    >>> x = np.ones((1, 4, 4)); y = np.ones((1, 2, 2))
    >>> block_consistency(x, y)["consistency"]
    1.0
    """
    where = "block_consistency"
    b = check_int(where, "b", b, 1)
    s = _configs(where, outputs, "outputs")
    c = _configs(where, coarse, "coarse")
    if s.shape[0] != c.shape[0] or s.shape[-1] != b * c.shape[-1]:
        raise ValueError(f"{where}: expected coarse of shape (n, L / {b}, L / {b}) for outputs "
                         f"{s.shape}, got {c.shape}")
    sums = _block_sums(where, s, b)
    tied = sums == 0
    agree = (np.sign(sums) == c) & ~tied
    n_untied = int((~tied).sum())
    return {
        "consistency": float(agree.sum() / n_untied) if n_untied else float("nan"),
        "tied": float(tied.mean()),
        "full_agreement": float((sums == b * b * c).mean()),
    }
