"""Resize: F.interpolate semantics, Kronecker factors, two adjoint routes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dense_references import resize_weights_1d
from hypothesis import given
from hypothesis import strategies as st

import linops
from linops.testing import dottest

MODES = [
    ("bilinear", True),
    ("bilinear", False),
    ("bicubic", True),
    ("bicubic", False),
    ("nearest", False),
    ("nearest-exact", False),
    ("area", False),
]

sizes = st.integers(1, 13)


@st.composite
def resize_cases(draw):
    mode, antialias = draw(st.sampled_from(MODES))
    c = draw(st.integers(1, 3))
    h, w, oh, ow = draw(sizes), draw(sizes), draw(sizes), draw(sizes)
    align = mode in ("bilinear", "bicubic") and draw(st.booleans()) and not antialias
    batch = draw(st.sampled_from([(), (2,), (2, 1)]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return (
        dict(mode=mode, antialias=antialias, align_corners=align),
        (c, h, w),
        (oh, ow),
        batch,
        dtype,
    )


def _skip_torch_bug(kw, in_hw, out_hw):
    # PyTorch's antialiased kernel is wrong for one-pixel-wide outputs with a height change
    # (see test_torch_antialias_bug_is_routed_around): there the operator differs on purpose.
    return kw["antialias"] and out_hw[1] == 1 and out_hw[0] != in_hw[0]


@given(resize_cases())
def test_apply_is_interpolate(case):
    kw, shape, out_size, batch, dtype = case
    if _skip_torch_bug(kw, shape[1:], out_size):
        return
    R = linops.Resize(shape, out_size, **kw)
    x = torch.randn(*batch, *shape, dtype=dtype)
    flat = x.reshape(-1, *shape)
    extra = {} if kw["mode"] in ("nearest", "nearest-exact", "area") else kw
    want = F.interpolate(
        flat, size=out_size, mode=kw["mode"], **{k: v for k, v in extra.items() if k != "mode"}
    )
    # bit-exact: the forward map is interpolate itself
    assert torch.equal(R.apply(x), want.reshape(*batch, shape[0], *out_size))


@given(resize_cases())
def test_resize_equals_kronecker_of_factors(case):
    kw, shape, out_size, _, _ = case
    R = linops.Resize(shape, out_size, **kw)
    r_h, r_w = R.factors()
    dense = R.to_dense()
    kron = torch.kron(torch.eye(shape[0], dtype=torch.float64), torch.kron(r_h, r_w))
    # each dense entry is w_h * w_w of the same float64 weights (bit-exact), except where
    # clamped border taps land on one pixel and are summed in another order: 1e-14
    torch.testing.assert_close(dense, kron, rtol=0, atol=1e-14)
    x = torch.randn(2, *shape, dtype=torch.float64)
    # applied to data the two routes sum in different orders: 1e-14 of the scale of x
    torch.testing.assert_close(
        R.apply(x), R.as_kronecker().apply(x), rtol=0, atol=1e-14 * x.abs().max().item() * 8
    )


@given(resize_cases())
def test_adjoint_identity(case):
    kw, shape, out_size, _, dtype = case
    dottest(linops.Resize(shape, out_size, **kw), dtype=dtype)


@given(resize_cases())
def test_adjoint_by_factors_matches_vjp(case):
    kw, shape, out_size, batch, dtype = case
    R = linops.Resize(shape, out_size, **kw)
    y = torch.randn(*batch, shape[0], *out_size, dtype=dtype)
    a = R.apply_adjoint(y)
    b = R.apply_adjoint_vjp(y)
    if _skip_torch_bug(kw, shape[1:], out_size):
        return  # the VJP differentiates torch's (wrong) kernel there
    eps = torch.finfo(dtype).eps
    # both are sums of at most ~(2 * ceil(scale) + 4)^2 weighted terms of y: 64 eps of the scale
    torch.testing.assert_close(a, b, rtol=0, atol=64 * eps * max(1.0, y.abs().max().item()) * 4)


@pytest.mark.parametrize(
    "mode,antialias",
    [("bilinear", True), ("bilinear", False), ("bicubic", True), ("bicubic", False)],
)
@pytest.mark.parametrize("n,m", [(64, 32), (17, 8), (8, 17), (12, 9), (5, 5)])
def test_factors_against_published_weights(mode, antialias, n, m):
    R = linops.Resize((n, 3), (m, 3), mode=mode, antialias=antialias)
    r_h, _ = R.factors()
    ref = torch.from_numpy(resize_weights_1d(n, m, mode, antialias))
    # independent float64 evaluation of the same formulas: rounding only
    torch.testing.assert_close(r_h, ref, rtol=0, atol=1e-14)


def test_interior_rows_of_2x_antialiased_bilinear():
    r_h, _ = linops.Resize((64, 64), (32, 32)).factors()
    # the anchors' measured fact: interior rows are [1, 3, 3, 1] / 8, all rows sum to 1
    torch.testing.assert_close(r_h[5, 9:13], torch.tensor([1, 3, 3, 1], dtype=torch.float64) / 8)
    torch.testing.assert_close(r_h.sum(1), torch.ones(32, dtype=torch.float64))


def test_lambda_max_of_normal_operator_matches_anchor():
    R = linops.Resize((64, 64), (32, 32))
    r_h, _ = R.factors()
    # anchor: lambda_max(R^T R) = sigma_max(R_1)^4 = 0.2507809 at 64 -> 32
    s = torch.linalg.svdvals(r_h)[0].item()
    assert abs(s**4 - 0.2507809) < 1e-6


def test_torch_antialias_bug_is_routed_around():
    ramp = torch.arange(16, dtype=torch.float64).reshape(1, 16, 1).expand(1, 16, 3).contiguous()
    torch_out = F.interpolate(ramp[None], size=(4, 1), mode="bilinear", antialias=True)[0]
    R = linops.Resize((1, 16, 3), (4, 1))
    ours = R.apply(ramp)
    # torch returns the weights of row 0 for every row: a constant column
    assert torch.allclose(torch_out, torch_out[:, :1].expand_as(torch_out))
    # ours is the separable definition: a downsampled ramp increases, and equals the
    # published antialiased bilinear weights applied to the column
    ref = torch.from_numpy(resize_weights_1d(16, 4, "bilinear", True)) @ torch.arange(
        16, dtype=torch.float64
    )
    torch.testing.assert_close(ours[0, :, 0], ref, rtol=0, atol=1e-13)
    assert (ours[0, 1:, 0] > ours[0, :-1, 0]).all()
    dottest(R)


def test_same_size_is_identity_and_self_adjoint():
    R = linops.Resize((3, 7, 5), (7, 5), mode="bicubic")
    assert R.is_self_adjoint
    x = torch.randn(3, 7, 5)
    assert torch.equal(R.apply(x), x)


def test_complex_input_is_split():
    R = linops.Resize((6, 6), (3, 3))
    z = torch.complex(torch.randn(6, 6), torch.randn(6, 6))
    out = R.apply(z)
    torch.testing.assert_close(out, torch.complex(R.apply(z.real), R.apply(z.imag)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            dict(in_shape=(2, 3, 4, 5), out_size=2),
            r"Resize: expected in_shape \(C, H, W\) or \(H, W\), got \(2, 3, 4, 5\)",
        ),
        (
            dict(in_shape=(4, 4), out_size=(2, 2, 2)),
            r"Resize: expected out_size \(h, w\), got \(2, 2, 2\)",
        ),
        (
            dict(in_shape=(4, 4), out_size=2, mode="lanczos"),
            r"Resize: expected mode in .*got 'lanczos'",
        ),
        (
            dict(in_shape=(4, 4), out_size=2, mode="nearest"),
            r"antialias=True needs mode in .*got 'nearest'",
        ),
        (
            dict(in_shape=(4, 4), out_size=0),
            r"Resize: out_size: expected a sequence of positive ints, got \(0, 0\)",
        ),
        (
            dict(in_shape=(4, 4), out_size=2, adjoint="autograd"),
            r"expected adjoint 'factors' or 'vjp', got 'autograd'",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        linops.Resize(**kwargs)


def test_float32_factors_are_built_in_float32():
    R = linops.Resize((3, 16, 16), (8, 8))
    r32, _ = R.factors(dtype=torch.float32)
    assert r32.dtype == torch.float32
    np.testing.assert_allclose(r32.numpy(), R.factors()[0].numpy(), atol=1e-7)
