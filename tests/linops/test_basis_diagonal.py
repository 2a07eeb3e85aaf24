"""BasisDiagonal against V^T diag(d) V built densely from the cosine formula."""

import numpy as np
import pytest
import torch
from dense_references import dct_matrix
from hypothesis import given
from hypothesis import strategies as st

import linops
from linops.testing import check_dense, dottest


@given(h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 2), broadcast=st.booleans())
def test_dct_basis_against_dense(h, w, c, broadcast):
    dshape = (1, h, w) if broadcast else (c, h, w)
    d = torch.rand(dshape, dtype=torch.float64) * 2 - 0.5
    op = linops.BasisDiagonal(linops.DCT2((c, h, w)), d)
    v = np.kron(np.eye(c), np.kron(dct_matrix(h), dct_matrix(w)))
    ref = v.T @ np.diag(d.expand(c, h, w).reshape(-1).numpy()) @ v
    check_dense(op, reference=torch.from_numpy(ref))
    dottest(op, dtype=torch.float32)
    assert op.is_self_adjoint


def test_eigenvalues_are_the_diagonal():
    d = torch.linspace(0.1, 2.0, 12, dtype=torch.float64).reshape(3, 4)
    op = linops.BasisDiagonal(linops.DCT2((3, 4)), d)
    eig = torch.linalg.eigvalsh(op.to_dense())
    torch.testing.assert_close(eig, d.reshape(-1).sort().values, rtol=0, atol=1e-14)


def test_with_diag_gives_matrix_function():
    d = torch.rand(4, 5, dtype=torch.float64) + 0.1
    op = linops.BasisDiagonal(linops.DCT2((4, 5)), d)
    root = op.with_diag(d.sqrt())
    a = op.to_dense()
    r = root.to_dense()
    torch.testing.assert_close(r @ r, a, rtol=0, atol=1e-14)


def test_rejects_non_unitary_basis_and_bad_diag():
    with pytest.raises(ValueError, match=r"BasisDiagonal: expected a unitary basis"):
        linops.BasisDiagonal(linops.GaussianBlur((4, 4), 1.0), torch.ones(4, 4))
    with pytest.raises(
        ValueError, match=r"expected diag broadcastable to \(4, 4\), got shape \(3, 4\)"
    ):
        linops.BasisDiagonal(linops.DCT2((4, 4)), torch.ones(3, 4))
    with pytest.raises(TypeError, match=r"expected basis to be a LinearOperator, got Tensor"):
        linops.BasisDiagonal(torch.eye(4), torch.ones(4))
