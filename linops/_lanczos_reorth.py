"""Reorthogonalisation of the Krylov basis of a batched Lanczos run.

Simon's estimate of the loss of orthogonality, which tells when the plain three-term
recurrence needs help, and the Gram-Schmidt pass against the whole basis.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class _Orthogonality:
    """Simon's estimate of the loss of orthogonality, ``omega_{k+1, j} ~ q_{k+1}^T q_j``.

    The three-term recurrence keeps the new vector orthogonal to the previous two; its
    inner products with the older ones grow from rounding as Ritz values converge (Paige).
    Simon's recurrence (H. D. Simon, Math. Comp. 42 (1984) 115-142; as in PROPACK) tracks
    their size from ``alpha`` and ``beta`` alone, ``O(k)`` scalar work per step and right-hand
    side: ``beta_k w_{k+1,j} = beta_j w_{k,j+1} + (alpha_j - alpha_k) w_{k,j} + beta_{j-1}
    w_{k,j-1} - beta_{k-1} w_{k-1,j}``, plus a rounding term ``2 eps ||A|| / beta_k`` taken in
    the direction that grows ``|w|`` (so it overestimates: ~100x in our measurements).

    :func:`lanczos_funm` switches to full reorthogonalisation when the estimate passes
    ``threshold = max(100 eps, min(sqrt(eps), tol / 100))``, and never goes back. Why full
    and not partial: projecting out a loss of size ``omega`` breaks the Lanczos relation
    ``A Q = Q T + beta q e^T`` by ``omega beta`` -- harmless for Ritz values (second order)
    but first order for ``f(A) v``: partial reorthogonalisation at ``sqrt(eps)`` left
    ``2e-12`` errors that the estimate did not see where the plain recurrence had ``2e-14``;
    switching early, while the loss is still far below ``tol``, and then keeping the basis
    orthogonal at every step costs that error nothing.
    """

    def __init__(self, B: int, dtype, capacity: int, tol: float):  # noqa: N803
        self.eps = torch.finfo(dtype).eps
        self.threshold = max(100 * self.eps, min(math.sqrt(self.eps), 0.01 * tol))
        # scalar work on (B, k) arrays: numpy, float64 (torch's per-op overhead dominated)
        self.alpha = np.zeros((B, capacity))
        self.beta = np.zeros((B, capacity))
        self.prev = np.zeros((B, 0))  # w_{k-1, 1..k-1}
        self.cur = np.ones((B, 1))  # w_{k, 1..k}

    def step(self, k: int, alpha, beta, anorm) -> bool:
        """Advance to ``w_{k+1, .}`` after step ``k``; True when it needs reorthogonalising."""
        al, be = self.alpha, self.beta
        al[:, k - 1] = alpha.double().cpu().numpy()
        be[:, k - 1] = beta_k = beta.double().cpu().numpy()
        an = anorm.double().cpu().numpy()[:, None]
        safe = np.where(beta_k > 0, beta_k, 1.0)[:, None]
        cur, prev = self.cur, self.prev
        if k >= 2:
            b = be[:, : k - 1]  # beta_j, j = 1..k-1
            body = b * cur[:, 1:k] + (al[:, : k - 1] - al[:, k - 1 : k]) * cur[:, : k - 1]
            body[:, 1:] += b[:, :-1] * cur[:, : k - 2]  # beta_{j-1} w_{k, j-1}
            body -= be[:, k - 2 : k - 1] * prev[:, : k - 1]
            body /= safe
            body += np.where(body >= 0, 1.0, -1.0) * (2 * self.eps * an / safe)
            body[beta_k <= 0] = 0.0
        else:
            body = np.zeros((cur.shape[0], 0))
        local = np.minimum(self.eps * an / safe, 1.0)  # w_{k+1, k}
        self.prev, self.cur = cur, np.concatenate([body, local, np.ones_like(local)], 1)
        return body.size > 0 and bool((np.abs(body) > self.threshold).any())


def _gram_schmidt(basis, w: torch.Tensor, k: int):
    """``w`` orthogonalised against the first ``k`` basis vectors, and its norm.

    Classical Gram-Schmidt, repeated only when the pass removed a large part of ``w``
    (Kahan-Parlett "twice is enough": ``||w||`` falling below ``1/sqrt(2)`` of its size
    signals cancellation); after the three-term recurrence it rarely does.
    """
    for _ in range(2):
        before = torch.linalg.vector_norm(w, dim=1)
        w = basis.orthogonalise(w, k)
        after = torch.linalg.vector_norm(w, dim=1)
        if bool((after.detach() >= 0.7071 * before.detach()).all()):
            break
    return w, after
