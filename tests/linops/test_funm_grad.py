"""Gradients of ``funm(...).value`` on every route: gradcheck, and the dense route as reference.

``torch.autograd.gradcheck`` compares the analytic Jacobian with central differences in
float64 (its defaults: eps 1e-6, atol 1e-5, rtol 1e-3). The Lanczos runs here are small
(``n <= 36``) and run to the end of the Krylov space, where ``Q_n f(T_n) e_1`` equals
``f(A) v`` to rounding, so the finite differences see the exact function.
"""

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

import linops
from linops import _lanczos_basis

FUNCS = ["sqrt", "invsqrt", "exp", "log"]
DT = torch.float64


def _spd(n, cond, seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=DT, generator=g))
    return (q * torch.logspace(0, np.log10(cond), n, dtype=DT)) @ q.T


def _randn(*shape, seed):
    return torch.randn(*shape, dtype=DT, generator=torch.Generator().manual_seed(seed))


def _graph(fn, seen=None):
    """Names of the autograd nodes reachable from ``fn``."""
    seen = [] if seen is None else seen
    if fn is not None and type(fn).__name__ not in seen:
        seen.append(type(fn).__name__)
        for nxt, _ in fn.next_functions:
            _graph(nxt, seen)
    return seen


def _funm(f, A, v, method):
    # tol below rounding: Lanczos runs to the end of the space (breakdown at k = n)
    return linops.funm(f, A, v, method=method, tol=1e-14).value


# ------------------------------------------------------------------ w.r.t. v
@pytest.mark.parametrize("f", FUNCS)
@pytest.mark.parametrize("method", ["lanczos", "dense", "auto"])
def test_gradcheck_v(f, method):
    R = linops.Resize((6, 6), (3, 3))
    A = linops.Identity((6, 6)) - 0.9 * (R.H @ R)  # exact route under "auto"
    v = _randn(2, 6, 6, seed=0).requires_grad_(True)
    assert gradcheck(lambda v: _funm(f, A, v, method), (v,))


@pytest.mark.parametrize(
    "A",
    [
        linops.BasisDiagonal(linops.DCT2((3, 4)), torch.rand(3, 4, dtype=DT) + 0.5),
        linops.ScaledIdentity((3, 4), 2.5),
    ],
    ids=["basis_diagonal", "scaled_identity"],
)
def test_gradcheck_v_exact_diagonal_routes(A):
    v = _randn(2, 3, 4, seed=1).requires_grad_(True)
    assert gradcheck(lambda v: linops.funm("log", A, v).value, (v,))


def test_v_gradient_by_lanczos_is_one_more_funm_call():
    """Only v requires grad: the fast path runs, the backward is f(A) g (no graph through it)."""
    calls = []
    M = _spd(30, 50.0, 2)

    def fn(x):
        calls.append(x.shape[0])
        return x @ M.T

    A = linops.FunctionOperator(fn, (30,), (30,), adjoint=fn)
    v = _randn(3, 30, seed=3).requires_grad_(True)
    res = linops.funm("sqrt", A, v, method="lanczos", tol=1e-12)
    names = _graph(res.value.grad_fn)
    assert "_SelfAdjointLinearBackward" in names and len(names) <= 4, names  # no iterations
    forward_calls = len(calls)
    g = _randn(3, 30, seed=4)
    (res.value * g).sum().backward()
    assert 0 < len(calls) - forward_calls <= forward_calls + 2  # about one more run
    dense = linops.funm("sqrt", linops.Dense(M), g, method="dense").value  # f(A) g
    torch.testing.assert_close(v.grad, dense, rtol=0, atol=1e-10 * dense.abs().max().item())


# ------------------------------------------------- w.r.t. the operator's tensors
@pytest.mark.parametrize("f", FUNCS)
@pytest.mark.parametrize("method", ["lanczos", "dense"])
def test_gradcheck_diagonal_dense_and_function_operator(f, method):
    n = 6
    v = _randn(3, n, seed=5).requires_grad_(True)
    d = (torch.rand(n, dtype=DT, generator=torch.Generator().manual_seed(6)) + 0.5).requires_grad_()
    assert gradcheck(lambda d, v: _funm(f, linops.Diagonal(d), v, method), (d, v))
    M = _spd(n, 10.0, 7).requires_grad_(True)
    assert gradcheck(lambda M, v: _funm(f, linops.Dense((M + M.T) / 2), v, method), (M, v))
    W = _spd(n, 10.0, 8).requires_grad_(True)

    def captured(W, v):
        A = linops.FunctionOperator(lambda x: x @ ((W + W.T) / 2).T, (n,), (n,))
        return _funm(f, A, v, method)

    assert gradcheck(captured, (W, v))


@pytest.mark.parametrize("f", FUNCS)
def test_gradcheck_scalar_multiple_on_every_route(f):
    """``(-rho) * (R.H @ R)`` with a 0-d tensor rho: no route turns it into a float."""
    R = linops.Resize((6, 6), (3, 3))
    rho = torch.tensor(0.7, dtype=DT, requires_grad=True)
    v = _randn(2, 6, 6, seed=9).requires_grad_(True)

    def exact(rho, v):
        res = linops.funm(f, linops.Identity((6, 6)) + (-rho) * (R.H @ R), v)
        assert res.method == "kronecker"
        return res.value

    assert gradcheck(exact, (rho, v))
    assert gradcheck(
        lambda rho, v: _funm(f, linops.Identity((6, 6)) - rho * (R.H @ R), v, "dense"), (rho, v)
    )
    # Lanczos: a diagonal plus the scaled term, whose Krylov spaces are the whole space
    D = linops.Diagonal(torch.linspace(1.0, 2.0, 36, dtype=DT).reshape(6, 6))
    assert gradcheck(lambda rho, v: _funm(f, D - rho * (R.H @ R), v, "lanczos"), (rho, v))


def test_gradcheck_scaled_identity_and_basis_diagonal_entries():
    s = torch.tensor(1.7, dtype=DT, requires_grad=True)
    v = _randn(2, 3, 4, seed=10).requires_grad_(True)
    assert gradcheck(
        lambda s, v: linops.funm("sqrt", linops.ScaledIdentity((3, 4), s), v).value, (s, v)
    )
    d = (
        torch.rand(3, 4, dtype=DT, generator=torch.Generator().manual_seed(11)) + 0.5
    ).requires_grad_()

    def basis_diagonal(d, v):
        res = linops.funm("invsqrt", linops.BasisDiagonal(linops.DCT2((3, 4)), d), v)
        assert res.method == "basis_diagonal"
        return res.value

    assert gradcheck(basis_diagonal, (d, v))


def test_learnable_kronecker_factors_take_lanczos_and_match_dense():
    """A Kronecker with factors that require grad is not sent to the (eigh-cached) exact path."""
    # spectra whose products are distinct (equal products, e.g. 1 x 3 and 3 x 1, make an
    # eigenvalue with a 2-D eigenspace, which one Krylov space cannot span)
    G_h = (_spd(4, 3.7, 12) + 0.0).requires_grad_(True)  # noqa: N806
    G_w = (_spd(5, 2.5, 13) + 0.0).requires_grad_(True)  # noqa: N806
    v = _randn(2, 4, 5, seed=14)
    w = _randn(2, 4, 5, seed=15)
    grads = {}
    for method in ["auto", "dense"]:
        G_h.grad = G_w.grad = None
        # symmetric parametrisation: a self-adjoint operator's gradient lives on symmetric
        # perturbations (the dense route symmetrises, Lanczos only sees A)
        K = linops.Kronecker((G_h + G_h.T) / 2, (G_w + G_w.T) / 2)  # noqa: N806
        res = linops.funm("sqrt", K, v, method=method, tol=1e-14)
        (res.value * w).sum().backward()
        grads[method] = (res.method, G_h.grad.clone(), G_w.grad.clone())
    assert grads["auto"][0] == "lanczos"
    for a, b in zip(grads["auto"][1:], grads["dense"][1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("f", FUNCS)
def test_lanczos_operator_gradient_converges_to_the_dense_one(f):
    """Stopped at tol = 1e-10 long before n = 400 steps: the gradient of the Krylov
    approximant agrees with the exact (dense, Daleckii-Krein) one to 1e-7 relative (measured
    2e-11 to 5e-9: it converges with the value, at 10-50x the tolerance)."""
    n = 400
    v = _randn(3, n, seed=16)
    w = _randn(3, n, seed=17)
    grads = {}
    for method in ["lanczos", "dense"]:
        d = torch.linspace(0.01, 1.0, n, dtype=DT).requires_grad_(True)
        res = linops.funm(f, linops.Diagonal(d), v, method=method, tol=1e-10)
        (res.value * w).sum().backward()
        grads[method] = (res.num_iters, d.grad)
    assert grads["lanczos"][0] < n // 2
    err = (grads["lanczos"][1] - grads["dense"][1]).norm() / grads["dense"][1].norm()
    assert err < 1e-7, err


def test_dense_route_gradient_is_finite_at_repeated_eigenvalues():
    """``I - rho R^T R`` has 27 eigenvalues equal to 1 at 6 px: eigh's own backward is NaN
    there; the divided-difference backward matches the exact route's gradient."""
    R = linops.Resize((6, 6), (3, 3))
    v = _randn(2, 6, 6, seed=18)
    grads = []
    for method in ["dense", "exact"]:
        rho = torch.tensor(0.8, dtype=DT, requires_grad=True)
        linops.funm(
            "log", linops.Identity((6, 6)) - rho * (R.H @ R), v, method=method
        ).value.sum().backward()
        grads.append(rho.grad)
    assert torch.isfinite(grads[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=0)


# ------------------------------------------------------------ no silent drops
def test_no_route_detaches_a_scalar_or_a_diagonal():
    R = linops.Resize((8, 8), (4, 4))
    rho = torch.tensor(0.5, dtype=DT, requires_grad=True)
    d = torch.linspace(1.0, 2.0, 64, dtype=DT).reshape(8, 8).requires_grad_(True)
    v = _randn(8, 8, seed=19)
    for method in ["auto", "lanczos", "dense"]:
        A = linops.Identity((8, 8)) - rho * (R.H @ R)
        assert linops.funm("sqrt", A, v, method=method).value.requires_grad, method
        B = linops.Diagonal(d)
        assert linops.funm("sqrt", B, v, method=method).value.requires_grad, method
    with torch.no_grad():
        assert not linops.funm("sqrt", linops.Diagonal(d), v).value.requires_grad


def test_gradient_of_a_callable_without_autograd_raises():
    d = torch.linspace(1.0, 2.0, 5, dtype=DT).requires_grad_(True)
    v = _randn(5, seed=20)

    def numpy_sqrt(x):
        return torch.from_numpy(np.sqrt(x.detach().numpy()))

    for method in ["lanczos", "dense"]:
        out = linops.funm(numpy_sqrt, linops.Diagonal(d), v, method=method, tol=1e-14).value
        with pytest.raises(ValueError, match=r"the gradient needs f differentiable by autograd"):
            out.sum().backward()


def test_invariant_krylov_space_refuses_gradients_it_cannot_compute():
    """v in a 2-D invariant subspace: backprop through Lanczos would miss the coupling of the
    rest of the spectrum, so a gradient with a part outside the Krylov space raises; one
    inside it (here the value itself) is exact and matches the dense route."""
    M = _spd(6, 5.0, 21)
    lam, U = torch.linalg.eigh(M)  # noqa: N806
    v = (U[:, 0] + U[:, 3]).reshape(1, 6)
    W = M.clone().requires_grad_(True)
    res = linops.funm("sqrt", linops.Dense((W + W.T) / 2), v, method="lanczos")
    assert res.num_iters == 2
    with pytest.raises(RuntimeError, match=r"right-hand side 0 became invariant after 2 < n steps"):
        res.value.sum().backward()
    grads = []
    for method in ["lanczos", "dense"]:
        W = M.clone().requires_grad_(True)
        y = linops.funm("sqrt", linops.Dense((W + W.T) / 2), v, method=method).value
        (y * y.detach()).sum().backward()
        grads.append(W.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ workspace
def test_a_call_with_gradients_leaves_the_workspace_clean():
    """It used to leave graph-attached storage behind: later calls raised until
    clear_workspace(). Gradient runs never touch the kept storage."""
    R = linops.Resize((16, 16), (8, 8))
    A = linops.Identity((16, 16)) - 0.9 * (R.H @ R)
    v = _randn(3, 16, 16, seed=22)
    before = linops.funm("sqrt", A, v, method="lanczos").value
    for grad_input in [v.clone().requires_grad_(True)]:
        linops.funm("sqrt", A, grad_input, method="lanczos").value.sum().backward()
    rho = torch.tensor(0.9, dtype=DT, requires_grad=True)
    D = linops.Diagonal(torch.ones(16, 16, dtype=DT))
    linops.funm("sqrt", D - rho * (R.H @ R), v, method="lanczos").value.sum().backward()
    after = linops.funm("sqrt", A, v, method="lanczos")
    assert not after.value.requires_grad
    assert torch.equal(after.value, before)
    assert all(not c.requires_grad for chunks in _lanczos_basis._SPARE.values() for c in chunks)
    after.value.sum()  # and a gradient call of the same shape again works
    w = v.clone().requires_grad_(True)
    linops.funm("sqrt", A, w, method="lanczos").value.sum().backward()
    assert w.grad is not None
