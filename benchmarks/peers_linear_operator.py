"""Peer for ``f(A) v`` in ``bench_funm.py``: linear_operator's contour integral quadrature (CIQ).

CIQ (Pleiss et al., NeurIPS 2020) writes :math:`A^{\\pm 1/2} b` as a quadrature rule on a
contour around the spectrum: the nodes are shifts :math:`\\sigma_j` placed with Jacobi
elliptic functions of :math:`[\\lambda_{\\min}, \\lambda_{\\max}]` (both estimated by a few
Lanczos steps), each term is a shifted solve :math:`(A + \\sigma_j)^{-1} b`, and all shifted
solves share one Krylov space (multi-shift MINRES). :math:`A^{-1/2} b` is
``LinearOperator.sqrt_inv_matmul``; :math:`A^{1/2} b` is the same quadrature with one more
product by :math:`A`, ``linear_operator.utils.contour_integral_quad(..., inverse=False)``
followed by the weighted sum of the solves (what linear_operator's own
``zero_mean_mvn_samples`` does under ``settings.ciq_samples``). The benchmark computes
:math:`A^{1/2} v`, so the second is the peer; the first is only checked against our exact
path (``test_ciq_adapter_inverse_sqrt``).

Accuracy knobs (all of linear_operator's, nothing of ours inside the solver):

- ``num_contour_quadrature`` (setting, default 15): quadrature nodes, i.e. shifted systems;
- ``minres_tolerance`` (setting, default 1e-4): MINRES stops when the mean over all shifts
  and right-hand sides of ``|update| / |solution|`` falls below it (checked every 10 steps);
- ``max_cg_iterations`` (setting, default 1000): MINRES' step cap;
- ``max_lanczos_iter`` (argument of ``contour_integral_quad``, default 20): Lanczos steps for
  the spectral interval. Ritz values lie inside the spectrum, so a short run puts the
  interval's left end above :math:`\\lambda_{\\min}` and the quadrature misses the bottom.

The operator is wrapped matrix-free: ``_matmul`` reshapes the columns into images and calls
our operator's generic ``apply`` (the GEMM route, not the compiled banded kernel of our
Lanczos); ``_diagonal`` is only CIQ's fallback when the Ritz values are not positive. The
products are not where CIQ's time goes: about 10 ms each on 64 images of (3, 64, 64) on one
core, 1.7 s of CIQ's 13 s at the critical point and 1e-10 (173 products); the rest is the
multi-shift MINRES recurrence, which updates a solution and its search vectors for every node
(``(nodes + 1) x n x k`` each) at every step.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

try:
    from linear_operator import LinearOperator, settings
    from linear_operator.utils.contour_integral_quad import contour_integral_quad
except ImportError:  # ``pytest benchmarks`` imports every module for doctests
    pytest.skip("linear_operator is not installed", allow_module_level=True)


class ImageOperator(LinearOperator):
    """A self-adjoint linops operator on ``in_shape`` images as an ``(n, n)`` LinearOperator."""

    def __init__(self, anchor: torch.Tensor, *, op):
        # ``anchor`` (0-d) carries dtype and device, which linear_operator reads off its args.
        super().__init__(anchor, op=op)
        self.op = op
        self.n = math.prod(op.in_shape)
        self.calls = 0  # products with A, each on all columns (and all shifts, the last one)

    def _matmul(self, rhs: torch.Tensor) -> torch.Tensor:  # (..., n, k) -> (..., n, k)
        self.calls += 1
        x = rhs.mT.reshape(*rhs.shape[:-2], rhs.shape[-1], *self.op.in_shape)
        return self.op.apply(x).reshape(*rhs.shape[:-2], rhs.shape[-1], self.n).mT

    def _size(self) -> torch.Size:
        return torch.Size((self.n, self.n))

    def _transpose_nonbatch(self) -> ImageOperator:
        return self  # self-adjoint

    def _diagonal(self) -> torch.Tensor:
        raise NotImplementedError("CIQ fell back to the diagonal: its Ritz values were not > 0")


def wrap(op, dtype=torch.float64, device="cpu") -> ImageOperator:
    return ImageOperator(torch.zeros((), dtype=dtype, device=device), op=op)


@contextlib.contextmanager
def _settings(quad: int, minres_tol: float, max_iters: int):
    """linear_operator's CIQ settings for one call."""
    with (
        settings.num_contour_quadrature(quad),
        settings.minres_tolerance(minres_tol),
        settings.max_cg_iterations(max_iters),
    ):
        yield


def ciq_sqrt(
    K: ImageOperator,
    v: torch.Tensor,
    *,
    quad: int,
    minres_tol: float,
    lanczos: int = 20,
    max_iters: int = 1000,
) -> torch.Tensor:
    """:math:`A^{1/2} v` for a batch ``v`` of images by CIQ (the columns solved together)."""
    b = v.reshape(v.shape[0], -1).mT
    with torch.no_grad(), _settings(quad, minres_tol, max_iters):
        solves, weights, _, _ = contour_integral_quad(
            K, b, inverse=False, num_contour_quadrature=quad, max_lanczos_iter=lanczos
        )
        out = (solves * weights).sum(0)
    return out.mT.reshape(v.shape)


def ciq_inv_sqrt(
    K: ImageOperator, v: torch.Tensor, *, quad: int, minres_tol: float, max_iters: int = 1000
) -> torch.Tensor:
    """:math:`A^{-1/2} v` by the public ``sqrt_inv_matmul`` (its own 20 Lanczos steps)."""
    b = v.reshape(v.shape[0], -1).mT
    with torch.no_grad(), _settings(quad, minres_tol, max_iters):
        out = K.sqrt_inv_matmul(b)
    return out.mT.reshape(v.shape)
