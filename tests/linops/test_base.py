"""The LinearOperator base class: validation, batching, complex inputs, subclass contract."""

import pytest
import torch

import linops


class Doubler(linops.LinearOperator):
    def __init__(self):
        super().__init__((2, 3), (2, 3))

    def _apply(self, x):
        assert x.dim() == 3  # the contract: exactly one batch dimension reaches _apply
        return 2 * x


def test_subclass_gets_one_batch_dimension():
    op = Doubler()
    assert op.apply(torch.ones(2, 3)).shape == (2, 3)
    assert op.apply(torch.ones(4, 5, 2, 3)).shape == (4, 5, 2, 3)
    assert op.apply(torch.ones(0, 2, 3)).shape == (0, 2, 3)


def test_missing_adjoint_says_how_to_get_one():
    with pytest.raises(
        NotImplementedError, match=r"Doubler: _apply_adjoint is not implemented.*FunctionOperator"
    ):
        Doubler().apply_adjoint(torch.ones(2, 3))


def test_complex_input_to_real_operator_is_split_exactly():
    op = Doubler()
    z = torch.complex(torch.randn(2, 3), torch.randn(2, 3))
    torch.testing.assert_close(op.apply(z), 2 * z)


def test_message_names_operator_argument_expected_and_given():
    R = linops.Resize((3, 64, 64), (32, 32))
    with pytest.raises(ValueError) as info:
        R.apply(torch.zeros(8, 3, 32, 32))
    assert (
        str(info.value)
        == "Resize.apply: expected x with trailing shape (3, 64, 64), got (8, 3, 32, 32)"
    )
    with pytest.raises(
        ValueError,
        match=r"^Resize.H.apply: expected x with trailing shape \(3, 32, 32\), got \(3, 64, 64\)$",
    ):
        R.H.apply(torch.zeros(3, 64, 64))
    with pytest.raises(
        ValueError, match=r"expected x with trailing shape \(3, 64, 64\), got \(64, 64\)"
    ):
        R.apply(torch.zeros(64, 64))


def test_result_keeps_device_and_dtype():
    R = linops.Resize((3, 8, 8), (4, 4))
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(2, 3, 8, 8, dtype=dtype)
        assert R.apply(x).dtype == dtype
        assert R.apply_adjoint(R.apply(x)).dtype == dtype


def test_operator_call_is_apply():
    D = linops.Diagonal(torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(D(torch.ones(2)), torch.tensor([1.0, -1.0]))


def test_matmul_composes_operators_and_refuses_tensors():
    A = linops.Dense(torch.arange(9.0).reshape(3, 3))
    x = torch.randn(3, 3)
    # the batch convention applies A to the rows of x; torch's A @ x would act on columns
    torch.testing.assert_close(A.apply(x), x @ A.matrix.T)
    torch.testing.assert_close(A(x), A.apply(x))
    with pytest.raises(
        TypeError,
        match=r"Dense @ Tensor: expected a LinearOperator on the right of @.*A.apply\(x\) or A\(x\)",
    ):
        A @ x
    with pytest.raises(
        TypeError, match=r"Tensor @ Dense: expected LinearOperators on both sides of @"
    ):
        x @ A
    assert isinstance(A @ A, linops.Composed)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "make",
    [
        lambda: linops.Resize((1, 8, 8), (4, 4)),
        lambda: linops.FFT2((1, 8, 8)),
        lambda: linops.Diagonal(torch.ones(1, 8, 8)),
    ],
)
def test_half_precision_is_refused_with_the_argument_named(make, dtype):
    op = make()
    with pytest.raises(
        TypeError,
        match=rf"{op.name}.apply: expected x as float32, float64, complex64 or complex128, got {dtype}",
    ):
        op.apply(torch.ones(2, 1, 8, 8, dtype=dtype))
    with pytest.raises(
        ValueError, match=rf"{op.name}.apply: expected x with data, got a tensor on the meta device"
    ):
        op.apply(torch.ones(2, 1, 8, 8, device="meta"))
