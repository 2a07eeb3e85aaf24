"""Gradients of cg, minres, lsqr and solve by implicit differentiation: gradcheck in float64
and agreement with differentiating torch.linalg.solve / lstsq on the dense matrix."""

import math

import pytest
import torch
from torch.autograd import gradcheck

import linops

# gradcheck compares with central differences (step 1e-6): the solve must be accurate far
# below 1e-6 relative for the differences to mean anything, hence tol=1e-13 on problems
# with cond <= 10, where float64 CG/MINRES/LSQR reach it in a few steps
TOL = 1e-13


def _spd(n, cond, seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g))
    mat = (q * torch.linspace(1.0, cond, n, dtype=torch.float64)) @ q.T
    return (mat + mat.T) / 2


def _rhs(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=dtype, generator=g).requires_grad_(True)


def _sym_operator(W):
    """A FunctionOperator whose matrix (W + W^T) / 2 is a captured parameter."""
    n = W.shape[0]
    return linops.FunctionOperator(lambda x: x @ ((W + W.T) / 2).T, (n,), (n,))


# ---------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("method", ["cg", "minres", "lsqr"])
def test_gradcheck_rhs_and_function_operator_parameter(method):
    W = (_spd(5, 4.0, 0) + 0.0).requires_grad_(True)
    b = _rhs(2, 5)
    solver = getattr(linops, method)
    assert gradcheck(lambda W, b: solver(_sym_operator(W), b, tol=TOL).value, (W, b))


def test_gradcheck_minres_indefinite_with_shift():
    W = (_spd(5, 4.0, 1) + 0.0).requires_grad_(True)
    b = _rhs(3, 5, seed=1)
    # eigenvalues 1, 1.75, ..., 4 shifted by 2.2: indefinite, and cond (A - 2.2 I) = 6
    fn = lambda W, b: linops.minres(_sym_operator(W), b, shift=2.2, tol=TOL).value  # noqa: E731
    assert gradcheck(fn, (W, b))


@pytest.mark.parametrize("damp", [0.0, 0.3])
def test_gradcheck_lsqr_rectangular(damp):
    g = torch.Generator().manual_seed(2)
    W = torch.randn(7, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    b = _rhs(2, 7, seed=2)

    def fn(W, b):
        A = linops.FunctionOperator(lambda x: x @ W.T, (4,), (7,))
        return linops.lsqr(A, b, damp=damp, tol=TOL, max_iters=200).value

    assert gradcheck(fn, (W, b))


def test_gradcheck_scalar_multiple():
    """``rho * A`` with a 0-d tensor ``rho``: through CG and through the exact routes."""
    rho = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    b = _rhs(2, 5, seed=3)
    D = linops.Diagonal(torch.linspace(1.0, 3.0, 5, dtype=torch.float64))
    eye = linops.Identity((5,))
    assert gradcheck(lambda rho, b: linops.cg(eye + rho * D, b, tol=TOL).value, (rho, b))
    assert gradcheck(lambda rho, b: linops.solve(eye + rho * D, b).value, (rho, b))
    assert linops.solve(eye + rho * D, b).method == "diagonal"
    R = linops.Resize((6, 6), (3, 3))
    b2 = _rhs(2, 6, 6, seed=4)
    fn = lambda rho, b: linops.solve(linops.Identity((6, 6)) + rho * (R.H @ R), b).value  # noqa: E731
    assert linops.solve(linops.Identity((6, 6)) + rho * (R.H @ R), b2).method == "kronecker"
    assert gradcheck(fn, (rho, b2))


@pytest.mark.parametrize(
    "make",
    [
        lambda: linops.Diagonal(torch.linspace(1.0, 2.0, 4, dtype=torch.float64)),
        lambda: linops.Diagonal(
            torch.complex(torch.linspace(1.0, 2.0, 4), torch.ones(4)).to(torch.complex128)
        ),
        lambda: linops.BasisDiagonal(linops.DCT2((2, 2)), torch.tensor([[1.0, 2.0], [3.0, 4.0]])),
        lambda: linops.ScaledIdentity((4,), 2.0 - 1.0j),
    ],
    ids=["diagonal", "complex_diagonal", "basis_diagonal", "complex_scaled_identity"],
)
def test_gradcheck_rhs_through_exact_routes(make):
    A = make()
    b = _rhs(3, *A.in_shape, seed=5, dtype=torch.complex128 if A.is_complex else torch.float64)
    assert gradcheck(lambda b: linops.solve(A, b).value, (b,))


class _Matmul(linops.LinearOperator):
    """``x -> H x`` keeping ``H``'s autograd history (unlike Dense), complex-capable."""

    is_self_adjoint = True
    is_complex = True

    def __init__(self, H):
        super().__init__((H.shape[1],), (H.shape[0],))
        self.H_ = H

    def _supports_complex(self):
        return True

    def _apply(self, x):
        return x.to(self.H_.dtype) @ self.H_.T

    def _apply_adjoint(self, y):
        return y.to(self.H_.dtype) @ self.H_.conj()


@pytest.mark.parametrize("method", ["cg", "minres", "lsqr"])
def test_gradcheck_complex_hermitian(method):
    g = torch.Generator().manual_seed(6)
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.complex128, generator=g))
    H = (q * torch.tensor([1.0, 2.0, 3.0, 5.0], dtype=torch.complex128)) @ q.mH
    W = H.clone().requires_grad_(True)
    b = _rhs(2, 4, seed=7, dtype=torch.complex128)
    solver = getattr(linops, method)
    # gradcheck checks both Wirtinger derivatives of the complex inputs
    assert gradcheck(lambda W, b: solver(_Matmul((W + W.mH) / 2), b, tol=TOL).value, (W, b))


# Diagonal and Dense keep ``diag.detach()`` / ``matrix.detach()`` (linops/_elementary.py), so
# A.apply has no graph back to the caller's tensor and no gradient can reach it, whatever
# the solver does. The implicit gradient is in place (the FunctionOperator tests above use
# the same route); these pass once the operators keep their tensors' history.


def test_gradcheck_diagonal_entries():
    d = torch.linspace(1.0, 2.0, 4, dtype=torch.float64).requires_grad_(True)
    b = _rhs(2, 4, seed=8)
    assert gradcheck(lambda d, b: linops.cg(linops.Diagonal(d), b, tol=TOL).value, (d, b))


def test_gradcheck_dense_matrix():
    M = (_spd(4, 3.0, 9) + 0.0).requires_grad_(True)
    b = _rhs(2, 4, seed=9)
    assert gradcheck(lambda M, b: linops.lsqr(linops.Dense(M), b, tol=TOL).value, (M, b))


# --------------------------------------------------- against torch.linalg.solve
@pytest.mark.parametrize("method", ["cg", "minres", "lsqr", "solve"])
def test_gradients_match_torch_linalg_solve(method):
    mat = _spd(6, 10.0, 10)
    weights = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    b0 = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(12))

    W1, b1 = mat.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    x = getattr(linops, method)(_sym_operator(W1), b1, tol=TOL).value
    (x * weights).sum().backward()

    W2, b2 = mat.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    y = torch.linalg.solve((W2 + W2.T) / 2, b2.T).T
    (y * weights).sum().backward()

    # both are the exact derivative of the same function; ours adds the backward solve's
    # error, tol * cond = 1e-12, relative to the gradient
    torch.testing.assert_close(x, y, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(W1.grad, W2.grad, rtol=1e-10, atol=1e-10)


def test_lsqr_gradient_matches_lstsq_full_column_rank():
    g = torch.Generator().manual_seed(13)
    mat = torch.randn(8, 5, dtype=torch.float64, generator=g)
    weights = torch.randn(2, 5, dtype=torch.float64, generator=g)
    b0 = torch.randn(2, 8, dtype=torch.float64, generator=g)

    W1, b1 = mat.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    A = linops.FunctionOperator(lambda x: x @ W1.T, (5,), (8,))
    (linops.lsqr(A, b1, tol=TOL, max_iters=100).value * weights).sum().backward()

    W2, b2 = mat.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    (torch.linalg.lstsq(W2, b2.T).solution.T * weights).sum().backward()
    # inconsistent least squares, cond(W) ~ 5: the backward solve's error ~cond^2 tol
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(W1.grad, W2.grad, rtol=1e-9, atol=1e-9)


def test_lsqr_gradient_wrt_b_is_the_pseudo_inverse_adjoint_rank_deficient():
    R = linops.Resize((6, 6), (3, 3))  # wide and R^H R singular: x = R^+ y
    y = _rhs(2, 3, 3, seed=14)
    weights = torch.randn(2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(15))
    (linops.lsqr(R, y, tol=TOL, max_iters=200).value * weights).sum().backward()
    # d/dy <w, R^+ y> = (R^+)^H w, through the factors' SVDs: an independent route
    want = linops.pinv(R).apply_adjoint(weights)
    torch.testing.assert_close(y.grad, want, rtol=1e-9, atol=1e-10)


# --------------------------------------------------------------- cost, behaviour
class _Counting:
    """A symmetric matrix product that counts its applications."""

    def __init__(self, mat):
        self.mat, self.calls = mat, 0

    def __call__(self, x):
        self.calls += 1
        return x @ self.mat.T


@pytest.mark.parametrize("method", ["cg", "minres"])
def test_backward_costs_one_more_solve(method):
    mat = _spd(30, 100.0, 16)
    fn = _Counting(mat)
    A = linops.FunctionOperator(fn, (30,), (30,), adjoint=fn)
    A.is_self_adjoint = True
    b = _rhs(2, 30, seed=17)
    res = getattr(linops, method)(A, b, tol=1e-10)
    forward = fn.calls
    assert forward <= int(res.num_iters.max()) + 2  # iterations plus the residual checks
    fn.calls = 0
    res.value.sum().backward()
    # the backward is one solve of the same size (plus its residual check and one VJP of
    # A.apply, which autograd runs through the recorded graph, not through fn): it never
    # replays the forward iterations
    assert fn.calls <= forward + 2


def test_no_graph_without_requires_grad_and_under_no_grad():
    A = linops.Dense(_spd(5, 3.0, 18))
    b = torch.randn(5, dtype=torch.float64)
    assert not linops.cg(A, b).value.requires_grad
    with torch.no_grad():
        assert not linops.cg(A, b.requires_grad_(True)).value.requires_grad


def test_backward_that_misses_tol_warns():
    A = linops.Dense(_spd(20, 1e3, 19))
    b = _rhs(2, 20, seed=20)
    res = linops.cg(A, b, tol=1e-12, max_iters=2)
    with pytest.warns(
        RuntimeWarning,
        match=r"cg: the adjoint CG solve of the backward pass left 2 of 2 right-hand sides above tol=1e-12; the gradient is approximate",
    ):
        res.value.sum().backward()
    assert torch.isfinite(b.grad).all()


def test_x0_gets_no_gradient():
    A = linops.Dense(_spd(4, 3.0, 21))
    b = _rhs(4, seed=22)
    x0 = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    linops.cg(A, b, x0=x0, tol=TOL).value.sum().backward()
    assert x0.grad is None and b.grad is not None
    assert math.isfinite(float(b.grad.sum()))
