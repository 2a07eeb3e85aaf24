"""Fused kernels: the torch specification against the Triton kernels, in the same run.

Run: ``pytest benchmarks/bench_fused.py --benchmark-enable`` on a machine with a CUDA device
and triton installed. ``LINEARDIFF_BENCH_DEVICE`` picks the device (default ``cuda`` when one
is present, else ``cpu``); on CPU only the torch routes run, since Triton's interpreter is for
testing, not timing. Shapes: SSD's covariance matvec on a batch of 64 RGB images at 64 and 128
pixels, and one Lanczos update for those 64 x 3 vectors of a 64 x 64 image (n = 4096). Each
Triton benchmark names its torch baseline; the summary prints the speed-ups.
"""

import os

import pytest
import torch

from linops._fused import kron_matvec, lanczos_step, triton_available

DEVICE = os.environ.get("LINEARDIFF_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
DTYPE = torch.float32
KRON_SHAPES = [(64, 3, 64, 64), (64, 3, 128, 128)]
LANCZOS_SHAPES = [(192, 4096)]

needs_triton_device = pytest.mark.skipif(
    not (DEVICE.startswith("cuda") and triton_available()),
    reason=f"Triton benchmarks need a CUDA device and triton (device here: {DEVICE})",
)


def _sync():
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn):
    """``fn`` followed by a device synchronisation, so the timing covers the kernels."""

    def run():
        out = fn()
        _sync()
        return out

    return run


def _tag(benchmark, group, baseline):
    benchmark.group = group
    benchmark.extra_info["baseline"] = baseline


def _name(shape):
    return "x".join(str(s) for s in shape)


@pytest.fixture(scope="module", params=KRON_SHAPES, ids=_name)
def kron_case(request):
    shape = request.param
    H, W = shape[-2:]  # noqa: N806
    g = torch.Generator().manual_seed(0)
    v = torch.randn(*shape, dtype=DTYPE, generator=g).to(DEVICE)
    # SSD's covariance I - rho c^2 (R_h^T R_h) (x) (R_w^T R_w) for a 2x average pool R
    # (c = 2, rho = 0.9): the spectrum of A is in [0.1, 1]
    R_h = torch.kron(torch.eye(H // 2), torch.full((1, 2), 0.5)).to(DEVICE, DTYPE)  # noqa: N806
    R_w = torch.kron(torch.eye(W // 2), torch.full((1, 2), 0.5)).to(DEVICE, DTYPE)  # noqa: N806
    return _name(shape), v, R_h.mT @ R_h, R_w.mT @ R_w, 1.0, -0.9 * 4.0


@pytest.fixture(scope="module", params=LANCZOS_SHAPES, ids=_name)
def lanczos_case(request):
    B, n = request.param  # noqa: N806
    g = torch.Generator().manual_seed(0)
    w, v, v_prev = (torch.randn(B, n, dtype=DTYPE, generator=g).to(DEVICE) for _ in range(3))
    beta_prev = torch.rand(B, dtype=DTYPE, generator=g).to(DEVICE)
    return _name((B, n)), w, v, v_prev, beta_prev


def test_kron_matvec_torch(benchmark, kron_case):
    name, v, G_h, G_w, a, b = kron_case  # noqa: N806
    _tag(benchmark, f"kron_matvec {name}", None)
    benchmark(_timed(lambda: kron_matvec(v, G_h, G_w, a, b, backend="torch")))


@needs_triton_device
def test_kron_matvec_triton(benchmark, kron_case):
    name, v, G_h, G_w, a, b = kron_case  # noqa: N806
    _tag(benchmark, f"kron_matvec {name}", f"test_kron_matvec_torch[{name}]")
    ref = kron_matvec(v, G_h, G_w, a, b, backend="torch")
    kron_matvec(v, G_h, G_w, a, b, backend="triton")  # compile outside the timed region
    out = benchmark(_timed(lambda: kron_matvec(v, G_h, G_w, a, b, backend="triton")))
    # float32 rounding of sums of at most H + W + 2 terms, relative to the largest entry
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_lanczos_step_torch(benchmark, lanczos_case):
    name, w, v, v_prev, beta_prev = lanczos_case
    _tag(benchmark, f"lanczos_step {name}", None)
    benchmark(_timed(lambda: lanczos_step(w, v, v_prev, beta_prev, backend="torch")))


@needs_triton_device
def test_lanczos_step_triton(benchmark, lanczos_case):
    name, w, v, v_prev, beta_prev = lanczos_case
    _tag(benchmark, f"lanczos_step {name}", f"test_lanczos_step_torch[{name}]")
    ref = lanczos_step(w, v, v_prev, beta_prev, backend="torch")
    lanczos_step(w, v, v_prev, beta_prev, backend="triton")  # compile outside the timed region
    out = benchmark(_timed(lambda: lanczos_step(w, v, v_prev, beta_prev, backend="triton")))
    for x, y in zip(out, ref, strict=True):
        # float32 sums of n = 4096 products: ~1e-4 relative to the largest entry at worst
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4 * float(y.abs().max()))
