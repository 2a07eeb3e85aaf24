"""A compiled banded-matrix kernel for separable operators on large images (optional numba).

Resize and blur factors are banded (a 2x antialiased downsample's transpose has two nonzeros per
row). Dense GEMMs waste most of their work on zeros; at 256 px the two banded passes below are
about 1.6x faster than the GEMMs on a 2-core CPU (see ``benchmarks/bench_operators.py``). The
kernel needs numba; without it, or for small images, the GEMM route is used.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os

import numpy as np
import torch

#: images with fewer output pixels than this use the GEMM route (compile cost, no gain)
MIN_PIXELS = 1 << 15


# ---------------------------------------------------------------- the kernels
# Plain Python functions at module level, compiled by :func:`_compiled` on first use: a
# module-level function is what numba's on-disk cache can find again in a new process.


def _last_axis(y, start, weights, out):  # pragma: no cover - compiled
    rows = y.shape[0]
    n, width = weights.shape
    for r in _prange(rows):
        for j in range(n):
            acc = 0.0
            s = start[j]
            for k in range(width):
                acc += weights[j, k] * y[r, s + k]
            out[r, j] = acc


def _middle_axis(y, start, weights, out):  # pragma: no cover - compiled
    batch = y.shape[0]
    n, width = weights.shape
    w = y.shape[2]
    for b in _prange(batch):
        for j in range(n):
            s = start[j]
            for c in range(w):
                out[b, j, c] = 0.0
            for k in range(width):
                wk = weights[j, k]
                if wk != 0.0:
                    for c in range(w):
                        out[b, j, c] += wk * y[b, s + k, c]


def _shifted(x, a, b, dh, dw, out, dots):  # pragma: no cover - compiled
    # out[r, c] = a X + b G_h X G_w^T for every (h, w) image X = x[r, c], one image at a
    # time so that it stays in cache. Factors by diagonals, G[i, i + d - p] = D[d, i]. The
    # image is read once, into a zero-padded buffer (x may be strided, as Lanczos basis
    # slots are), so that every inner loop is a contiguous, branch-free axpy that LLVM
    # vectorises (about 3x the dense GEMMs at 64 px on 2 cores).
    rows, per_row, h, w = x.shape
    ph, pw = (dh.shape[0] - 1) // 2, (dw.shape[0] - 1) // 2
    for job in _prange(rows * per_row):
        r, c = job // per_row, job % per_row
        # scratch without zero-filling: only the pads need zeros, every other entry is
        # written before it is read (zeroing was ~15% of the kernel at 64 px)
        xp = np.empty((h, w + 2 * pw), dtype=x.dtype)
        xp[:, :pw] = 0.0
        xp[:, pw + w :] = 0.0
        xp[:, pw : pw + w] = x[r, c]
        tp = np.empty((h + 2 * ph, w), dtype=x.dtype)
        tp[:ph] = 0.0
        tp[ph + h :] = 0.0
        for i in range(h):
            xi = xp[i]
            ti = tp[i + ph]
            d0 = dw[0]
            for j in range(w):
                ti[j] = d0[j] * xi[j]
            for d in range(1, dw.shape[0]):
                dd = dw[d]
                for j in range(w):
                    ti[j] += dd[j] * xi[j + d]
        om = out[r, c]
        acc = 0.0
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
            for j in range(w):  # <x, A x> of this image, while both are in cache
                acc += oi[j] * xi[j + pw]
        dots[r, c] = acc


def _three_term(w, q, q_prev, beta_prev, alpha, beta):  # pragma: no cover - compiled
    # The Lanczos update of every row in two passes over memory instead of torch's four:
    # alpha = <q, w>; then w -= alpha q + beta_prev q_prev while summing ||w||^2
    for r in _prange(w.shape[0]):
        wr, qr, pr = w[r], q[r], q_prev[r]
        acc = 0.0
        for j in range(wr.shape[0]):
            acc += qr[j] * wr[j]
        a, bp = acc, beta_prev[r]
        ss = 0.0
        for j in range(wr.shape[0]):
            x = wr[j] - a * qr[j] - bp * pr[j]
            wr[j] = x
            ss += x * x
        alpha[r] = a
        beta[r] = np.sqrt(ss)


def _update(w, q, q_prev, alpha, beta_prev, beta):  # pragma: no cover - compiled
    # the second pass of _three_term alone, alpha being known (from the matvec's dots)
    for r in _prange(w.shape[0]):
        wr, qr, pr = w[r], q[r], q_prev[r]
        a, bp = alpha[r], beta_prev[r]
        ss = 0.0
        for j in range(wr.shape[0]):
            x = wr[j] - a * qr[j] - bp * pr[j]
            wr[j] = x
            ss += x * x
        beta[r] = np.sqrt(ss)


def _update_into(w, q, q_prev, alpha, beta_prev, beta, out):  # pragma: no cover - compiled
    # _update writing the next Lanczos vector (w - alpha q - beta_prev q_prev) / beta into
    # out (a basis slot) instead of w: the normalisation pass runs on the row while it is
    # still in cache, and no torch operation is needed for it
    for r in _prange(w.shape[0]):
        wr, qr, pr, orow = w[r], q[r], q_prev[r], out[r]
        a, bp = alpha[r], beta_prev[r]
        ss = 0.0
        for j in range(wr.shape[0]):
            x = wr[j] - a * qr[j] - bp * pr[j]
            orow[j] = x
            ss += x * x
        b = np.sqrt(ss)
        beta[r] = b
        s = 1.0 / b if b > 0.0 else 0.0
        for j in range(orow.shape[0]):
            orow[j] *= s


def _prange(n):  # replaced by numba.prange inside the compiled kernels
    return range(n)


# One explicit signature per kernel and dtype: the compiled code does not depend on the batch
# size (numba specialises on dtype, rank and layout, never on shapes), so one compile serves
# every call. The resize kernels take any strides ("A"); the Lanczos kernels take row-major
# arrays ("C", what the Krylov basis slots are), which lets LLVM vectorise the inner loops --
# with layout "A" it cannot assume unit stride. Callers copy other layouts first.
_SIGNATURES = {
    "last_axis": "void({t}[:, :], int64[:], {t}[:, :], {t}[:, :])",
    "middle_axis": "void({t}[:, :, :], int64[:], {t}[:, :], {t}[:, :, :])",
    "shifted": (
        "void({t}[:, :, :, ::1], {t}, {t}, {t}[:, ::1], {t}[:, ::1], {t}[:, :, :, ::1], "
        "float64[:, ::1])"
    ),
    "update": "void({t}[:, ::1], {t}[:, ::1], {t}[:, ::1], {t}[::1], {t}[::1], {t}[::1])",
    "update_into": (
        "void({t}[:, ::1], {t}[:, ::1], {t}[:, ::1], {t}[::1], {t}[::1], {t}[::1], {t}[:, ::1])"
    ),
    "three_term": "void({t}[:, ::1], {t}[:, ::1], {t}[:, ::1], {t}[::1], {t}[::1], {t}[::1])",
}
_PY = {
    "last_axis": _last_axis,
    "middle_axis": _middle_axis,
    "shifted": _shifted,
    "three_term": _three_term,
    "update": _update,
    "update_into": _update_into,
}
_OPTIONS = {"shifted": {"fastmath": True, "error_model": "numpy"}}


@functools.cache
def _numba():
    try:
        import numba
    except ImportError:
        return None
    return numba


@functools.cache
def _compiled(name: str, dtype: str):
    """The compiled kernel ``name`` for ``dtype`` ("float32"/"float64"), or None without numba.

    Compiled with ``cache=True``: the machine code goes to numba's on-disk cache (the
    ``__pycache__`` next to this file, or a user cache directory when that is not
    writable, or ``NUMBA_CACHE_DIR``), so a new process loads it instead of compiling
    (2.6-7.9 s for the parallel kernels). Where no cache location is writable at all it
    compiles without one.
    """
    numba = _numba()
    if numba is None:
        return None
    py = _PY[name]
    py.__globals__["_prange"] = numba.prange
    sig = _SIGNATURES[name].format(t=dtype)
    options = {"parallel": True, **_OPTIONS.get(name, {})}
    torch_threads = torch.get_num_threads()
    try:
        kernel = numba.njit(sig, cache=True, **options)(py)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        kernel = numba.njit(sig, cache=False, **options)(py)
    finally:  # numba's threading layer starts here and sets torch's count too (see _run)
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
    _STATE["ready"] = True
    return kernel


# ------------------------------------------------------- when compiling pays
#: CPU seconds to bring the compiled route up in a new process with a warm on-disk cache:
#: ``import numba`` (~0.25 s) plus numba's code-generation set-up and the cache load
#: (~0.3 s), measured on the 2-core development machine. Without a cache it is 2.6-7.9 s.
INIT_SECONDS = 0.6
_STATE = {"ready": False, "gemm_seconds": 0.0, "last_call": 0.0}


def compiled_route_pays() -> bool:
    """Whether the compiled route should be taken by the next :func:`linops.funm` call.

    Yes once it is up in this process (any kernel compiled or loaded). Before that, only
    when the time this process has spent on the GEMM route of the same matvecs, plus what
    the last call spent there (the guess for the next one), reaches :data:`INIT_SECONDS`
    -- the rent-or-buy rule: a process that calls ``funm`` once on a small problem never
    pays for numba, and one that keeps calling pays at most about twice the best choice in
    hindsight. A first call in a new process therefore costs no more than the GEMM route.
    """
    if not numba_available():
        return False
    return _STATE["ready"] or _STATE["gemm_seconds"] + _STATE["last_call"] >= INIT_SECONDS


def record_gemm_call(seconds: float) -> None:
    """Account a call that spent ``seconds`` on the GEMM route where this one would apply."""
    _STATE["gemm_seconds"] += seconds
    _STATE["last_call"] = seconds


@functools.cache
def numba_available() -> bool:
    """Whether numba can be imported (checked without importing it: that alone takes 0.25 s)."""
    return importlib.util.find_spec("numba") is not None


def _kernels():
    """``(last_axis, middle_axis, shifted)`` for float64, or None without numba (for tests)."""
    if _numba() is None:
        return None
    return tuple(_compiled(k, "float64") for k in ("last_axis", "middle_axis", "shifted"))


#: a call with fewer multiply-adds than this runs on one thread (~10 ms of work): see
#: :func:`kernel_threads`
PARALLEL_MIN_WORK = 10_000_000


def kernel_threads(work: float) -> int:
    """The number of threads for one call of a compiled kernel doing ``work`` multiply-adds.

    The rule: one thread unless the call is long (``work >= PARALLEL_MIN_WORK``, about
    10 ms on one core) *and* the machine has idle cores; then as many as there are idle
    cores, at most ``torch.get_num_threads()`` and numba's thread count. The same rule
    sets the threads of torch's operations in a Lanczos run (:class:`cpu_threads`). Idle cores are
    the CPUs this process may use minus the 1-minute load average, counting this
    process's own thread as one of the load. Why: a parallel loop waits for its slowest
    thread, and a thread that another process has pushed off its core waits for a
    scheduler time slice (milliseconds); with a ~1 ms kernel call at SSD's 64 px batch
    and a training job on the other core, the two-thread kernel ran up to 30x slower
    than the one-thread one. On a long call the same wait is a small fraction.
    """
    limit = torch.get_num_threads()
    if _STATE["ready"]:  # numba is up: its pool may be smaller
        limit = min(limit, _numba().config.NUMBA_NUM_THREADS)
    if limit <= 1 or work < PARALLEL_MIN_WORK:
        return 1
    return max(1, min(limit, _idle_cores()))


class cpu_threads:  # noqa: N801 - used as a context manager, like torch.no_grad
    """Run torch's CPU operations on ``n`` threads inside the block, then restore the setting.

    :func:`linops.funm` runs its Lanczos loop on ``kernel_threads(work per step)`` threads:
    the loop's operations are small (a dot product or an axpy on a ``(B, n)`` batch, a
    batched ``eigh`` of ``k x k`` matrices), and on two threads with another process on the
    second core each one waits for a scheduler slice -- measured on the shared development
    machine: a ``(16, 50, 50)`` ``eigh`` 4.5 ms on one thread and 180-550 ms on two, a
    ``(16, 12288)`` multiply 0.25 ms against 8 ms. ``torch.set_num_threads`` is process-wide:
    other Python threads running torch code during the call see the same setting.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.before = None

    def __enter__(self):
        self.before = torch.get_num_threads()
        if self.n != self.before:
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc) -> None:
        if self.n != self.before:
            torch.set_num_threads(self.before)


def _idle_cores() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): assume an idle machine
        return int(cpus or 1)
    return int(math.floor((cpus or 1) - max(0.0, load - 1.0) + 0.5))


def _run(kernel, work: float, *args) -> None:
    numba = _numba()
    threads = kernel_threads(work)
    before = numba.get_num_threads()
    torch_before = torch.get_num_threads()
    if threads != before:
        numba.set_num_threads(threads)
    try:
        kernel(*args)
    finally:
        if threads != before:
            numba.set_num_threads(before)
        # numba's OpenMP layer shares the runtime with torch: setting numba's count also set
        # torch's (a user's 1 thread became 2 after a compiled call); give torch its own back
        if torch.get_num_threads() != torch_before:
            torch.set_num_threads(torch_before)


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
    if _numba() is None or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    name = "float32" if x.dtype == torch.float32 else "float64"
    last_axis, middle_axis = _compiled("last_axis", name), _compiled("middle_axis", name)
    h_out, w_out = out_hw
    h_in, w_in = x.shape[-2:]
    dtype = np.float32 if x.dtype == torch.float32 else np.float64
    y = np.ascontiguousarray(x.detach().numpy()).reshape(-1, w_in)
    tmp = np.empty((y.shape[0], w_out), dtype=dtype)
    right = right_band[1].astype(dtype)
    _run(last_axis, y.shape[0] * w_out * right.shape[1], y, right_band[0], right, tmp)
    out = np.empty((tmp.shape[0] // h_in, h_out, w_out), dtype=dtype)
    left = left_band[1].astype(dtype)
    work = out.size * left.shape[1]
    _run(middle_axis, work, tmp.reshape(-1, h_in, w_out), left_band[0], left, out)
    return torch.from_numpy(out).reshape(*x.shape[:-2], h_out, w_out)


def shifted_kron_matvec(G_h: torch.Tensor, G_w: torch.Tensor, a: float, b: float):  # noqa: N803
    """A compiled ``X -> a X + b G_h X G_w^T`` on the last two axes, or None.

    For banded square factors (the ``R^T R`` of a resize or a blur, the covariances of
    SSD's posterior) on CPU in float32/float64. The returned function ``apply(x, out=None)``
    maps any tensor ``(..., H, W)`` (a strided one is copied first) to a contiguous tensor of the
    same shape, written into ``out`` when given; each image is filtered
    along both axes while it is in cache, one pass over memory instead of the two GEMMs
    (mostly over zeros) of the dense route. None when numba is missing, a factor is not
    banded, or the images have fewer than :data:`MIN_SHIFTED_PIXELS` pixels (there the
    GEMMs are as fast and the compile time is not repaid).
    """
    plan = shifted_plan(G_h, G_w)
    if plan is None or _numba() is None:
        return None
    dh, dw = plan
    H, W = G_h.shape[0], G_w.shape[0]  # noqa: N806
    kernel = _compiled("shifted", "float32" if G_h.dtype == torch.float32 else "float64")
    per_pixel = dh.shape[0] + dw.shape[0] + 1  # multiply-adds

    def apply(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() < 2 or x.shape[-2:] != (H, W) or x.dtype != G_h.dtype or x.device.type != "cpu":
            raise ValueError(
                f"shifted_kron_matvec: expected a CPU {G_h.dtype} tensor (..., {H}, {W}), "
                f"got {tuple(x.shape)} {x.dtype} on {x.device}"
            )
        lead = x.shape[0] if x.dim() > 2 else 1
        xs = x.detach().reshape(lead, -1, H, W)  # a view whenever the image axes allow
        if not xs.is_contiguous():
            xs = xs.contiguous()
        if out is None:
            out = torch.empty(x.shape, dtype=x.dtype)
        elif out.shape != x.shape or out.dtype != x.dtype or not out.is_contiguous():
            raise ValueError(
                f"shifted_kron_matvec: out must be a contiguous {x.dtype} tensor of shape "
                f"{tuple(x.shape)}, got {tuple(out.shape)} {out.dtype}"
            )
        work = xs.shape[0] * xs.shape[1] * H * W * per_pixel
        dots = np.empty(xs.shape[:2])
        _run(kernel, work, xs.numpy(), a, b, dh, dw, out.view(xs.shape).numpy(), dots)
        apply.dots = dots  # <x, A x> per (row, image): Lanczos' alpha comes for free
        return out

    apply.writes_out = True  # takes out=: Lanczos reuses one output buffer
    apply.dots = None  # after a call: <x, A x> per (leading index, image), float64
    return apply


def shifted_plan(G_h: torch.Tensor, G_w: torch.Tensor):  # noqa: N803
    """The factors' diagonals ``(D_h, D_w)`` when the compiled route applies, else None.

    Needs numba (not imported here), CPU float32/float64 factors, images of at least
    :data:`MIN_SHIFTED_PIXELS` pixels and factors banded enough (:func:`diagonals`).
    """
    H, W = G_h.shape[0], G_w.shape[0]  # noqa: N806
    if not numba_available() or G_h.device.type != "cpu" or H * W < MIN_SHIFTED_PIXELS:
        return None
    if G_h.dtype not in (torch.float32, torch.float64) or G_w.dtype != G_h.dtype:
        return None
    dh, dw = diagonals(G_h), diagonals(G_w)
    if dh is None or dw is None:
        return None
    return dh, dw


def three_term(
    w: torch.Tensor,
    q: torch.Tensor,
    q_prev: torch.Tensor,
    beta_prev: torch.Tensor,
    alpha: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
):
    """The compiled Lanczos update (``w`` in place), or None when it does not apply.

    Only once the compiled route is up in this process (see :func:`compiled_route_pays`)
    and for contiguous CPU float32/float64 ``(B, n)`` tensors (basis slots qualify). Returns
    ``(w, alpha, beta)`` like :func:`linops.lanczos_step`, with ``w`` updated in place. With
    ``alpha`` given (the matvec's dots) one pass instead of two; with ``out`` too, the
    normalised next vector ``w_new / beta`` (zero where ``beta = 0``) is written there and
    ``w`` is left as it was: ``(out, alpha, beta)`` is returned.
    """
    if (
        not _STATE["ready"]
        or w.device.type != "cpu"
        or w.dtype not in (torch.float32, torch.float64)
    ):
        return None
    if any(t.dim() != 2 or not t.is_contiguous() or t.requires_grad for t in (w, q, q_prev)):
        return None
    name = "float32" if w.dtype == torch.float32 else "float64"
    beta = torch.empty(w.shape[0], dtype=w.dtype)
    bp = beta_prev.to(w.dtype).contiguous()
    if alpha is not None:  # known already: one pass instead of two
        alpha = alpha.to(w.dtype).contiguous()
        args = (w.numpy(), q.numpy(), q_prev.numpy(), alpha.numpy(), bp.numpy(), beta.numpy())
        if out is not None and out.is_contiguous() and out.shape == w.shape:
            _run(_compiled("update_into", name), w.numel(), *args, out.numpy())
            return out, alpha, beta
        _run(_compiled("update", name), w.numel(), *args)
        return w, alpha, beta
    kernel = _compiled("three_term", name)
    alpha = torch.empty(w.shape[0], dtype=w.dtype)
    _run(
        kernel,
        2 * w.numel(),
        w.numpy(),
        q.numpy(),
        q_prev.numpy(),
        bp.numpy(),
        alpha.numpy(),
        beta.numpy(),
    )
    return w, alpha, beta


#: images with fewer pixels use the GEMM route for ``a I + b G_h (x) G_w``
MIN_SHIFTED_PIXELS = 1 << 10
