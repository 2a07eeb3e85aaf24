"""The first call in a new process: numba's on-disk cache, one compile per dtype, and the rules
that decide when the compiled route and its threads are used.

The times themselves are measured in ``benchmarks/bench_funm.py`` (they depend on the load
of the machine); these tests check the mechanisms.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import linops
from linops import _banded

pytest.importorskip("numba")

# In a fresh interpreter: build SSD's covariance matvec on the compiled route, apply it at
# three batch sizes (one of them a single, contiguous image) and run the compiled Lanczos
# update; report what the dispatchers did.
_CHILD = textwrap.dedent(
    """
    import json, sys, torch, linops
    from linops import _banded
    from linops._funm_lanczos import _matvec
    R = linops.Resize((2, 64, 64), (32, 32))
    A = linops.Identity(R.in_shape) - 0.9 * (R.H @ R)
    for batch in (1, 3, 5):
        v = torch.randn(batch, 2, 64, 64, dtype=torch.float64)
        apply = _matvec(A, v, "torch", pay=True)
        assert getattr(apply, "writes_out", False)
        apply(v)
    res = linops.sqrtm(A, torch.randn(3, 2, 64, 64, dtype=torch.float64), method="lanczos")
    assert res.converged
    out = {}
    for name in ("shifted", "update", "three_term"):
        kernel = _banded._compiled(name, "float64")
        out[name] = {
            "hits": sum(kernel.stats.cache_hits.values()),
            "misses": sum(kernel.stats.cache_misses.values()),
            "signatures": len(kernel.signatures),
            "path": kernel.stats.cache_path,
        }
    print(json.dumps(out))
    """
)


def _child(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.path.dirname(os.path.dirname(linops.__file__)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_kernels_from_the_cache_and_compiles_nothing(tmp_path):
    """A warm-up process fills an empty cache folder; a second process finds every kernel
    there (hits, no misses) and holds one signature per kernel whatever the batch size
    (numba specialises on dtype, rank and layout, and the signatures fix all three: a
    batch of one, whose basis slot is contiguous, used to compile a second version)."""
    first = _child(tmp_path)
    for name, stats in first.items():
        assert stats["misses"] == 1 and stats["hits"] == 0, (name, stats)
        assert stats["path"].startswith(str(tmp_path))
    assert any(tmp_path.rglob("*.nbi")) and any(tmp_path.rglob("*.nbc"))
    second = _child(tmp_path)
    for name, stats in second.items():
        assert stats["hits"] == 1 and stats["misses"] == 0, (name, stats)
        assert stats["signatures"] == 1, (name, stats)


def test_without_a_writable_cache_the_kernels_compile_anyway(monkeypatch):
    """numba raises RuntimeError ("cannot cache function ...: no locator available") when no
    cache folder is writable; the kernel is then compiled without the cache."""
    numba = pytest.importorskip("numba")
    real = numba.njit
    seen = []

    def refusing(*args, **kwargs):
        if "cache" in kwargs:  # ours (numba also calls njit for its own overloads)
            seen.append(kwargs["cache"])
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function '_last_axis': no locator available")
        return real(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", refusing)
    _banded._compiled.cache_clear()
    try:
        kernel = _banded._compiled("last_axis", "float32")
        assert seen == [True, False]
        import numpy as np

        y = np.ones((2, 4), dtype=np.float32)
        out = np.empty((2, 1), dtype=np.float32)
        kernel(y, np.array([1]), np.full((1, 2), 0.5, dtype=np.float32), out)
        assert out.tolist() == [[1.0], [1.0]]
    finally:
        _banded._compiled.cache_clear()


def test_first_funm_call_in_a_new_process_does_not_start_numba():
    """numba's start-up (~0.55 s of CPU with a warm cache: import plus code-generation set-up)
    exceeds the whole budget of a first call, so the first call of a process takes the GEMM
    route; the compiled route comes once the GEMM time spent would have paid for it."""
    code = textwrap.dedent(
        """
        import sys, torch, linops
        from linops import _banded
        R = linops.Resize((3, 64, 64), (32, 32))
        A = linops.Identity(R.in_shape) - 0.9 * (R.H @ R)
        v = torch.randn(4, 3, 64, 64, dtype=torch.float64)
        res = linops.sqrtm(A, v, method="lanczos", tol=1e-8)
        print(res.converged, "numba" in sys.modules, _banded._STATE["gemm_seconds"] > 0)
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["True", "False", "True"]


def test_rent_or_buy_switches_to_the_compiled_route(monkeypatch):
    from linops._funm_lanczos import _matvec

    R = linops.Resize((64, 64), (32, 32))
    A = linops.Identity(R.in_shape) - 0.9 * (R.H @ R)
    v = torch.randn(2, 64, 64, dtype=torch.float64)
    monkeypatch.setattr(_banded, "_STATE", {"ready": False, "gemm_seconds": 0.0, "last_call": 0.0})
    gemm = _matvec(A, v, "torch", pay=False)
    assert gemm.compilable and not getattr(gemm, "writes_out", False)
    _banded.record_gemm_call(0.4)  # 0.4 s spent, and the next call expected to spend as much
    assert _banded.compiled_route_pays()  # 0.4 + 0.4 >= INIT_SECONDS (0.6)
    assert getattr(_matvec(A, v, "torch", pay=False), "writes_out", False)
    assert _banded._STATE["ready"]  # from now on: compiled for every call of the process


def test_kernel_thread_rule(monkeypatch):
    """One thread for calls under PARALLEL_MIN_WORK (~10 ms), and never more threads than
    idle cores: a parallel loop waits for its slowest thread, and one pushed off its core by
    another process waits a scheduler slice (the 2-thread kernel ran up to 30x slower under
    a training job)."""
    numba = pytest.importorskip("numba")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 2)
    monkeypatch.setattr(_banded, "_idle_cores", lambda: 2)
    assert _banded.kernel_threads(48 * 4096 * 15) == 1  # SSD's 16 x 3 x 64^2 batch: ~1 ms
    assert _banded.kernel_threads(_banded.PARALLEL_MIN_WORK) == 2
    monkeypatch.setattr(_banded, "_idle_cores", lambda: 1)  # another process on a core
    assert _banded.kernel_threads(10 * _banded.PARALLEL_MIN_WORK) == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # the user asked for one
    monkeypatch.setattr(_banded, "_idle_cores", lambda: 2)
    assert _banded.kernel_threads(10 * _banded.PARALLEL_MIN_WORK) == 1


def test_idle_cores_counts_this_process_as_one_of_the_load(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 0.0, 0.0))
    assert _banded._idle_cores() == 2  # the load of 1 is this process
    monkeypatch.setattr(os, "getloadavg", lambda: (2.1, 0.0, 0.0))
    assert _banded._idle_cores() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (6.0, 0.0, 0.0))
    assert _banded.kernel_threads(10 * _banded.PARALLEL_MIN_WORK) == 1
