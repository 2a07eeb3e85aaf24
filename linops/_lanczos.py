"""Batched Lanczos for ``f(A) v`` with an a-posteriori error estimate."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._fused import lanczos_step

WINDOW = 6  # convergence ratios remembered (slowest one used)
FLOOR = 1e-3  # errors are relative to max(||f(A) v||, FLOOR ||f(A)|| ||v||)
SAFETY = 2.0  # margin on the geometric tail, see benchmarks/bench_funm.py
#: functions with a Stieltjes-type integral form, for which the residual estimate applies
STIELTJES = ("sqrt", "invsqrt", "log")
MU_FRACTION = 0.5  # the residual estimate takes lambda_min >= MU_FRACTION * (smallest Ritz value)
EVERY_STEP_UNTIL = 8  # residual mode: check at every step this far (the eigh is tiny)
MAX_GAP_FRACTION = 4  # residual mode: at most k // MAX_GAP_FRACTION steps between checks


@dataclass
class LanczosState:
    """What a Lanczos run produced, before it is turned into a result."""

    value: torch.Tensor  # (B, n)
    num_iters: int
    error_estimate: torch.Tensor  # (B,) relative to ||value||
    converged: torch.Tensor  # (B,) bool
    ritz_min: torch.Tensor  # (B,) smallest Ritz value of the last T_k
    ritz_max: torch.Tensor  # (B,)


def _tridiagonal(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Batched symmetric tridiagonal matrices from diagonals (B, k) and off-diagonals (B, k-1)."""
    T = torch.diag_embed(alpha)
    if beta.shape[-1] > 0:
        T = T + torch.diag_embed(beta, offset=1) + torch.diag_embed(beta, offset=-1)
    return T


def krylov_coefficients(alpha, beta, f, check_spectrum):
    """``f(T_k) e_1`` for a batch of tridiagonal ``T_k`` and the Ritz values.

    Returns the coefficients ``(B, k)``, the Ritz values ``(B, k)``, ``f`` at the
    Ritz values and the eigenvectors ``(B, k, k)``.
    """
    theta, S = torch.linalg.eigh(_tridiagonal(alpha, beta))
    check_spectrum(theta)
    fx = f(theta)
    coef = S @ (fx * S[:, 0, :]).unsqueeze(-1)
    return coef.squeeze(-1), theta, fx, S


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
    Appl. 43 (2022) 787-811. ``lambda_min`` is unknown; we use half the smallest Ritz
    value (an upper bound on it, converging from above), which is what makes this an
    estimate rather than a bound.
    """
    mu = MU_FRACTION * theta[:, :1]
    positive = theta[:, 0] > 0
    th = torch.where(positive.unsqueeze(1), theta, torch.ones_like(theta))
    mu = torch.where(positive.unsqueeze(1), mu, torch.ones_like(mu))
    if kind == "sqrt":  # int_0^inf t^{1/2} / ((t + a)(t + b)) dt = pi / (sqrt a + sqrt b)
        g = 1 / (th.sqrt() + mu.sqrt())
    elif kind == "invsqrt":  # int t^{-1/2} / ((t + a)(t + b)) dt = pi / (sqrt(ab)(sqrt a + sqrt b))
        g = 1 / ((th * mu).sqrt() * (th.sqrt() + mu.sqrt()))
    else:  # log: int 1 / ((t + a)(t + b)) dt = log(a / b) / (a - b)
        gap = th - mu
        g = torch.where(gap > 0, torch.log(th / mu) / gap.clamp_min(1e-300), 1 / th)
    est = beta_k * (S[:, -1, :] * S[:, 0, :] * g).sum(1).abs()
    return torch.where(positive, est, torch.full_like(est, math.inf))


#: the chunks of the last finished basis, reused by the next run of the same (B, n, dtype,
#: device): first writes to fresh memory page-fault, which cost as much as the matvec at 64 px
_SPARE: dict[tuple, list[torch.Tensor]] = {}
SPARE_BYTES = 1 << 30  # a finished basis larger than this is freed, not kept


def clear_workspace() -> None:
    """Free the Krylov-basis memory that Lanczos keeps for its next call.

    :func:`linops.funm` (method ``"lanczos"``) keeps the storage of its last Krylov basis
    (at most 1 GiB) and reuses it when the next call has the same batch shape, dtype and
    device: writing to freshly allocated memory page-faults, which on a CPU costs as much
    as the structured matvec itself. Call this to give the memory back.

    Examples
    --------
    >>> import linops
    >>> linops.clear_workspace()
    """
    _SPARE.clear()


class _Basis:
    """The Krylov vectors of every right-hand side, in chunks that are never copied.

    Chunk ``i`` is a ``(B, c_i, n)`` tensor, so each right-hand side's part of it is a
    contiguous ``(c_i, n)`` block: the reorthogonalisation and the final combination are
    batched GEMVs per chunk. Chunks double the capacity, so there are ``O(log k)`` of them.
    """

    def __init__(self, first: torch.Tensor, capacity: int):
        self.capacity = capacity
        B, n = first.shape
        self.key = (B, n, first.dtype, first.device)
        self.spare = _SPARE.pop(self.key, [])  # reused storage, taken so no one else shares it
        self.chunks: list[torch.Tensor] = [self._new_chunk(min(16, capacity))]
        self.size = 0
        self.append(first)

    def _new_chunk(self, grow: int) -> torch.Tensor:
        if self.spare and self.spare[0].shape[1] == grow:
            return self.spare.pop(0)
        self.spare = []  # a different growth pattern: allocate from here on
        B, n, dtype, device = self.key
        return torch.empty((B, grow, n), dtype=dtype, device=device)

    def release(self) -> None:
        """Hand the storage to the next run (see :func:`clear_workspace`)."""
        chunks = [c for c in self.chunks if c.device.type == "cpu"]  # CUDA has a caching allocator
        if chunks and sum(c.numel() * c.element_size() for c in chunks) <= SPARE_BYTES:
            _SPARE.clear()
            _SPARE[self.key] = chunks
        self.chunks = []

    def append(self, q: torch.Tensor) -> None:
        self.next_slot().copy_(q)

    def last(self) -> torch.Tensor:
        """The ``(B, n)`` view of the newest vector."""
        start = 0
        for c in self.chunks:
            if self.size - 1 < start + c.shape[1]:
                return c[:, self.size - 1 - start]
            start += c.shape[1]
        raise IndexError("empty basis")

    def next_slot(self) -> torch.Tensor:
        """The ``(B, n)`` view that holds the next vector (counted as appended)."""
        used = sum(c.shape[1] for c in self.chunks)
        if self.size == used:
            grow = min(max(16, used), self.capacity - used)
            self.chunks.append(self._new_chunk(grow))
            used += grow
        last = self.chunks[-1]
        slot = last[:, self.size - (used - last.shape[1])]
        self.size += 1
        return slot

    def views(self, k: int):
        """``(chunk, start)`` pairs covering the first ``k`` vectors."""
        start = 0
        for c in self.chunks:
            if start >= k:
                break
            yield c[:, : min(c.shape[1], k - start)], start
            start += c.shape[1]

    def orthogonalise(self, w: torch.Tensor, k: int) -> torch.Tensor:
        """``w - Q_k Q_k^T w`` (classical Gram-Schmidt, one pass)."""
        hs = [torch.bmm(c, w.unsqueeze(2)) for c, _ in self.views(k)]  # (B, c, 1) each
        for (c, _), h in zip(self.views(k), hs, strict=True):
            w = w - torch.bmm(c.transpose(1, 2), h).squeeze(2)
        return w

    def combine(self, coef: torch.Tensor) -> torch.Tensor:
        """``Q_k c`` for coefficients ``(B, k)``."""
        out = None
        for c, start in self.views(coef.shape[1]):
            part = torch.bmm(coef[:, start : start + c.shape[1]].unsqueeze(1), c).squeeze(1)
            out = part if out is None else out.add_(part)
        return out


def _three_term(w, q, q_prev, beta_prev):
    """``alpha``, ``w - alpha q - beta_prev q_prev`` (in place) and ``beta``: the torch step.

    The same arithmetic as :func:`linops.lanczos_step` with ``backend="torch"``, without
    its temporaries: batched dot products and fused multiply-adds into ``w``.
    """
    alpha = torch.linalg.vecdot(q, w, dim=1)  # ~2x a (B, 1, n) x (B, n, 1) bmm
    w.addcmul_(alpha.unsqueeze(1), q, value=-1.0)
    w.addcmul_(beta_prev.unsqueeze(1), q_prev, value=-1.0)
    return w, alpha, torch.linalg.vector_norm(w, dim=1)


def _own(w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``w``, or a copy when it shares memory with ``q`` (an identity-like matvec)."""
    if w.untyped_storage().data_ptr() == q.untyped_storage().data_ptr():
        return w.clone()
    return w


def lanczos_funm(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    v: torch.Tensor,
    f: Callable[[torch.Tensor], torch.Tensor],
    *,
    tol: float,
    max_iters: int,
    reorth: str,
    check_spectrum: Callable[[torch.Tensor], None],
    backend: str = "torch",
    min_iters: int = 2,
    stieltjes: str | None = None,
    matvec_out: bool = False,
) -> LanczosState:
    """Run batched Lanczos on ``v`` of shape ``(B, *in_shape)``; see :func:`linops.funm`.

    ``matvec`` maps ``(B, *in_shape)`` to the same shape; with ``matvec_out`` it takes
    ``out=`` and writes there (one buffer reused at every step). With ``reorth="none"`` the
    three-term update runs through :func:`linops.lanczos_step` when the backend is
    Triton (one fused kernel on CUDA) and in place in torch otherwise; full
    reorthogonalisation needs ``beta`` after the Gram-Schmidt passes and keeps the
    torch update.

    Error estimate
    --------------
    ``stieltjes`` (``"sqrt"``, ``"invsqrt"`` or ``"log"``, or None) selects the estimate.

    *Residual estimate* (Stieltjes-type ``f``, :func:`residual_estimate`): the error
    bound from the Lanczos residual with ``lambda_min`` replaced by half the smallest
    Ritz value. It needs only ``T_k``, no history, so it is computed on a schedule --
    every step up to 8, then when the observed decay of the estimate predicts that
    ``tol`` is near, at most ``k / 4`` steps apart -- instead of a batched ``eigh`` at
    every step, and a run stops at the first check with the estimate below ``tol``.
    A rounding term ``k eps`` is added (the estimate ignores rounding).

    *Extrapolated difference* (other ``f``): with an orthonormal Krylov basis ``Q_k``
    the iterate is ``y_k = ||v|| Q_k c_k``, ``c_k = f(T_k) e_1``, so ``||y_k - y_{k-1}||
    = ||v|| ||c_k - [c_{k-1}; 0]||`` costs nothing in the problem dimension. The naive
    estimate ``d_k = ||y_k - y_{k-1}||`` measures the error of ``y_{k-1}`` minus that of
    ``y_k``: when the error falls by a factor ``r`` per step it is ``(1 - r)/r`` times the
    error of ``y_k``, a 15x underestimate at ``r = 0.94`` (condition number ~1000). We
    extrapolate the geometric tail, ``e_k ~ 2 d_k r / (1 - r)``, with ``r`` the largest
    of the last six observed ratios ``d_j / d_{j-1}``; the factor 2 covers the
    oscillation of the ratios. A run stops when the estimate is below ``tol`` at two
    consecutive steps; no estimate is given before three ratios have been seen, and
    while a recent ratio exceeds one (a plateau) the estimate is infinite. This needs
    ``f(T_k)`` at every step.

    Errors are relative to ``max(||f(A) v||, 1e-3 ||f(A)|| ||v||)``: the plain relative
    error is meaningless when ``f(A) v`` nearly vanishes (``log`` of ``A ~ I``), and this
    floor keeps it the plain one otherwise.
    """
    B = v.shape[0]
    dtype, device = v.dtype, v.device
    flat = v.reshape(B, -1)
    n = flat.shape[1]
    max_iters = min(max_iters, n)
    vnorm = torch.linalg.vector_norm(flat, dim=1)
    safe = torch.where(vnorm > 0, vnorm, torch.ones_like(vnorm))
    q = flat / safe.unsqueeze(1)
    fused = backend == "triton" or (backend == "auto" and device.type == "cuda")

    basis = _Basis(q, max_iters + 1)
    alphas = torch.zeros((B, max_iters), dtype=dtype, device=device)
    betas = torch.zeros((B, max_iters), dtype=dtype, device=device)
    q_prev = torch.zeros_like(q)
    beta_prev = torch.zeros(B, dtype=dtype, device=device)
    done_breakdown = torch.zeros(B, dtype=torch.bool, device=device)
    anorm = torch.zeros(B, dtype=dtype, device=device)
    eps = torch.finfo(dtype).eps
    ratio_hist: list[torch.Tensor] = []
    prev_coef = None
    prev_diff = None
    below_once = torch.zeros(B, dtype=torch.bool, device=device)
    converged = torch.zeros(B, dtype=torch.bool, device=device)
    estimate = torch.full((B,), math.inf, dtype=dtype, device=device)
    coef = theta = None
    coef_at = 0  # the step coef belongs to
    next_check = 1
    last_check: tuple[int, float] | None = None
    k = 0
    wbuf = torch.empty_like(q) if matvec_out else None  # one output buffer for every matvec
    for k in range(1, max_iters + 1):
        if matvec_out:
            w = matvec(q.reshape(v.shape), out=wbuf.view(v.shape)).reshape(B, n)
        else:
            w = matvec(q.reshape(v.shape)).reshape(B, n)
        if reorth == "full":
            w, alpha, _ = _three_term(_own(w, q), q, q_prev, beta_prev)
            # classical Gram-Schmidt, repeated only when the pass removed a large part of w
            # (Kahan-Parlett "twice is enough": ||w|| falling below 1/sqrt(2) of its size
            # signals cancellation); after the three-term recurrence it rarely does
            for _ in range(2):
                before = torch.linalg.vector_norm(w, dim=1)
                w = basis.orthogonalise(w, k)
                if bool((torch.linalg.vector_norm(w, dim=1) >= 0.7071 * before).all()):
                    break
            beta = torch.linalg.vector_norm(w, dim=1)
        elif fused:
            w, alpha, beta = lanczos_step(w, q, q_prev, beta_prev, backend=backend)
        else:
            w, alpha, beta = _three_term(_own(w, q), q, q_prev, beta_prev)
        # ||A|| from below: the largest |alpha| + beta seen (a row sum of T).
        anorm = torch.maximum(anorm, alpha.abs() + beta + beta_prev)
        # Breakdown: the Krylov space is invariant (to rounding), y_k is exact. Keep the
        # batch shape by appending decoupled copies of alpha_1 (inside the spectrum, so f
        # stays finite); their coefficients are exactly zero.
        broke = (beta <= 100 * eps * anorm) | done_breakdown
        alpha = torch.where(done_breakdown, alphas[:, 0], alpha) if k > 1 else alpha
        beta = torch.where(broke, torch.zeros_like(beta), beta)
        alphas[:, k - 1] = alpha
        betas[:, k - 1] = beta
        newly = broke & ~done_breakdown
        done_breakdown = broke
        last = k == max_iters or bool(done_breakdown.all())
        if stieltjes is not None:
            if k >= next_check or last:
                coef, theta, fx, S = krylov_coefficients(
                    alphas[:, :k], betas[:, : k - 1], f, check_spectrum
                )
                coef_at = k
                den = torch.maximum(torch.linalg.vector_norm(coef, dim=1), FLOOR * fx.abs().amax(1))
                # relative to ||f(A) v|| >= ||y_k|| - error, not to ||y_k||: at loose
                # tolerances the two differ by the error itself
                est = residual_estimate(stieltjes, theta, S, beta) + k * eps * den
                est = torch.where(den > est, est / (den - est).clamp_min(1e-300), math.inf)
                estimate = torch.where(done_breakdown, torch.zeros_like(est), est)
                converged = done_breakdown | ((estimate <= tol) & (k >= min_iters))
                next_check = k + _gap(k, estimate[~converged], last_check, tol)
                worst = estimate[~converged]
                last_check = (k, float(worst.max())) if worst.numel() else None
        else:
            coef, theta, fx, _ = krylov_coefficients(
                alphas[:, :k], betas[:, : k - 1], f, check_spectrum
            )
            coef_at = k
            fnorm = fx.abs().amax(1)
            if prev_coef is not None:
                pad = coef.new_zeros(B, coef.shape[1] - prev_coef.shape[1])
                diff = torch.linalg.vector_norm(coef - torch.cat([prev_coef, pad], 1), dim=1)
                if prev_diff is not None:
                    ratio_hist.append(
                        diff / torch.where(prev_diff > 0, prev_diff, torch.ones_like(prev_diff))
                    )
                    ratio_hist = ratio_hist[-WINDOW:]
                    r = torch.stack(ratio_hist, 0).amax(0)
                    tail = torch.where(
                        r < 1, r / (1 - r).clamp_min(eps), torch.full_like(r, math.inf)
                    )
                    den = torch.maximum(torch.linalg.vector_norm(coef, dim=1), FLOOR * fnorm)
                    est = SAFETY * diff * tail
                    est = est / torch.where(den > 0, den, torch.ones_like(den))
                    est = torch.where(diff == 0, torch.zeros_like(est), est)
                    if len(ratio_hist) >= 3:  # fewer ratios are not trusted yet
                        estimate = torch.where(done_breakdown, estimate, est)
                prev_diff = diff
            prev_coef = coef
            below = estimate <= tol
            converged = done_breakdown | (below & below_once & (k >= min_iters))
            below_once = below
            estimate = torch.where(newly, torch.zeros_like(estimate), estimate)
        if coef_at == k and (bool(converged.all()) or last):
            break
        # q_{k+1} = w / beta, written straight into the basis (no copy); zero after breakdown
        scale = torch.where(beta > 0, beta, torch.ones_like(beta)).reciprocal()
        scale = torch.where(done_breakdown, torch.zeros_like(scale), scale).unsqueeze(1)
        if torch.is_grad_enabled() and (w.requires_grad or scale.requires_grad):
            basis.append(w * scale)  # out= does not record a graph
            q_next = basis.last()
        else:
            q_next = torch.mul(w, scale, out=basis.next_slot())
        q_prev, q, beta_prev = q, q_next, beta
    value = basis.combine(coef) * vnorm.unsqueeze(1)
    basis.release()
    estimate = torch.where(vnorm > 0, estimate, torch.zeros_like(estimate))
    converged = converged | (vnorm == 0)
    return LanczosState(
        value=value,
        num_iters=k,
        error_estimate=estimate,
        converged=converged,
        ritz_min=theta.amin(1),
        ritz_max=theta.amax(1),
    )


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
