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
    y = torch.randn(3, *op.out_shape, dtype=dtype)
    x = torch.randn(3, *op.in_shape, dtype=dtype)
    fast_adj = op._banded(y, adjoint=True)
    assert fast_adj is not None  # the route was taken
    _, mh, mw = op._matrices_for(y)
    slow_adj = op._two_sided(y, mh.mH, mw.conj())
    eps = torch.finfo(dtype).eps
    # different summation orders of the same few products per output: 16 eps of the scale
    torch.testing.assert_close(fast_adj, slow_adj, rtol=0, atol=16 * eps * y.abs().max().item())
    fast_fwd = op._banded(x, adjoint=False)
    _, mh, mw = op._matrices_for(x)
    torch.testing.assert_close(
        fast_fwd, op._two_sided(x, mh, mw.T), rtol=0, atol=16 * eps * x.abs().max().item()
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
