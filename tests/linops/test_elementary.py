"""Identity, ScaledIdentity, Diagonal, Dense: arguments and edge cases."""

import pytest
import torch

import linops
from linops.testing import check_dense


def test_identity_and_scaled_identity():
    x = torch.randn(2, 3)
    assert torch.equal(linops.Identity((3,)).apply(x), x)
    s = linops.ScaledIdentity((3,), 2.0)
    torch.testing.assert_close(s.apply(x), 2 * x)
    assert s.is_self_adjoint and not s.is_unitary
    assert linops.ScaledIdentity((3,), -1.0).is_unitary
    c = linops.ScaledIdentity((3,), 1j)
    assert c.is_complex and not c.is_self_adjoint
    check_dense(c, reference=1j * torch.eye(3, dtype=torch.complex128))
    with pytest.raises(
        TypeError, match=r"ScaledIdentity: expected a real or complex scalar scale, got 'a'"
    ):
        linops.ScaledIdentity((3,), "a")


def test_diagonal_keeps_dtype_of_input_and_caches_per_dtype():
    d = linops.Diagonal(torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert d.apply(torch.ones(2, dtype=torch.float32)).dtype == torch.float32
    assert d.apply(torch.ones(2, dtype=torch.float64)).dtype == torch.float64


def test_diagonal_errors():
    with pytest.raises(
        ValueError,
        match=r"Diagonal: expected diag broadcastable to shape \(3, 4\), got diag of shape \(2, 1\)",
    ):
        linops.Diagonal(torch.ones(2, 1), shape=(3, 4))
    with pytest.raises(
        ValueError,
        match=r"Diagonal: expected diag with a floating or complex dtype, got torch.int64",
    ):
        linops.Diagonal(torch.ones(3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"Diagonal: expected diag to be a torch.Tensor, got list"):
        linops.Diagonal([1.0, 2.0])


def test_dense_errors_and_complex_matrix_on_real_input():
    with pytest.raises(ValueError, match=r"Dense: expected a 2-D matrix, got shape \(3,\)"):
        linops.Dense(torch.ones(3))
    with pytest.raises(
        ValueError,
        match=r"Dense: expected in_shape with 4 elements \(matrix has 4 columns\), got \(2, 3\)",
    ):
        linops.Dense(torch.ones(2, 4), in_shape=(2, 3))
    with pytest.raises(ValueError, match=r"Dense: expected out_shape with 2 elements"):
        linops.Dense(torch.ones(2, 4), out_shape=(3,))
    m = torch.complex(torch.randn(2, 3), torch.randn(2, 3))
    out = linops.Dense(m).apply(torch.ones(3))
    torch.testing.assert_close(out, m @ torch.ones(3, dtype=m.dtype))


def test_to_dense_chunks_and_rejects_integer_dtype():
    op = linops.Dense(torch.randn(5, 7, dtype=torch.float64))
    torch.testing.assert_close(op.to_dense(chunk_size=2), op.matrix)
    with pytest.raises(
        ValueError, match=r"Dense.to_dense: expected a floating or complex dtype, got torch.int32"
    ):
        op.to_dense(dtype=torch.int32)


def test_shape_validation_of_constructors():
    with pytest.raises(
        ValueError, match=r"Identity: in_shape: expected a sequence of positive ints, got \(3, 0\)"
    ):
        linops.Identity((3, 0))
    with pytest.raises(
        TypeError, match=r"Identity: in_shape: expected a sequence of positive ints, got 'abc'"
    ):
        linops.Identity("abc")


def test_repr_and_shape():
    op = linops.Resize((3, 8, 8), (4, 4))
    assert op.shape == (48, 192)
    assert "Resize(in_shape=(3, 8, 8), out_size=(4, 4)" in repr(op)
    assert "Resize" in repr(op.H)
