"""FunctionOperator: adjoint by VJP (linearised once), fallback, and checks."""

import pytest
import torch
import torch.nn.functional as F

import linops
from linops.testing import check_dense, dottest


def conv(x):
    k = torch.tensor([[[[0.0, 1.0, 0.5], [2.0, -1.0, 0.0], [0.25, 0.0, 1.0]]]], dtype=x.dtype)
    return F.conv2d(x, k, padding=1)


def test_vjp_adjoint_matches_dense_transpose():
    op = linops.FunctionOperator(conv, (1, 5, 6), (1, 5, 6))
    check_dense(op)
    dottest(op, dtype=torch.float32)
    # the pullback was linearised once per dtype and reused
    assert len(op._vjp._cache._store) == 2


def test_vmap_route_equals_fresh_graph_route():
    op = linops.FunctionOperator(conv, (1, 5, 6), (1, 5, 6))
    y = torch.randn(4, 1, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(op.apply_adjoint(y), op._vjp.fresh_graph(y), rtol=0, atol=1e-14)


class _FlipTimesThree(torch.autograd.Function):
    # an old-style custom Function: autograd differentiates it, vmap cannot batch it

    @staticmethod
    def forward(ctx, x):
        return 3.0 * x.flip(-1)

    @staticmethod
    def backward(ctx, g):
        return 3.0 * g.flip(-1)


def test_fallback_for_functions_vmap_cannot_trace():
    op = linops.FunctionOperator(_FlipTimesThree.apply, (4,), (4,))
    y = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(op.apply_adjoint(y), 3.0 * y.flip(-1))
    assert op._vjp._use_vmap is False
    dottest(op)


def test_handwritten_adjoint_is_used():
    op = linops.FunctionOperator(lambda x: 2 * x, (3,), (3,), adjoint=lambda y: 2 * y)
    dottest(op)
    with pytest.raises(
        ValueError, match=r"expected the callable to return shape \(N, \*\(3,\)\), got \(2, 4\)"
    ):
        linops.FunctionOperator(
            lambda x: x, (3,), (3,), adjoint=lambda y: torch.zeros(2, 4)
        ).apply_adjoint(torch.ones(2, 3))


def test_wrong_output_shape_is_reported():
    op = linops.FunctionOperator(lambda x: x[..., :2], (3,), (3,))
    with pytest.raises(
        ValueError,
        match=r"apply: expected the callable to return shape \(N, \*\(3,\)\), got \(1, 2\)",
    ):
        op.apply(torch.ones(3))


def test_not_callable():
    with pytest.raises(TypeError, match=r"FunctionOperator: expected fn to be callable, got int"):
        linops.FunctionOperator(3, (1,), (1,))


def test_adjoint_runs_under_no_grad():
    op = linops.FunctionOperator(conv, (1, 4, 4), (1, 4, 4))
    with torch.no_grad():
        out = op.apply_adjoint(torch.ones(1, 4, 4))
    assert out.shape == (1, 4, 4)
    with torch.no_grad():
        assert op._vjp.fresh_graph(torch.ones(2, 1, 4, 4)).shape == (2, 1, 4, 4)
