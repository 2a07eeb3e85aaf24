"""Composition, sums, scalar multiples and adjoints against dense matrix algebra."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import linops
from linops.testing import check_dense, dottest


def _dense_op(draw, m, n):
    kind = (
        draw(st.sampled_from(["dense", "resize", "diag"]))
        if m == n
        else draw(st.sampled_from(["dense", "resize"]))
    )
    if kind == "dense":
        mat = torch.randn(m, n, dtype=torch.float64)
        return linops.Dense(mat), mat
    if kind == "diag":
        d = torch.randn(n, dtype=torch.float64)
        return linops.Diagonal(d), torch.diag(d)
    # a 1 x n image resized to 1 x m, as a flat vector operator
    r = linops.Resize((1, n), (1, m), mode=draw(st.sampled_from(["bilinear", "bicubic"])))
    op = linops.FunctionOperator(
        lambda x, r=r: r.apply(x.reshape(-1, 1, n)).reshape(-1, m), (n,), (m,)
    )
    return op, r.to_dense()


@st.composite
def chains(draw):
    dims = draw(st.lists(st.integers(1, 7), min_size=2, max_size=5))
    ops, mats = [], []
    for out_dim, in_dim in zip(dims[:-1], dims[1:], strict=False):
        op, mat = _dense_op(draw, out_dim, in_dim)
        ops.append(op)
        mats.append(mat)
    return ops, mats


@given(chains())
def test_composition_matches_matrix_product(chain):
    ops, mats = chain
    op = ops[0]
    want = mats[0]
    for o, m in zip(ops[1:], mats[1:], strict=False):
        op = op @ o
        want = want @ m
    # the reference product itself rounds at ~eps * prod ||A_i||, which exceeds
    # eps * ||prod A_i|| when the random factors cancel: a 100x wider margin than the default
    check_dense(op, reference=want, C=1000.0)
    dottest(op, dtype=torch.float32, C=1000.0)


@given(n=st.integers(1, 6), m=st.integers(1, 6), c1=st.floats(-3, 3), c2=st.floats(-3, 3))
def test_linear_combination_matches_dense(n, m, c1, c2):
    a, b = torch.randn(m, n, dtype=torch.float64), torch.randn(m, n, dtype=torch.float64)
    op = c1 * linops.Dense(a) - linops.Dense(b) / 2 + c2 * linops.Dense(b)
    check_dense(op, reference=c1 * a - b / 2 + c2 * b)
    check_dense(op.H, reference=(c1 * a - b / 2 + c2 * b).T)


def test_complex_scale_adjoint_conjugates():
    a = torch.randn(3, 4, dtype=torch.float64)
    op = (1 + 2j) * linops.Dense(a)
    assert op.is_complex and not op.is_self_adjoint
    check_dense(op, reference=(1 + 2j) * a.to(torch.complex128))
    check_dense(op.H, reference=(1 - 2j) * a.T.to(torch.complex128))


def test_double_adjoint_returns_original():
    R = linops.Resize((6, 6), (3, 3))
    assert R.H.H is R
    assert (R @ R.H).H is not None


def test_self_adjoint_detection():
    R = linops.Resize((6, 6), (3, 3))
    B = linops.GaussianBlur((6, 6), 1.0, boundary="circular")
    assert (R.H @ R).is_self_adjoint
    assert (R @ R.H).is_self_adjoint
    assert (R @ B @ R.H).is_self_adjoint  # B symmetric in the middle
    assert not (R @ linops.GaussianBlur((6, 6), 1.0) @ R.H).is_self_adjoint  # reflect blur is not
    assert (linops.Identity((6, 6)) - 0.5 * (R.H @ R)).is_self_adjoint
    assert not (R.H @ R + linops.Dense(torch.randn(36, 36), (6, 6), (6, 6))).is_self_adjoint
    # the flag is true only when the dense matrix is symmetric
    d = (R @ B @ R.H).to_dense()
    torch.testing.assert_close(d, d.T, rtol=0, atol=1e-15)


def test_nested_composition_is_flattened():
    a = linops.Identity((3,))
    op = (a @ a) @ (a @ a)
    assert isinstance(op, linops.Composed) and len(op.operators) == 4


def test_shape_mismatch_messages():
    R = linops.Resize((8, 8), (4, 4))
    with pytest.raises(
        ValueError,
        match=r"Composed: expected Resize to have out_shape equal to Resize.in_shape \(8, 8\), got \(4, 4\)",
    ):
        R @ R
    with pytest.raises(
        ValueError,
        match=r"Sum: expected operators of shape \(8, 8\) -> \(4, 4\), got Identity of shape \(8, 8\) -> \(8, 8\)",
    ):
        R + linops.Identity((8, 8))


def test_matmul_with_tensor_is_refused_and_unsupported_operands():
    D = linops.Diagonal(torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(D(torch.ones(2)), torch.tensor([2.0, 3.0]))
    with pytest.raises(TypeError, match=r"use|A.apply\(x\)"):
        D @ torch.ones(2)
    with pytest.raises(TypeError):
        D + 1.0
    with pytest.raises(TypeError):
        D * torch.ones(2)
