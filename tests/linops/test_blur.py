"""GaussianBlur against scipy.ndimage.gaussian_filter (an independent dense route)."""

import pytest
import torch
from dense_references import blur_reference
from hypothesis import given
from hypothesis import strategies as st

import linops
from linops.testing import check_dense, dottest

BOUNDARIES = ["reflect", "symmetric", "circular", "replicate", "zeros"]


@given(
    boundary=st.sampled_from(BOUNDARIES),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    sigma=st.tuples(st.floats(0.0, 3.0), st.floats(0.0, 3.0)),
)
def test_against_scipy(boundary, h, w, sigma):
    if boundary == "reflect" and (h == 1 or w == 1):
        # scipy's "mirror" with a single sample is undefined; ours repeats the sample
        return
    op = linops.GaussianBlur((h, w), sigma, boundary=boundary)
    check_dense(op, reference=blur_reference((h, w), sigma, boundary))
    dottest(op, dtype=torch.float32)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_self_adjoint_flag_is_true_exactly_when_symmetric(boundary):
    op = linops.GaussianBlur((7, 6), 1.2, boundary=boundary)
    d = op.to_dense()
    assert op.is_self_adjoint == bool(torch.equal(d, d.T))


@pytest.mark.parametrize("boundary", ["reflect", "symmetric", "circular", "replicate"])
def test_constants_are_preserved(boundary):
    op = linops.GaussianBlur((3, 10, 11), 1.7, boundary=boundary)
    x = torch.full((3, 10, 11), 2.5, dtype=torch.float64)
    torch.testing.assert_close(op.apply(x), x, rtol=1e-14, atol=0)


def test_zero_sigma_is_identity():
    op = linops.GaussianBlur((5, 5), 0.0)
    x = torch.randn(5, 5)
    assert torch.equal(op.apply(x), x)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            dict(shape=(5,), sigma=1.0),
            r"GaussianBlur: expected shape \(C, H, W\) or \(H, W\), got \(5,\)",
        ),
        (dict(shape=(5, 5), sigma=-1.0), r"GaussianBlur: expected sigma >= 0 .* got -1.0"),
        (dict(shape=(5, 5), sigma=1.0, boundary="wrap"), r"expected boundary in .*got 'wrap'"),
        (dict(shape=(5, 5), sigma=1.0, truncate=0), r"expected truncate > 0, got 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        linops.GaussianBlur(**kwargs)
