"""The public checks catch broken operators, and the size-aware tolerance is needed."""

import pytest
import torch

import linops
from linops.testing import check_dense, dottest


class WrongAdjoint(linops.LinearOperator):
    """A resize whose adjoint forgets one boundary weight: subtle, and wrong."""

    def __init__(self):
        super().__init__((16, 16), (8, 8))
        self.r = linops.Resize((16, 16), (8, 8))

    def _apply(self, x):
        return self.r.apply(x)

    def _apply_adjoint(self, y):
        out = self.r.apply_adjoint(y)
        out[..., 0, 0] = 0
        return out


class TransposedAdjoint(linops.LinearOperator):
    def __init__(self):
        super().__init__((5, 5), (5, 5))
        self.m = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def _apply(self, x):
        return self.m.to(x) @ x

    def _apply_adjoint(self, y):
        return self.m.to(y) @ y  # should be m.T


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dottest_catches_transposed_adjoint(dtype):
    with pytest.raises(AssertionError, match=r"dottest: TransposedAdjoint fails the adjoint test"):
        dottest(TransposedAdjoint(), dtype=dtype)


def test_check_dense_catches_a_single_wrong_adjoint_entry():
    with pytest.raises(AssertionError, match=r"adjoint matrix vs to_dense\(\).mH"):
        check_dense(WrongAdjoint())


def test_check_dense_catches_a_wrong_reference():
    op = linops.GaussianBlur((6, 6), 1.0)
    ref = op.to_dense()
    ref[3, 4] += 1e-6
    with pytest.raises(AssertionError, match=r"to_dense\(\) vs reference"):
        check_dense(op, reference=ref)


def test_relative_dot_test_would_fail_in_float32_where_ours_passes():
    # PyLops-style |<Au,v> - <u,A^H v>| <= rtol |<Au,v>| shrinks with 1/sqrt(n) for random
    # vectors; over several seeds a 1e-6 relative test fails in float32, ours never does.
    op = linops.GaussianBlur((3, 64, 64), 2.0)
    rel_failures = 0
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(*op.in_shape, generator=g)
        v = torch.randn(*op.out_shape, generator=g)
        lhs = torch.vdot(op.apply(u).reshape(-1), v.reshape(-1)).item()
        rhs = torch.vdot(u.reshape(-1), op.apply_adjoint(v).reshape(-1)).item()
        rel_failures += abs(lhs - rhs) > 1e-6 * abs(lhs)
        dottest(op, dtype=torch.float32, generator=torch.Generator().manual_seed(seed))
    assert rel_failures > 0


def test_argument_errors():
    with pytest.raises(TypeError, match=r"dottest: expected a LinearOperator, got Tensor"):
        dottest(torch.eye(2))
    with pytest.raises(
        ValueError,
        match=r"check_dense: expected dtype torch.float32 or torch.float64, got torch.float16",
    ):
        check_dense(linops.Identity((2,)), dtype=torch.float16)
