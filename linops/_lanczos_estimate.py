"""The residual error estimate of Lanczos for Stieltjes-type ``f`` and its schedule.

The estimate of ``||f(A) v - y_k||`` from the Lanczos residual for ``sqrt``, ``invsqrt``
and ``log``, its tightening by the decay it showed since an earlier check, and the
number of steps to the next check; used by :func:`linops._lanczos.lanczos_funm`.
"""

from __future__ import annotations

import math

import torch

EVERY_STEP_UNTIL = 8  # residual mode: check at every step this far (the eigh is tiny)
MAX_GAP_FRACTION = 4  # residual mode: at most k // MAX_GAP_FRACTION steps between checks


def residual_estimate(kind: str, theta, S, beta_k):
    """``||f(A) v - y_k|| / ||v||`` from the Lanczos residual, for a Stieltjes-type ``f``.

    With ``A Q_k = Q_k T_k + beta_k q_{k+1} e_k^T`` (this holds to rounding with or
    without reorthogonalisation), the shifted systems have collinear residuals
    ``(A + t) Q_k (T_k + t)^{-1} e_1 - v / ||v|| = beta_k eta_k(t) q_{k+1}``,
    ``eta_k(t) = e_k^T (T_k + t)^{-1} e_1``, which has one sign for ``t >= 0``. From
    ``sqrt(x) = (1/pi) int_0^inf t^{-1/2} x / (x + t) dt`` (and the analogous forms of
    ``x^{-1/2}`` and ``log x``) the error is an integral of ``(A + t)^{-1} q_{k+1}``,
    bounded with ``||(A + t)^{-1}|| <= 1 / (lambda_min + t)``; the integrals are closed
    forms in the Ritz pairs (``g`` below). See Ilic, Turner and Simpson, IMA J. Numer.
    Anal. 30 (2010) 1044-1061, and Chen, Greenbaum, Musco and Musco, SIAM J. Matrix Anal.
    Appl. 43 (2022) 787-811. ``lambda_min`` is unknown; we use the smallest Ritz value
    ``theta_1`` (an upper bound on it, converging from above) less its residual
    ``beta_k |s_k1|`` (the interval of that width around ``theta_1`` holds an eigenvalue),
    but at least ``theta_1 / 2``, which is what makes this an estimate rather than a
    bound. Early, while ``theta_1`` is far from converged, that is ``theta_1 / 2`` (what
    this code always used before); once it has converged it is ``theta_1``, 1.5x tighter
    at SSD's critical point.
    """
    # the smallest Ritz value less its residual (an interval around it holds an eigenvalue),
    # at least half of it: early on, when it is far above lambda_min, this is smaller
    residual_1 = beta_k * S[:, -1, 0].abs()
    mu = torch.maximum(theta[:, 0] - residual_1, 0.5 * theta[:, 0]).unsqueeze(1)
    positive = theta[:, 0] > 0
    th = torch.where(positive.unsqueeze(1), theta, torch.ones_like(theta))
    mu = torch.where(positive.unsqueeze(1), mu, torch.ones_like(mu))
    if kind == "sqrt":  # int_0^inf t^{1/2} / ((t + a)(t + b)) dt = pi / (sqrt a + sqrt b)
        g = 1 / (th.sqrt() + mu.sqrt())
    elif kind == "invsqrt":  # int t^{-1/2} / ((t + a)(t + b)) dt = pi / (sqrt(ab)(sqrt a + sqrt b))
        g = 1 / ((th * mu).sqrt() * (th.sqrt() + mu.sqrt()))
    else:  # log: int 1 / ((t + a)(t + b)) dt = log(a / b) / (a - b), 1 / a when a = b
        gap = th - mu
        distinct = gap > 1e-8 * th
        g = torch.where(
            distinct, torch.log(th / mu) / torch.where(distinct, gap, torch.ones_like(gap)), 1 / th
        )
    est = beta_k * (S[:, -1, :] * S[:, 0, :] * g).sum(1).abs()
    return torch.where(positive, est, torch.full_like(est, math.inf))


class _RateTransfer:
    """The residual estimate, tightened by the decay it showed since an earlier check.

    The residual estimate ``R_k`` overestimates the error by a factor ``c_k`` that grows
    with ``k`` (its ``1 / (lambda_min + t)`` assumes ``q_{k+1}`` sits at the bottom of the
    spectrum, and the bottom is resolved ever better): at 0.999 of SSD's feasibility limit
    ``c`` goes from 1.5 at ``k = 5`` to 10 at 50 and 150 at 120 (64 px), and to 60 at 40
    steps at 32 px. The differences of iterates measure the error of an *earlier* iterate
    instead: ``e_j <= ||y_k - y_j|| + e_k <= D + R_k``. If ``c`` did not shrink between
    ``j`` and ``k``, the errors fell at least as fast as the estimates, ``e_k / e_j <= R_k /
    R_j``, so ``e_k <= (D + R_k) R_k / R_j``. That is used, at most ``R_k``, with ``j`` the
    latest check at least :data:`TRANSFER_SPAN` steps back where ``R_k <= R_j / 10`` (so
    ``D`` is nearly ``e_j``), and only while the estimates fell steadily -- no drop by more
    than :data:`TRANSFER_JUMP` per step between checks since ``j``: a sudden drop means a
    part of the spectrum was just resolved and ``c`` collapsed (clustered spectra), where
    the transfer would underestimate. Relative to ``||v||``, like ``R_k``.
    """

    def __init__(self) -> None:
        self.history: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def estimate(self, k: int, coef: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        best = residual
        done = torch.zeros_like(residual, dtype=torch.bool)
        steady = torch.ones_like(done)
        after_k, after = k, residual
        for j, coef_j, res_j in reversed(self.history):
            per_step = (res_j / after.clamp_min(1e-300)) ** (1.0 / (after_k - j))
            steady = steady & (per_step <= TRANSFER_JUMP)
            after_k, after = j, res_j
            q = residual / res_j.clamp_min(1e-300)
            use = (q <= 0.1) & ~done & steady & (k - j >= TRANSFER_SPAN) & (res_j > 0)
            if bool(use.any()):
                pad = coef.new_zeros(coef.shape[0], k - j)
                diff = torch.linalg.vector_norm(coef - torch.cat([coef_j, pad], 1), dim=1)
                moved = TRANSFER_SAFETY * (diff + residual) * q
                best = torch.where(use, torch.minimum(best, moved), best)
            done = done | (q <= 0.1)
            if bool(done.all()):
                break
        self.history.append((k, coef, residual))
        return best


TRANSFER_SPAN = 4  # steps between the two checks a transfer uses, at least
TRANSFER_JUMP = 5.0  # a larger drop of the residual estimate in one step stops the transfer
TRANSFER_SAFETY = 2.0  # margin for c shrinking a little (measured: down to 0.56 of it at 64 px)


def _gap(k: int, pending: torch.Tensor, last_check, tol: float) -> int:
    """Steps to the next check of the residual estimate.

    Every step while ``k < 8``; then the steps that the decay rate seen since the last
    check predicts until the worst pending estimate reaches ``tol`` (70% of them, so a
    check lands just before rather than after), between 1 and ``k // 4``.
    """
    if k < EVERY_STEP_UNTIL or pending.numel() == 0:
        return 1
    cap = max(1, k // MAX_GAP_FRACTION)
    worst = float(pending.max())
    if last_check is None or not math.isfinite(worst) or worst <= 0:
        return 1
    k0, e0 = last_check
    if not (math.isfinite(e0) and e0 > worst):
        return cap  # stalled: the estimate did not decrease, look again later
    rate = math.log(worst / e0) / (k - k0)  # < 0
    steps = math.log(tol / worst) / rate
    return int(min(cap, max(1, math.floor(0.7 * steps))))
