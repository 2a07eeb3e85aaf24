"""Kronecker products: matrices and 1-D operators, shapes, adjoint, structure."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import linops
from linops.testing import check_dense, dottest


@given(
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    oh=st.integers(1, 6),
    ow=st.integers(1, 6),
    lead=st.sampled_from([(), (2,)]),
    complex_=st.booleans(),
)
def test_against_torch_kron(h, w, oh, ow, lead, complex_):
    dtype = torch.complex128 if complex_ else torch.float64
    a, b = torch.randn(oh, h, dtype=dtype), torch.randn(ow, w, dtype=dtype)
    op = linops.Kronecker(a, b, lead_shape=lead)
    ref = torch.kron(a, b)
    if lead:
        ref = torch.kron(torch.eye(lead[0], dtype=dtype), ref)
    check_dense(op, reference=ref)
    dottest(op, dtype=torch.float32)


def test_hermitian_factors_make_self_adjoint():
    g = torch.randn(4, 4, dtype=torch.float64)
    assert linops.Kronecker(g + g.T, g @ g.T).is_self_adjoint
    assert not linops.Kronecker(g, g @ g.T).is_self_adjoint
    assert linops.Kronecker(linops.Diagonal(torch.ones(3)), linops.Identity((2,))).is_self_adjoint


def test_factor_matrices_of_operators():
    op = linops.Kronecker(linops.Dense(torch.ones(2, 3)), linops.Identity((4,)))
    a, b = op.factor_matrices(dtype=torch.float32)
    assert a.dtype == torch.float32 and a.shape == (2, 3) and torch.equal(b, torch.eye(4))


def test_errors():
    with pytest.raises(
        ValueError, match=r"Kronecker: A_h: expected a 2-D matrix, got shape \(3,\)"
    ):
        linops.Kronecker(torch.ones(3), torch.eye(2))
    with pytest.raises(ValueError, match=r"Kronecker: A_w: expected a 1-D operator"):
        linops.Kronecker(torch.eye(2), linops.Identity((2, 2)))
    with pytest.raises(
        TypeError, match=r"Kronecker: A_h: expected a Tensor or a LinearOperator, got list"
    ):
        linops.Kronecker([[1.0]], torch.eye(2))
