"""Exact energy of the finite periodic 2-D Ising model (two independent routes)."""

from __future__ import annotations

import math

import numpy as np

from .._checks import check_int, check_real

__all__ = ["T_C", "exact_energy_per_site", "transfer_matrix_energy"]

#: Critical temperature of the square-lattice Ising model with J = 1: ``2 / ln(1 + sqrt 2)``.
T_C = 2.0 / math.log1p(math.sqrt(2.0))


def _check_lattice(where: str, L, maximum: int | None = None) -> int:
    L = check_int(where, "L", L, 2)
    if maximum is not None and L > maximum:
        raise ValueError(
            f"{where}: expected L <= {maximum}, got {L}. The transfer matrix has 2^L states; "
            "use exact_energy_per_site for larger lattices"
        )
    return L


def _log_factor(x: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``2 cosh x`` or ``2 sinh x`` as ``exp(|x|) * scaled`` (overflow-free) and ``d log f/dx``."""
    a = np.abs(x)
    tail = np.exp(-2.0 * a)
    if kind == "cosh":
        scaled = 1.0 + tail
        with np.errstate(divide="ignore", invalid="ignore"):
            dlog = np.tanh(x)
    else:
        scaled = np.sign(x) * -np.expm1(-2.0 * a)
        with np.errstate(divide="ignore", invalid="ignore"):
            dlog = 1.0 / np.tanh(x)
    return scaled, dlog


def exact_energy_per_site(L: int, T: float = T_C) -> float:
    """Exact mean energy per site of the ``L x L`` periodic Ising model (J = 1).

    Parameters
    ----------
    L : int
        Linear lattice size, ``L >= 2``.
    T : float, optional
        Temperature (``k_B = 1``); defaults to the critical temperature ``T_C``.

    Returns
    -------
    float
        ``<E> / L^2`` with ``E = -sum_<xy> s_x s_y`` over the ``2 L^2`` nearest-neighbour bonds.

    Notes
    -----
    Kaufman's partition function of the periodic ``n x m`` lattice, in the form of Ferdinand and
    Fisher, Phys. Rev. 185, 832 (1969), eqs. (2.1)-(2.6) with ``n = m = L``, ``K = 1/T``::

        Z = 1/2 (2 sinh 2K)^(L^2/2) (Z1 + Z2 + Z3 + Z4),
        Z1, Z2 = prod_{r=0}^{L-1} 2 cosh, 2 sinh (L gamma_{2r+1} / 2),
        Z3, Z4 = prod_{r=0}^{L-1} 2 cosh, 2 sinh (L gamma_{2r} / 2),
        cosh gamma_k = cosh 2K coth 2K - cos(pi k / L),   gamma_0 = 2K + ln tanh K  (signed).

    The energy is ``-(1/L^2) d ln Z / dK``, differentiated analytically term by term; every
    product is kept in log space, and the ``r = 0`` factor is kept as a signed value because
    ``gamma_0`` changes sign at ``T_c`` (where ``Z4 = 0`` but ``dZ4/dK`` does not vanish).

    Examples
    --------
    >>> round(exact_energy_per_site(16), 10)
    -1.4530648528
    """
    L = _check_lattice("exact_energy_per_site", L)
    T = check_real("exact_energy_per_site", "T", T, low=0)
    K = 1.0 / T
    s2, c2 = math.sinh(2 * K), math.cosh(2 * K)
    c = c2 * c2 / s2
    dc = 2.0 * c2 * (s2 * s2 - 1.0) / (s2 * s2)

    k = np.arange(2 * L)
    with np.errstate(divide="ignore", invalid="ignore"):
        # arccosh(c - cos) loses accuracy near 1; the log form is exact enough (c - cos >= 1).
        ch = c - np.cos(np.pi * k / L)
        gamma = np.log(ch + np.sqrt((ch - 1.0) * (ch + 1.0)))
        dgamma = dc / np.sinh(gamma)
    gamma[0] = 2.0 * K + math.log(math.tanh(K))
    dgamma[0] = 2.0 + 2.0 / s2

    logs, values, derivs = [], [], []
    for parity, kind in ((1, "cosh"), (1, "sinh"), (0, "cosh"), (0, "sinh")):
        x = 0.5 * L * gamma[parity::2]
        dx = 0.5 * L * dgamma[parity::2]
        scaled, dlog = _log_factor(x, kind)
        # factors r >= 1 are positive: sum their logs; keep factor 0 signed (it may vanish)
        log_rest = float(np.sum(np.abs(x[1:]) + np.log(scaled[1:])))
        slope_rest = float(np.sum(dlog[1:] * dx[1:]))
        f0 = scaled[0]
        if kind == "cosh":
            df0 = np.sign(x[0]) * -np.expm1(-2.0 * abs(x[0])) * dx[0]
        else:
            df0 = (1.0 + np.exp(-2.0 * abs(x[0]))) * dx[0]
        logs.append(log_rest + abs(x[0]))
        values.append(f0)
        derivs.append(df0 + f0 * slope_rest)
    logs_a = np.array(logs)
    w = np.exp(logs_a - logs_a.max())
    ratio = float(np.dot(w, derivs) / np.dot(w, values))
    dlogz = L * L * c2 / s2 + ratio
    return -dlogz / (L * L)


def transfer_matrix_energy(L: int, T: float = T_C) -> float:
    """Exact energy per site of the ``L x L`` periodic lattice by a row-to-row transfer matrix.

    An independent check of :func:`exact_energy_per_site` by brute force over the ``2^L`` row
    states; practical for ``L <= 10``.

    Parameters
    ----------
    L : int
        Linear lattice size, ``2 <= L <= 12``.
    T : float, optional
        Temperature; defaults to ``T_C``.

    Returns
    -------
    float
        ``<E> / L^2``.

    Notes
    -----
    With the symmetric transfer matrix ``V(s, s') = exp(K [H(s)/2 + H(s')/2 + s.s'])`` (``H`` the
    in-row bond sum), ``Z = tr V^L`` and ``d ln Z / dK = L tr(V^(L-1) (A o V)) / tr V^L`` where
    ``A`` is the exponent matrix over ``K`` and ``o`` the elementwise product. Both traces are
    evaluated in the eigenbasis of ``V``, scaled by its largest eigenvalue.

    Examples
    --------
    >>> abs(transfer_matrix_energy(4) - exact_energy_per_site(4)) < 1e-12
    True
    """
    L = _check_lattice("transfer_matrix_energy", L, maximum=12)
    T = check_real("transfer_matrix_energy", "T", T, low=0)
    K = 1.0 / T
    states = np.arange(2**L)
    spins = 1 - 2 * ((states[:, None] >> np.arange(L)) & 1)  # (2^L, L) of +-1
    row = np.sum(spins * np.roll(spins, -1, axis=1), axis=1).astype(np.float64)
    A = 0.5 * (row[:, None] + row[None, :]) + (spins @ spins.T).astype(np.float64)
    # shift the exponent so the largest entry is exp(0): a common factor cancels in the ratio
    V = np.exp(K * (A - A.max()))
    lam, U = np.linalg.eigh(V)
    scale = np.abs(lam).max()
    lam = lam / scale
    dV = U.T @ (A * V / scale) @ U
    # with the unshifted A in the derivative, the shift cancels: this is d ln Z/dK itself
    dlogz = L * np.sum(lam ** (L - 1) * np.diag(dV)) / np.sum(lam**L)
    return float(-dlogz / (L * L))
