"""The operator contract, applied to every operator in the catalogue.

Tolerances: ``check_dense`` and ``dottest`` accept ``10 * eps * sqrt(n_in + n_out)``
of the relevant norms (see :mod:`linops.testing`), i.e. a few hundred ulps at
these sizes - rounding only. A wrong weight, a transposed factor or a wrong
boundary row is off by orders of magnitude more.
"""

import pytest
import torch
from operator_catalogue import CATALOGUE

from linops.testing import check_dense, dottest

NAMES = sorted(CATALOGUE)


@pytest.fixture(params=NAMES)
def entry(request):
    return CATALOGUE[request.param]()


def test_dense_matches_independent_reference(entry):
    op, reference = entry
    check_dense(op, reference=reference, dtype=torch.float64)


def test_dense_float32(entry):
    op, reference = entry
    check_dense(op, reference=reference, dtype=torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dottest(entry, dtype):
    op, _ = entry
    dottest(op, dtype=dtype, generator=torch.Generator().manual_seed(7))


def test_batch_dimensions_pass_through(entry):
    op, reference = entry
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, *op.in_shape, dtype=torch.float64, generator=g)
    y = op.apply(x)
    assert y.shape == (2, 3, *op.out_shape)
    single = op.apply(x[1, 2])
    assert single.shape == op.out_shape
    # batched and unbatched calls agree to rounding (float64)
    torch.testing.assert_close(y[1, 2], single, rtol=1e-12, atol=1e-12)
    ref = reference.to(y.dtype if y.is_complex() else torch.float64)
    want = (x[1, 2].reshape(-1).to(ref.dtype) @ ref.T).reshape(op.out_shape)
    torch.testing.assert_close(single, want, rtol=1e-10, atol=1e-10)


def test_wrong_trailing_shape_is_rejected(entry):
    op, _ = entry
    bad = (*op.in_shape[:-1], op.in_shape[-1] + 1)
    expected = (
        "(" + ", ".join(str(s) for s in op.in_shape) + ("," if len(op.in_shape) == 1 else "") + ")"
    )
    with pytest.raises(
        ValueError,
        match=r"apply: expected x with trailing shape " + __import__("re").escape(expected),
    ):
        op.apply(torch.zeros(2, *bad))
    with pytest.raises(ValueError, match=r"apply_adjoint: expected y with trailing shape"):
        op.apply_adjoint(torch.zeros(*op.in_shape[:-1], op.in_shape[-1] + 1, 3))


def test_integer_dtype_is_rejected(entry):
    op, _ = entry
    with pytest.raises(
        ValueError, match=r"expected x with a floating or complex dtype, got torch.int64"
    ):
        op.apply(torch.zeros(op.in_shape, dtype=torch.int64))
    with pytest.raises(
        ValueError, match=r"expected y with a floating or complex dtype, got torch.int32"
    ):
        op.apply_adjoint(torch.zeros(op.out_shape, dtype=torch.int32))


def test_not_a_tensor_is_rejected(entry):
    op, _ = entry
    with pytest.raises(TypeError, match=r"expected x to be a torch.Tensor, got list"):
        op.apply([1.0, 2.0])
