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

    return last_axis, middle_axis


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


def two_sided(x: torch.Tensor, left_band, right_band, out_hw) -> torch.Tensor | None:
    """``L X R^T`` on the last two axes with banded ``L`` and ``R`` given by :func:`band`.

    Returns None when the compiled route does not apply (no numba, not CPU, not float32/64).
    """
    kernels = _kernels()
    if kernels is None or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    last_axis, middle_axis = kernels
    h_out, w_out = out_hw
    h_in, w_in = x.shape[-2:]
    dtype = np.float32 if x.dtype == torch.float32 else np.float64
    y = np.ascontiguousarray(x.detach().numpy()).reshape(-1, w_in)
    tmp = np.empty((y.shape[0], w_out), dtype=dtype)
    last_axis(y, right_band[0], right_band[1].astype(dtype), tmp)
    out = np.empty((tmp.shape[0] // h_in, h_out, w_out), dtype=dtype)
    middle_axis(tmp.reshape(-1, h_in, w_out), left_band[0], left_band[1].astype(dtype), out)
    return torch.from_numpy(out).reshape(*x.shape[:-2], h_out, w_out)
