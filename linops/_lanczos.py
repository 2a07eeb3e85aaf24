"""Batched Lanczos for ``f(A) v`` with an a-posteriori error estimate.

The iteration (:func:`lanczos_funm`) and ``f(T_k) e_1`` with its stable backward live
here; the basis storage, the reorthogonalisation and the residual estimate in
:mod:`linops._lanczos_basis`, :mod:`linops._lanczos_reorth` and
:mod:`linops._lanczos_estimate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import _banded
from ._fused import lanczos_step
from ._lanczos_basis import _Basis, _GraphBasis
from ._lanczos_estimate import _gap, _RateTransfer, residual_estimate
from ._lanczos_reorth import _gram_schmidt, _Orthogonality

WINDOW = 6  # convergence ratios remembered (slowest one used)
FLOOR = 1e-3  # errors are relative to max(||f(A) v||, FLOOR ||f(A)|| ||v||)
SAFETY = 2.0  # margin on the geometric tail, see benchmarks/bench_funm.py
#: functions with a Stieltjes-type integral form, for which the residual estimate applies
STIELTJES = ("sqrt", "invsqrt", "log")
REORTH_MODES = ("auto", "full", "none")


@dataclass
class LanczosState:
    """What a Lanczos run produced, before it is turned into a result."""

    value: torch.Tensor  # (B, n)
    num_iters: int
    error_estimate: torch.Tensor  # (B,) relative to ||value||
    converged: torch.Tensor  # (B,) bool
    ritz_min: torch.Tensor  # (B,) smallest Ritz value of the last T_k
    ritz_max: torch.Tensor  # (B,)
    reorth_steps: int = 0  # steps whose new vector was orthogonalised against the whole basis
    invariant: torch.Tensor | None = None  # (B,) bool: the Krylov space became invariant, k < n
    krylov: list[torch.Tensor] | None = None  # the basis vectors (B, n) of a differentiable run
    breakdown_at: torch.Tensor | None = None  # (B,) step of the breakdown (0: none)


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


# ------------------------------------------------------------ differentiable f(T) e_1
def derivative(f: Callable[[torch.Tensor], torch.Tensor], where: str):
    """``f'`` of an elementwise ``f`` by autograd (for the Daleckii-Krein backward)."""

    def fprime(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            y = f(xx)
            if not (isinstance(y, torch.Tensor) and y.requires_grad):
                raise ValueError(
                    f"{where}: the gradient needs f differentiable by autograd (elementwise, "
                    "written with torch operations), got a function whose output has no graph"
                )
            (g,) = torch.autograd.grad(y.sum(), xx)
        return g

    return fprime


def divided_differences(x: torch.Tensor, fx: torch.Tensor, fprime) -> torch.Tensor:
    """``F[i, j] = (f(x_i) - f(x_j)) / (x_i - x_j)``, ``f'`` where ``x_i`` and ``x_j`` coincide.

    ``x`` is ``(..., k)``; pairs closer than ``sqrt(eps) max |x|`` take the mean of the two
    derivatives (the quotient would lose half the digits to cancellation; the mean is off by
    ``|f''| |x_i - x_j| / 2`` at most, the same order).
    """
    d = x.unsqueeze(-1) - x.unsqueeze(-2)
    df = fx.unsqueeze(-1) - fx.unsqueeze(-2)
    fp = fprime(x)
    scale = x.abs().amax(-1, keepdim=True).unsqueeze(-1).clamp_min(torch.finfo(x.dtype).tiny)
    close = d.abs() <= math.sqrt(torch.finfo(x.dtype).eps) * scale
    mean = (fp.unsqueeze(-1) + fp.unsqueeze(-2)) / 2
    return torch.where(close, mean, df / torch.where(close, torch.ones_like(d), d))


class TridiagonalFunction(torch.autograd.Function):
    """``f(T) e_1`` for batched tridiagonal ``T`` with a stable backward.

    ``torch.linalg.eigh``'s own backward divides by eigenvalue gaps and returns inf/NaN
    at the repeated Ritz values that Lanczos produces (ghost copies without
    reorthogonalisation, the decoupled copies after a breakdown). The derivative of the
    matrix function itself is finite there: with ``T = S diag(θ) S^T`` it is
    ``dF = S (F^[1] ∘ (S^T dT S)) S^T`` with the divided differences ``F^[1]`` of ``f``
    (Daleckii-Krein; Higham, *Functions of Matrices*, Thm 3.11), so
    ``grad_T = S (F^[1] ∘ (S^T g)(S^T e_1)^T) S^T``.
    """

    @staticmethod
    def forward(ctx, alpha, beta, f, fprime):
        theta, S = torch.linalg.eigh(_tridiagonal(alpha, beta))
        fx = f(theta)
        ctx.save_for_backward(theta, S, fx)
        ctx.fprime = fprime
        return (S @ (fx * S[:, 0, :]).unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def backward(ctx, g):
        theta, S, fx = ctx.saved_tensors
        F1 = divided_differences(theta, fx, ctx.fprime)  # noqa: N806
        u = (S.mT @ g.unsqueeze(-1)).squeeze(-1)  # S^T g
        inner = F1 * (u.unsqueeze(-1) * S[:, 0, :].unsqueeze(-2))
        G = S @ inner @ S.mT  # noqa: N806
        grad_alpha = torch.diagonal(G, dim1=-2, dim2=-1)
        grad_beta = torch.diagonal(G, offset=1, dim1=-2, dim2=-1) + torch.diagonal(
            G, offset=-1, dim1=-2, dim2=-1
        )
        return grad_alpha, grad_beta, None, None


def _three_term(w, q, q_prev, beta_prev, alpha=None, out=None):
    """``alpha``, ``w - alpha q - beta_prev q_prev`` (in place) and ``beta``: the torch step.

    The same arithmetic as :func:`linops.lanczos_step` with ``backend="torch"``, without
    its temporaries: batched dot products and fused multiply-adds into ``w``; on the CPU,
    once numba is up in the process, one compiled kernel with two passes over memory
    (:func:`linops._banded.three_term`) instead of four.
    """
    compiled = _banded.three_term(w, q, q_prev, beta_prev, alpha, out)
    if compiled is not None:
        return compiled
    if q.is_contiguous():
        alpha = torch.linalg.vecdot(q, w, dim=1)  # ~2x a (B, 1, n) x (B, n, 1) bmm
    else:
        # a basis slot has a row stride: vecdot runs ~6x slower on it than this product
        alpha = (q * w).sum(1)
    w.addcmul_(alpha.unsqueeze(1), q, value=-1.0)
    w.addcmul_(beta_prev.unsqueeze(1), q_prev, value=-1.0)
    return w, alpha, torch.linalg.vector_norm(w, dim=1)


def _three_term_graph(w, q, q_prev, beta_prev):
    """The three-term step without in-place writes (for runs that autograd records)."""
    alpha = (q * w).sum(1)
    w = w - alpha.unsqueeze(1) * q - beta_prev.unsqueeze(1) * q_prev
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
    differentiable: bool = False,
    fprime: Callable[[torch.Tensor], torch.Tensor] | None = None,
    where: str = "lanczos",
) -> LanczosState:
    """Run batched Lanczos on ``v`` of shape ``(B, *in_shape)``; see :func:`linops.funm`.

    ``matvec`` maps ``(B, *in_shape)`` to the same shape; with ``matvec_out`` it takes
    ``out=`` and writes there (one buffer reused at every step). With ``reorth="none"`` the
    three-term update runs through :func:`linops.lanczos_step` when the backend is
    Triton (one fused kernel on CUDA) and in place in torch otherwise.

    ``differentiable=True`` (the operator's tensors require grad) runs the same steps
    without in-place writes or reused storage, so that autograd records them, and
    returns ``Q_k f(T_k) e_1`` through :class:`TridiagonalFunction` (``fprime`` is
    ``f'``). Then the error estimate is still computed from detached copies.

    Reorthogonalisation
    -------------------
    ``"full"``: classical Gram-Schmidt against the whole basis at every step, repeated
    when it removed a large part of the vector. ``"none"``: the plain three-term
    recurrence. ``"auto"``: the plain recurrence while nothing needs an orthonormal basis
    -- for ``sqrt``, ``invsqrt`` and ``log`` in a run that cannot reach half the dimension
    (``2 max_iters < n``) nothing does: the residual estimate needs only the three-term
    relation, which holds to rounding without reorthogonalisation, and Lanczos' ``f(A) v``
    keeps its accuracy without it (Druskin and Knizhnerman 1991; Musco, Musco and Sidford,
    SODA 2018); measured at SSD's critical point: the same steps and errors as full
    reorthogonalisation at 2-10x less time. Otherwise (``exp`` and callables, whose estimate
    uses norms of coefficient differences, or a run that may exhaust the space, where the
    plain recurrence does not terminate) the loss of orthogonality is estimated at every
    step (:class:`_Orthogonality`) and the run switches to ``"full"`` once it passes a
    threshold.

    Error estimate
    --------------
    ``stieltjes`` (``"sqrt"``, ``"invsqrt"`` or ``"log"``, or None) selects the estimate.

    *Residual estimate* (Stieltjes-type ``f``, :func:`residual_estimate`): the error
    bound from the Lanczos residual with ``lambda_min`` replaced by the smallest Ritz
    value. It needs only ``T_k``, no history, so it is computed on a schedule --
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
    floor keeps it the plain one otherwise. A right-hand side whose coefficients or
    estimate are not finite is never converged (its estimate is ``inf``).

    Raises
    ------
    ValueError
        When a matvec returns NaN or inf for a finite (unit) vector: the operator itself
        holds non-finite values.
    """
    if reorth not in REORTH_MODES:
        raise ValueError(f"{where}: expected reorth in {REORTH_MODES}, got {reorth!r}")
    B = v.shape[0]
    dtype, device = v.dtype, v.device
    flat = v.reshape(B, -1)
    n = flat.shape[1]
    max_iters = min(max_iters, n)
    if reorth == "auto" and stieltjes is not None and 2 * max_iters < n:
        # the residual estimate needs only the three-term relation, which holds to rounding
        # without reorthogonalisation, and so does the accuracy of the iterate (see the
        # docstring): nothing in a run that cannot exhaust the space needs an orthonormal
        # basis, and projecting one out costs O(k n) per event
        reorth = "none"
    vnorm = torch.linalg.vector_norm(flat, dim=1)
    safe = torch.where(vnorm > 0, vnorm, torch.ones_like(vnorm))
    q = flat / safe.unsqueeze(1)
    if not bool((vnorm > 0).all()):
        # a zero right-hand side (a backward pass's one-hot gradients have them) runs from a
        # stand-in unit vector, so that its T_k stays inside A's spectrum (a zero T would be
        # refused by log and invsqrt); its value is scaled by ||v|| = 0
        stand_in = torch.full_like(q, 1 / math.sqrt(n))
        q = torch.where((vnorm > 0).unsqueeze(1), q, stand_in)
    fused = not differentiable and (
        backend == "triton" or (backend == "auto" and device.type == "cuda")
    )

    basis = (_GraphBasis if differentiable else _Basis)(q, max_iters + 1)
    alphas = torch.zeros((B, max_iters), dtype=dtype, device=device)  # detached copies
    betas = torch.zeros((B, max_iters), dtype=dtype, device=device)
    graph_alphas: list[torch.Tensor] = []  # the recorded ones (differentiable runs)
    graph_betas: list[torch.Tensor] = []
    q_prev = torch.zeros_like(q)
    beta_prev = torch.zeros(B, dtype=dtype, device=device)
    done_breakdown = vnorm == 0  # a zero right-hand side is done (its value is zero)
    any_done = bool(done_breakdown.any())
    breakdown_at = torch.zeros(B, dtype=torch.long, device=device)
    anorm = torch.zeros(B, dtype=dtype, device=device)
    eps = torch.finfo(dtype).eps
    omega = _Orthogonality(B, dtype, max_iters, tol) if reorth == "auto" else None
    transfer = _RateTransfer()
    reorth_steps = 0
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
        full_now = reorth == "full"
        normalised = False  # the update wrote q_{k+1} into the basis already
        if differentiable:
            w, alpha, beta = _three_term_graph(w, q, q_prev, beta_prev)
        elif fused and not full_now and reorth != "auto":
            w, alpha, beta = lanczos_step(w, q, q_prev, beta_prev, backend=backend)
        else:
            # the compiled matvec hands over <q, A q> per image: alpha without a pass; and
            # with the plain recurrence the next vector can go straight into its slot
            dots = getattr(matvec, "dots", None) if matvec_out else None
            known = None if dots is None else torch.from_numpy(dots.sum(1))
            slot = None
            if known is not None and reorth == "none" and k < max_iters:
                slot = basis.next_slot()
            w, alpha, beta = _three_term(_own(w, q), q, q_prev, beta_prev, known, slot)
            if slot is not None and w.data_ptr() != slot.data_ptr():
                basis.size -= 1  # the compiled update did not apply: give the slot back
                slot = None
            normalised = slot is not None
        if full_now:
            w, beta = _gram_schmidt(basis, w, k)
            reorth_steps += 1
        a_d, b_d = alpha.detach(), beta.detach()
        # ||A|| from below: the largest |alpha| + beta seen (a row sum of T). NaN or inf in
        # alpha or beta (an operator holding them) stays in it: checked at every check
        anorm = torch.maximum(anorm, a_d.abs() + b_d + beta_prev.detach())
        # Breakdown: the Krylov space is invariant (to rounding), y_k is exact. Keep the
        # batch shape by appending decoupled copies of alpha_1 (inside the spectrum, so f
        # stays finite); their coefficients are exactly zero.
        broke = (b_d <= 100 * eps * anorm) | done_breakdown
        if any_done and k > 1:
            first = graph_alphas[0] if differentiable else alphas[:, 0]
            alpha = torch.where(done_breakdown, first, alpha)
            a_d = alpha.detach()
        beta = beta.masked_fill(broke, 0.0)
        b_d = beta.detach()
        if omega is not None and k < max_iters and omega.step(k, a_d, b_d, anorm):
            # the loss of orthogonality passed the threshold: from this vector on,
            # orthogonalise every new vector against the whole basis
            w, beta = _gram_schmidt(basis, w, k)
            beta = torch.where(broke, torch.zeros_like(beta), beta)
            b_d = beta.detach()
            reorth_steps += 1
            reorth, omega = "full", None
        alphas[:, k - 1] = a_d
        betas[:, k - 1] = b_d
        if differentiable:
            graph_alphas.append(alpha)
            graph_betas.append(beta)
        newly = broke & ~done_breakdown
        breakdown_at = torch.where(newly, k, breakdown_at)
        done_breakdown = broke
        any_done = bool(done_breakdown.any())
        last = k == max_iters or (any_done and bool(done_breakdown.all()))
        if stieltjes is None or k >= next_check or last:
            _check_finite(anorm, k, where)
        if stieltjes is not None:
            if k >= next_check or last:
                coef, theta, fx, S = krylov_coefficients(
                    alphas[:, :k], betas[:, : k - 1], f, check_spectrum
                )
                coef_at = k
                den = torch.maximum(torch.linalg.vector_norm(coef, dim=1), FLOOR * fx.abs().amax(1))
                # relative to ||f(A) v|| >= ||y_k|| - error, not to ||y_k||: at loose
                # tolerances the two differ by the error itself
                residual = residual_estimate(stieltjes, theta, S, b_d)
                # near the end of the space the last eigenvalues get resolved and the
                # overestimation factor collapses (as for clusters): no transfer there
                est = transfer.estimate(k, coef, residual) if 2 * k < n else residual
                est = est + k * eps * den
                absolute, fmax = est, FLOOR * fx.abs().amax(1)
                est = torch.where(den > est, est / (den - est).clamp_min(1e-300), math.inf)
                est = torch.where(torch.isfinite(coef).all(1), est, math.inf)
                estimate = torch.where(done_breakdown, torch.zeros_like(est), est)
                estimate = torch.where(torch.isfinite(coef).all(1), estimate, math.inf)
                converged = (done_breakdown | ((estimate <= tol) & (k >= min_iters))) & (
                    estimate < math.inf
                )
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
            estimate = torch.where(newly, torch.zeros_like(estimate), estimate)
            estimate = torch.where(torch.isfinite(coef).all(1), estimate, math.inf)
            below = estimate <= tol
            converged = done_breakdown | (below & below_once & (k >= min_iters))
            converged = converged & (estimate < math.inf)
            below_once = below
        if coef_at == k:
            # a right-hand side whose f(T_k) is not finite (exp overflowing) cannot recover
            hopeless = ~torch.isfinite(coef).all(1)
            if bool((converged | hopeless).all()) or last:
                break
        # q_{k+1} = w / beta, written straight into the basis (no copy); zero after breakdown
        # (a broken-down row has beta = 0: its inf reciprocal is replaced)
        if normalised:
            q_next = w  # the basis slot, written by the compiled update
            if any_done:
                q_next[done_breakdown] = 0.0
        else:
            scale = torch.where(done_breakdown, 0.0, beta.reciprocal()).unsqueeze(1)
            if differentiable:
                basis.append(w * scale)
                q_next = basis.last()
            else:
                q_next = torch.mul(w, scale, out=basis.next_slot())
        q_prev, q, beta_prev = q, q_next, beta
    if differentiable:
        off = torch.stack(graph_betas[:-1], 1) if k > 1 else alphas.new_zeros(B, 0)
        coef = TridiagonalFunction.apply(torch.stack(graph_alphas, 1), off, f, fprime)
    value = basis.combine(coef) * vnorm.unsqueeze(1)
    basis.release()
    if stieltjes is not None and coef_at == k:
        # the checks measured ||y_k|| as ||c_k|| (exact for an orthonormal basis); without
        # reorthogonalisation the basis is not, so the final estimate is relative to the
        # norm of the value itself
        ynorm = torch.linalg.vector_norm(value.detach(), dim=1) / safe
        den = torch.maximum(ynorm, fmax)
        final = torch.where(den > absolute, absolute / (den - absolute).clamp_min(1e-300), math.inf)
        keep = done_breakdown | ~torch.isfinite(estimate)
        estimate = torch.where(keep, estimate, final)
        converged = (done_breakdown | ((estimate <= tol) & (k >= min_iters))) & (
            estimate < math.inf
        )
    estimate = torch.where(vnorm > 0, estimate, torch.zeros_like(estimate))
    converged = converged | (vnorm == 0)
    return LanczosState(
        value=value,
        num_iters=k,
        error_estimate=estimate,
        converged=converged,
        ritz_min=theta.amin(1),
        ritz_max=theta.amax(1),
        reorth_steps=reorth_steps,
        invariant=done_breakdown & (vnorm > 0) & (k < n),
        krylov=basis.vectors[:k] if differentiable else None,
        breakdown_at=breakdown_at,
    )


def _check_finite(anorm: torch.Tensor, k: int, where: str) -> None:
    """Raise when an operator application returned NaN or inf (for a finite unit vector)."""
    bad = ~torch.isfinite(anorm)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{where}: the operator returned NaN or inf for a finite unit vector (by step {k}, "
            f"right-hand side {row}): it holds non-finite values"
        )
