"""The compiled banded route of Kronecker operators equals the GEMM route."""

import pytest
import torch

import linops
from linops import _banded

pytest.importorskip("numba")


@pytest.fixture
def always_banded(monkeypatch):
    monkeypatch.setattr(_banded, "MIN_PIXELS", 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "make",
    [
        lambda: linops.Resize((2, 40, 36), (20, 18)),
        lambda: linops.Resize((1, 68, 92), (32, 44), mode="bicubic"),
        lambda: linops.GaussianBlur((1, 48, 40), 1.0, boundary="reflect"),
    ],
)
def test_banded_route_matches_gemm_route(always_banded, make, dtype):
    op = make()
    gen = torch.Generator().manual_seed(0)  # fixed inputs: the bound below is empirical and
    # rare elements of random float32 inputs have exceeded it (bicubic, 7.8e-6 against 7.4e-6)
    y = torch.randn(3, *op.out_shape, dtype=dtype, generator=gen)
    x = torch.randn(3, *op.in_shape, dtype=dtype, generator=gen)
    fast_adj = op._banded(y, adjoint=True)
    assert fast_adj is not None  # the route was taken
    _, mh, mw = op._matrices_for(y)
    slow_adj = op._two_sided(y, mh.mH, mw.conj())
    eps = torch.finfo(dtype).eps
    # different summation orders of the same few products per output: 16 eps of the scale
    # (32 for bicubic's longer, signed kernels)
    tol = 32 if getattr(op, "mode", "") == "bicubic" else 16
    torch.testing.assert_close(fast_adj, slow_adj, rtol=0, atol=tol * eps * y.abs().max().item())
    fast_fwd = op._banded(x, adjoint=False)
    _, mh, mw = op._matrices_for(x)
    torch.testing.assert_close(
        fast_fwd, op._two_sided(x, mh, mw.T), rtol=0, atol=tol * eps * x.abs().max().item()
    )
    linops.testing.dottest(op, dtype=dtype)


def test_not_taken_for_small_images_complex_or_autograd():
    R = linops.Resize((16, 16), (8, 8))
    assert R._banded(torch.randn(8, 8), adjoint=True) is None  # below MIN_PIXELS
    big = linops.Resize((256, 256), (128, 128))
    y = torch.randn(128, 128, requires_grad=True)
    assert big._banded(y, adjoint=True) is None
    assert big._banded(y.detach(), adjoint=True) is not None
    assert (
        linops.Kronecker(torch.eye(256, dtype=torch.complex64), torch.eye(256))._banded(
            torch.randn(1, 256, 256), adjoint=True
        )
        is None
    )


def test_adjoint_at_256_uses_it_and_stays_exact():
    R = linops.Resize((1, 256, 256), (128, 128))
    y = torch.randn(2, 1, 128, 128, dtype=torch.float64)
    torch.testing.assert_close(R.apply_adjoint(y), R.apply_adjoint_vjp(y), rtol=0, atol=1e-13)


# ----------------------------------------------- a I + b G_h X G_w^T (Lanczos' matvec)
def _gram(make):
    op = make()
    m_h, m_w = op.factors()
    return (m_h.T @ m_h).double(), (m_w.T @ m_w).double()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "make",
    [
        lambda: linops.Resize((64, 64), (32, 32)),
        lambda: linops.Resize((96, 104), (48, 52), mode="bicubic"),
        "hand-made",
    ],
)
def test_shifted_kron_matvec_matches_dense(make, dtype):
    if make == "hand-made":  # different half-bandwidths (1 and 3), non-square images
        G_h = (
            torch.diag(torch.rand(40) + 2)
            + torch.diag(torch.rand(39), 1)
            + torch.diag(torch.rand(39), -1)
        )  # noqa: N806
        G_w = torch.eye(56) * 3 + torch.diag(torch.rand(53), 3) - torch.diag(torch.rand(55), -1)  # noqa: N806
        G_h, G_w = G_h.double(), G_w.double()  # noqa: N806
    else:
        G_h, G_w = _gram(make)  # noqa: N806
    G_h, G_w = G_h.to(dtype), G_w.to(dtype)  # noqa: N806
    apply = _banded.shifted_kron_matvec(G_h, G_w, 0.75, -1.25)
    assert apply is not None
    H, W = G_h.shape[0], G_w.shape[0]  # noqa: N806
    x = torch.randn(5, 3, H, W, dtype=dtype, generator=torch.Generator().manual_seed(0))
    dense = 0.75 * x - 1.25 * (G_h @ x @ G_w.T)
    eps = torch.finfo(dtype).eps
    # a few dozen products per output, summed in another order: 64 eps of the output scale
    atol = 64 * eps * dense.abs().max().item()
    torch.testing.assert_close(apply(x), dense, rtol=0, atol=atol)
    # strided rows (a Lanczos basis slot) and a given output buffer
    basis = torch.randn(5, 4, 3 * H * W, dtype=dtype)
    slot = basis[:, 2].view(5, 3, H, W)
    assert not slot.is_contiguous()
    out = torch.empty(5, 3, H, W, dtype=dtype)
    got = apply(slot, out=out)
    assert got.data_ptr() == out.data_ptr()
    torch.testing.assert_close(got, 0.75 * slot - 1.25 * (G_h @ slot @ G_w.T), rtol=0, atol=atol)


def test_shifted_kron_matvec_refuses_what_it_cannot_do():
    G = torch.eye(64, dtype=torch.float64)
    assert (
        _banded.shifted_kron_matvec(
            torch.eye(8, dtype=torch.float64), torch.eye(8, dtype=torch.float64), 1, 1
        )
        is None
    )
    assert (
        _banded.shifted_kron_matvec(torch.ones(64, 64, dtype=torch.float64), G, 1, 1) is None
    )  # dense
    assert _banded.shifted_kron_matvec(G.to(torch.complex128), G.to(torch.complex128), 1, 1) is None
    apply = _banded.shifted_kron_matvec(G, G, 1.0, 1.0)
    with pytest.raises(
        ValueError,
        match=r"shifted_kron_matvec: expected a CPU torch.float64 tensor \(\.\.\., 64, 64\)",
    ):
        apply(torch.randn(2, 32, 32, dtype=torch.float64))
    with pytest.raises(ValueError, match="out must be a contiguous"):
        apply(
            torch.randn(2, 64, 64, dtype=torch.float64),
            out=torch.empty(2, 64, 32, dtype=torch.float64),
        )


def test_lanczos_on_the_banded_route_matches_the_exact_path():
    """sqrt of SSD's covariance at 64 -> 32 px: the compiled matvec inside Lanczos."""
    R = linops.Resize((2, 64, 64), (32, 32))
    A = linops.Identity(R.in_shape) - 0.9 * (R.H @ R)
    v = torch.randn(3, 2, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    from linops._funm_lanczos import _matvec

    assert getattr(_matvec(A, v, "torch"), "writes_out", False)  # the banded route is taken
    exact = linops.sqrtm(A, v).value
    first = linops.sqrtm(A, v, method="lanczos", tol=1e-12)
    kept = first.value.clone()
    again = linops.sqrtm(A, v, method="lanczos", tol=1e-12)  # reuses the kept basis storage
    assert first.converged
    # tol 1e-12 (relative): 1e-11 leaves the estimate's margin and rounding
    assert ((first.value - exact).norm() / exact.norm()).item() < 1e-11
    assert torch.equal(first.value, kept)  # the result does not live in the reused storage
    assert torch.equal(first.value, again.value)
    linops.clear_workspace()
    third = linops.sqrtm(A, v, method="lanczos", tol=1e-12)
    assert torch.equal(first.value, third.value)


def test_lanczos_keeps_inputs_that_require_grad_off_the_compiled_route():
    R = linops.Resize((64, 64), (32, 32))
    A = linops.Identity(R.in_shape) - 0.5 * (R.H @ R)
    v = torch.randn(2, 64, 64, dtype=torch.float64, requires_grad=True)
    from linops._funm_lanczos import _matvec

    assert not getattr(_matvec(A, v, "torch"), "writes_out", False)
    y = linops.sqrtm(A, v, method="lanczos", tol=1e-10).value
    with torch.no_grad():
        z = linops.sqrtm(A, v, method="lanczos", tol=1e-10).value
    # GEMM route vs compiled route, same Krylov steps: rounding only
    torch.testing.assert_close(y.detach(), z, rtol=0, atol=1e-12)


_THREADS_SCRIPT = """
import torch, linops
from linops._funm_lanczos import _matvec
torch.set_num_threads({n})
R = linops.Resize((2, 64, 64), (32, 32))
A = linops.Identity(R.in_shape) - 0.9 * (R.H @ R)
v = torch.randn(3, 2, 64, 64, dtype=torch.float64)
assert getattr(_matvec(A, v, "torch"), "writes_out", False)  # the compiled route is taken
linops.sqrtm(A, v, method="lanczos", tol=1e-8)
print(torch.get_num_threads())
"""


@pytest.mark.parametrize("n", [1, 2])
def test_a_compiled_call_leaves_torchs_thread_count_alone(n):
    # numba's OpenMP layer shares its runtime with torch: restoring numba's count after a
    # kernel once set torch's too (a user's 1 thread became 2). A fresh process, because the
    # thread settings and numba's start are process-wide.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT.format(n=n)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == str(n)
