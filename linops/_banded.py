"""A compiled banded-matrix kernel for separable operators on large images (optional numba).

Resize and blur factors are banded (a 2x antialiased downsample's transpose has two nonzeros per
row). Dense GEMMs waste most of their work on zeros; at 256 px the two banded passes below are
about 1.6x faster than the GEMMs on a 2-core CPU (see ``benchmarks/bench_operators.py``). The
kernel needs numba; without it, or for small images, the GEMM route is used.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

#: images with fewer output pixels than this use the GEMM route (compile cost, no gain)
MIN_PIXELS = 1 << 15


@functools.cache
def _kernels():
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(parallel=True, cache=False)
    def last_axis(y, start, weights, out):  # pragma: no cover - compiled
        rows = y.shape[0]
        n, width = weights.shape
        for r in numba.prange(rows):
            for j in range(n):
                acc = 0.0
                s = start[j]
                for k in range(width):
                    acc += weights[j, k] * y[r, s + k]
                out[r, j] = acc

    @numba.njit(parallel=True, cache=False)
    def middle_axis(y, start, weights, out):  # pragma: no cover - compiled
        batch = y.shape[0]
        n, width = weights.shape
        w = y.shape[2]
        for b in numba.prange(batch):
            for j in range(n):
                s = start[j]
                for c in range(w):
                    out[b, j, c] = 0.0
                for k in range(width):
                    wk = weights[j, k]
                    if wk != 0.0:
                        for c in range(w):
                            out[b, j, c] += wk * y[b, s + k, c]

    @numba.njit(parallel=True, cache=False, fastmath=True, error_model="numpy")
    def shifted(x, a, b, dh, dw, out):  # pragma: no cover - compiled
        # out[r, c] = a X + b G_h X G_w^T for every (h, w) image X = x[r, c], one image at a
        # time so that it stays in cache. Factors by diagonals, G[i, i + d - p] = D[d, i]. The
        # image is read once, into a zero-padded buffer (x may be strided, as Lanczos basis
        # slots are), so that every inner loop is a contiguous, branch-free axpy that LLVM
        # vectorises (about 3x the dense GEMMs at 64 px on 2 cores).
        rows, per_row, h, w = x.shape
        ph, pw = (dh.shape[0] - 1) // 2, (dw.shape[0] - 1) // 2
        for job in numba.prange(rows * per_row):
            r, c = job // per_row, job % per_row
            xp = np.zeros((h, w + 2 * pw), dtype=x.dtype)
            xp[:, pw : pw + w] = x[r, c]
            tp = np.zeros((h + 2 * ph, w), dtype=x.dtype)
            for i in range(h):
                xi = xp[i]
                ti = tp[i + ph]
                for d in range(dw.shape[0]):
                    dd = dw[d]
                    for j in range(w):
                        ti[j] += dd[j] * xi[j + d]
            om = out[r, c]
            for i in range(h):
                oi = om[i]
                xi = xp[i]
                for j in range(w):
                    oi[j] = a * xi[j + pw]
                for d in range(dh.shape[0]):
                    g = b * dh[d, i]
                    ti = tp[i + d]
                    for j in range(w):
                        oi[j] += g * ti[j]

    return last_axis, middle_axis, shifted


def band(matrix: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """``(start, weights)`` with ``matrix[i, start[i] + k] = weights[i, k]``; None if not banded."""
    m = matrix.detach().cpu().numpy()
    nonzero = m != 0
    if not nonzero.any(axis=1).all():
        return None
    first = nonzero.argmax(axis=1)
    last = m.shape[1] - 1 - nonzero[:, ::-1].argmax(axis=1)
    width = int((last - first).max()) + 1
    if width * 4 > m.shape[1]:
        return None
    start = np.minimum(first, m.shape[1] - width).astype(np.int64)
    idx = start[:, None] + np.arange(width)[None, :]
    return start, np.ascontiguousarray(np.take_along_axis(m, idx, axis=1))


def diagonals(matrix: torch.Tensor) -> np.ndarray | None:
    """``D`` of shape ``(2 p + 1, n)`` with ``matrix[i, i + d - p] = D[d, i]`` (zero outside).

    ``p`` is the half-bandwidth of the square matrix; None when ``4 (2 p + 1) > n`` (not
    banded enough for the compiled route to pay).
    """
    m = matrix.detach().cpu().numpy()
    n = m.shape[0]
    rows, cols = np.nonzero(m)
    p = int(np.abs(cols - rows).max()) if rows.size else 0
    if 4 * (2 * p + 1) > n:
        return None
    D = np.zeros((2 * p + 1, n), dtype=m.dtype)  # noqa: N806
    for d in range(2 * p + 1):
        diag = np.diagonal(m, d - p)
        D[d, max(0, p - d) : max(0, p - d) + diag.shape[0]] = diag
    return D


def two_sided(x: torch.Tensor, left_band, right_band, out_hw) -> torch.Tensor | None:
    """``L X R^T`` on the last two axes with banded ``L`` and ``R`` given by :func:`band`.

    Returns None when the compiled route does not apply (no numba, not CPU, not float32/64).
    """
    kernels = _kernels()
    if kernels is None or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    last_axis, middle_axis = kernels[:2]
    h_out, w_out = out_hw
    h_in, w_in = x.shape[-2:]
    dtype = np.float32 if x.dtype == torch.float32 else np.float64
    y = np.ascontiguousarray(x.detach().numpy()).reshape(-1, w_in)
    tmp = np.empty((y.shape[0], w_out), dtype=dtype)
    last_axis(y, right_band[0], right_band[1].astype(dtype), tmp)
    out = np.empty((tmp.shape[0] // h_in, h_out, w_out), dtype=dtype)
    middle_axis(tmp.reshape(-1, h_in, w_out), left_band[0], left_band[1].astype(dtype), out)
    return torch.from_numpy(out).reshape(*x.shape[:-2], h_out, w_out)


def shifted_kron_matvec(G_h: torch.Tensor, G_w: torch.Tensor, a: float, b: float):  # noqa: N803
    """A compiled ``X -> a X + b G_h X G_w^T`` on the last two axes, or None.

    For banded square factors (the ``R^T R`` of a resize or a blur, the covariances of
    SSD's posterior) on CPU in float32/float64. The returned function ``apply(x, out=None)``
    maps any tensor ``(..., H, W)`` (strided rows allowed) to a contiguous tensor of the
    same shape, written into ``out`` when given; each image is filtered
    along both axes while it is in cache, one pass over memory instead of the two GEMMs
    (mostly over zeros) of the dense route. None when numba is missing, a factor is not
    banded, or the images have fewer than :data:`MIN_SHIFTED_PIXELS` pixels (there the
    GEMMs are as fast and the compile time is not repaid).
    """
    kernels = _kernels()
    H, W = G_h.shape[0], G_w.shape[0]  # noqa: N806
    if kernels is None or G_h.device.type != "cpu" or H * W < MIN_SHIFTED_PIXELS:
        return None
    if G_h.dtype not in (torch.float32, torch.float64) or G_w.dtype != G_h.dtype:
        return None
    dh, dw = diagonals(G_h), diagonals(G_w)
    if dh is None or dw is None:
        return None
    kernel = kernels[2]

    def apply(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() < 2 or x.shape[-2:] != (H, W) or x.dtype != G_h.dtype or x.device.type != "cpu":
            raise ValueError(
                f"shifted_kron_matvec: expected a CPU {G_h.dtype} tensor (..., {H}, {W}), "
                f"got {tuple(x.shape)} {x.dtype} on {x.device}"
            )
        lead = x.shape[0] if x.dim() > 2 else 1
        xs = x.detach().reshape(lead, -1, H, W)  # a view whenever the image axes allow
        if xs.stride(-1) != 1:
            xs = xs.contiguous()
        if out is None:
            out = torch.empty(x.shape, dtype=x.dtype)
        elif out.shape != x.shape or out.dtype != x.dtype or not out.is_contiguous():
            raise ValueError(
                f"shifted_kron_matvec: out must be a contiguous {x.dtype} tensor of shape "
                f"{tuple(x.shape)}, got {tuple(out.shape)} {out.dtype}"
            )
        kernel(xs.numpy(), a, b, dh, dw, out.view(xs.shape).numpy())
        return out

    apply.writes_out = True  # takes out=: Lanczos reuses one output buffer
    return apply


#: images with fewer pixels use the GEMM route for ``a I + b G_h (x) G_w``
MIN_SHIFTED_PIXELS = 1 << 10
