"""Krylov solvers (cg, minres, lsqr) and solve's exact routes against numpy, scipy and
dense references; batching, breakdown, zero right-hand sides, float32, errors."""

import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
from hypothesis import given
from hypothesis import strategies as st

import linops

EPS = np.finfo(np.float64).eps


@st.composite
def hermitian_problems(draw, *, max_cond=1e6, indefinite=False, complex_=False):
    """``Q diag(lam) Q^H`` with a spectrum the test chose, and three right-hand sides."""
    n = draw(st.integers(2, 12))
    cond = 10 ** draw(st.floats(0, math.log10(max_cond)))
    kind = draw(st.sampled_from(["spread", "geometric", "clustered"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    if kind == "spread":
        lam = np.linspace(1 / cond, 1.0, n)
    elif kind == "geometric":
        lam = np.geomspace(1 / cond, 1.0, n)
    else:  # two tight clusters at the ends
        lam = np.where(rng.random(n) < 0.5, 1 / cond, 1.0) * (1 + 1e-3 * rng.random(n))
    if indefinite:
        lam = lam * rng.choice([-1.0, 1.0], n)
    z = rng.standard_normal((n, n))
    b = rng.standard_normal((3, n))
    if complex_:
        z = z + 1j * rng.standard_normal((n, n))
        b = b + 1j * rng.standard_normal((3, n))
    q, _ = np.linalg.qr(z)
    mat = (q * lam) @ q.conj().T
    return (mat + mat.conj().T) / 2, lam, b


def _check_against_numpy(res, mat, lam, b, tol):
    """``x - A^{-1} b = -A^{-1} r`` exactly, so ``||x - x*|| <= ||r|| / min|lam|`` with the
    true residual ``r`` of the returned ``x``; numpy's own LU solve adds a forward error of
    at most ~``n eps cond ||x*||`` (backward stable), here ``1e3 eps cond``."""
    want = np.linalg.solve(mat, b.T).T
    got = res.value.numpy()
    r = b - got @ mat.T
    # the reported residual is the true one, up to the rounding of computing any residual,
    # ~n eps (||A|| ||x|| + ||b||)
    floor = (
        10
        * len(lam)
        * EPS
        * (np.abs(lam).max() * np.linalg.norm(got, axis=1) + np.linalg.norm(b, axis=1))
    )
    assert (
        np.abs(res.residual_norm.numpy() - np.linalg.norm(r, axis=1))
        <= 1e-6 * np.linalg.norm(r, axis=1) + floor
    ).all()
    cond = np.abs(lam).max() / np.abs(lam).min()
    bound = np.linalg.norm(r, axis=1) / np.abs(lam).min()
    bound += 1e3 * EPS * cond * np.linalg.norm(want, axis=1)
    assert (np.linalg.norm(got - want, axis=1) <= bound).all()
    # converged is the true residual test
    assert res.converged == bool(
        (np.linalg.norm(r, axis=1) <= tol * np.linalg.norm(b, axis=1)).all()
    )


# tol 1e-8 with cond <= 1e6: CG's attainable relative residual in float64 is ~eps cond
# (2e-10), well below tol, so every problem must converge
@given(hermitian_problems())
def test_cg_matches_numpy_solve(problem):
    mat, lam, b = problem
    res = linops.cg(linops.Dense(torch.from_numpy(mat)), torch.from_numpy(b), tol=1e-8)
    assert res.converged and res.method == "cg"
    _check_against_numpy(res, mat, lam, b, 1e-8)


@given(hermitian_problems(indefinite=True))
def test_minres_matches_numpy_solve_indefinite(problem):
    mat, lam, b = problem
    res = linops.minres(linops.Dense(torch.from_numpy(mat)), torch.from_numpy(b), tol=1e-8)
    assert res.converged and res.method == "minres"
    _check_against_numpy(res, mat, lam, b, 1e-8)


@given(hermitian_problems(complex_=True), st.sampled_from(["cg", "minres"]))
def test_complex_hermitian(problem, method):
    mat, lam, b = problem
    res = getattr(linops, method)(
        linops.Dense(torch.from_numpy(mat)), torch.from_numpy(b), tol=1e-8
    )
    assert res.converged and res.value.dtype == torch.complex128
    _check_against_numpy(res, mat, lam, b, 1e-8)


@given(hermitian_problems(max_cond=1e4, indefinite=True), st.booleans())
def test_lsqr_matches_numpy_solve_on_square(problem, complex_b):
    mat, lam, b = problem
    b = b + 1j * b[::-1] if complex_b else b
    res = linops.lsqr(
        linops.Dense(torch.from_numpy(mat)),
        torch.from_numpy(b),
        tol=1e-10,
        max_iters=100 * len(lam),
    )
    assert res.converged
    # x - x* = -(A^H A)^{-1} A^H r: the bound uses the true normal-equation residual, the
    # quantity LSQR's second test controls; plus numpy's rounding as above
    want = np.linalg.solve(mat, b.T).T
    got = res.value.numpy()
    normal = (b - got @ mat.T) @ mat.conj()
    cond = np.abs(lam).max() / np.abs(lam).min()
    bound = np.linalg.norm(normal, axis=1) / np.abs(lam).min() ** 2
    bound += 1e3 * EPS * cond * np.linalg.norm(want, axis=1)
    assert (np.linalg.norm(got - want, axis=1) <= bound).all()


@st.composite
def rectangular_problems(draw):
    """``U diag(s) V^T`` of a chosen shape, rank and conditioning (cond <= 1e3)."""
    m, n = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    k = min(m, n)
    rank = draw(st.integers(1, k))
    cond = 10 ** draw(st.floats(0, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    s = np.zeros(k)
    s[:rank] = np.geomspace(1.0, 1 / cond, rank)
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    mat = u[:, :k] * s @ v[:, :k].T
    return mat, s[:rank], rng.standard_normal((2, m))


@given(rectangular_problems(), st.sampled_from([0.0, 0.1, 1.0]))
def test_lsqr_matches_numpy_lstsq(problem, damp):
    mat, s, b = problem
    m, n = mat.shape
    A = linops.Dense(torch.from_numpy(mat))
    res = linops.lsqr(A, torch.from_numpy(b), damp=damp, tol=1e-12, max_iters=50 * (m + n))
    # damped least squares is plain least squares of [A; damp I] x = [b; 0]; numpy's lstsq
    # returns the minimum-norm solution, which LSQR started from zero also converges to
    stacked = np.vstack([mat, damp * np.eye(n)])
    want = np.linalg.lstsq(stacked, np.hstack([b, np.zeros((2, n))]).T, rcond=None)[0].T
    assert res.converged
    # least-squares perturbation theory: relative error <= cond tol + cond^2 tol (residual
    # term) with cond <= 1e3 and tol 1e-12, plus rounding eps cond^2; 1e-5 covers both with
    # a 10x margin
    scale = max(np.linalg.norm(want), 1e-300)
    assert np.linalg.norm(res.value.numpy() - want) <= 1e-5 * scale + 1e-12 * np.linalg.norm(b)
    np.testing.assert_allclose(
        res.residual_norm.numpy(),
        np.linalg.norm(b - res.value.numpy() @ mat.T, axis=1),
        rtol=1e-8,
        atol=1e-14,
    )


def test_lsqr_on_resize_is_the_pseudo_inverse():
    R = linops.Resize((3, 12, 12), (5, 5))
    y = torch.randn(2, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    res = linops.lsqr(R, y, tol=1e-12)
    assert res.converged and res.value.shape == (2, 3, 12, 12)
    # pinv goes through the 1-D factors' SVDs: an independent route; both exact to ~1e-12
    torch.testing.assert_close(res.value, linops.pinv(R).apply(y), rtol=1e-9, atol=1e-10)


# ------------------------------------------------------------------ batching
def _spd(n, cond, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g))
    mat = (q * torch.logspace(0, math.log10(cond), n, dtype=torch.float64)) @ q.T
    return ((mat + mat.T) / 2).to(dtype)


@pytest.mark.parametrize("method", ["cg", "minres", "lsqr"])
def test_batched_equals_one_by_one(method):
    mat = _spd(8, 100.0, 0)
    A = linops.Dense(mat, in_shape=(2, 4), out_shape=(2, 4))
    b = torch.randn(2, 3, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    b[1, 2] *= 1e-3  # right-hand sides of very different sizes converge at different steps
    solver = getattr(linops, method)
    batched = solver(A, b, tol=1e-10)
    assert batched.num_iters.shape == (2, 3) and batched.residual_norm.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            one = solver(A, b[i, j], tol=1e-10)
            # the same recurrences per row; only BLAS rounding (gemm vs gemv) differs. Past
            # n steps (lost orthogonality) that can move the stopping step by one, and two
            # iterates that both pass the test differ by up to the error it allows,
            # ~cond tol = 1e-8 of ||x||: rtol 1e-7
            torch.testing.assert_close(
                batched.value[i, j], one.value, rtol=1e-7, atol=1e-7 * one.value.abs().max()
            )
            assert abs(int(batched.num_iters[i, j]) - int(one.num_iters)) <= 1
            assert one.num_iters.shape == ()


@pytest.mark.parametrize("method", ["cg", "minres", "lsqr", "solve"])
def test_zero_right_hand_sides(method):
    A = linops.Dense(_spd(5, 10.0, 2))
    b = torch.randn(3, 5, dtype=torch.float64)
    b[0] = 0
    b[2] = 0
    x0 = torch.ones(3, 5, dtype=torch.float64)
    solver = getattr(linops, method)
    res = solver(A, b, x0=x0) if method != "solve" else solver(A, b)
    assert res.converged
    assert torch.equal(res.value[0], torch.zeros(5, dtype=torch.float64))
    assert torch.equal(res.value[2], torch.zeros(5, dtype=torch.float64))
    assert res.num_iters[0] == 0 and res.num_iters[2] == 0 and res.num_iters[1] > 0
    all_zero = solver(A, torch.zeros(2, 5, dtype=torch.float64))
    assert all_zero.converged and not all_zero.value.any() and not all_zero.num_iters.any()


def test_empty_batch():
    res = linops.cg(linops.Dense(_spd(4, 2.0, 0)), torch.zeros(0, 4, dtype=torch.float64))
    assert res.converged and res.value.shape == (0, 4) and res.num_iters.shape == (0,)


def test_x0_is_used():
    mat = _spd(6, 10.0, 3)
    b = torch.randn(2, 6, dtype=torch.float64)
    exact = torch.linalg.solve(mat, b.T).T
    for solver in (linops.cg, linops.minres, linops.lsqr):
        res = solver(linops.Dense(mat), b, x0=exact, tol=1e-8)
        # an exact initial guess already meets the tolerance: no iteration at all
        assert res.converged and not res.num_iters.any()


# ------------------------------------------------------------------ breakdown
def test_cg_breakdown_on_indefinite_operator_is_reported_not_nan():
    D = linops.Diagonal(torch.tensor([-1.0, 1.0, 2.0], dtype=torch.float64))
    b = torch.ones(2, 3, dtype=torch.float64)
    res = linops.cg(D, b)
    assert not res.converged and torch.isfinite(res.value).all()
    assert (res.num_iters < 3).all()  # stopped at the breakdown, not at max_iters (30)
    with pytest.raises(linops.ConvergenceError, match=r"cg: 2 of 2 right-hand sides"):
        linops.cg(D, b, throw=True)


def test_cg_on_singular_operator():
    S = linops.Dense(torch.diag(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)))
    # b in the range: CG stays in it and converges
    ok = linops.cg(S, torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64), tol=1e-12)
    assert ok.converged
    torch.testing.assert_close(ok.value, torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64))
    # b not in the range: p^H A p vanishes, the row stops, not converged, finite
    bad = linops.cg(S, torch.ones(3, dtype=torch.float64))
    assert not bad.converged and torch.isfinite(bad.value).all()


def test_minres_singular_inconsistent_stops_finite():
    S = linops.Dense(torch.diag(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)))
    res = linops.minres(S, torch.ones(3, dtype=torch.float64))
    assert not res.converged and torch.isfinite(res.value).all()
    # the least-squares residual: the component of b in the null space, 1
    torch.testing.assert_close(res.residual_norm, torch.tensor(1.0, dtype=torch.float64))


def test_cg_stops_on_a_preconditioner_that_is_not_positive():
    A = linops.Dense(_spd(4, 10.0, 4))
    M = linops.Diagonal(torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=torch.float64))
    res = linops.cg(A, torch.ones(4, dtype=torch.float64), M=M)
    assert torch.isfinite(res.value).all() and res.num_iters < 40


def test_lsqr_with_b_orthogonal_to_the_range_returns_zero():
    A = linops.Dense(torch.tensor([[1.0], [0.0]], dtype=torch.float64))
    res = linops.lsqr(A, torch.tensor([0.0, 1.0], dtype=torch.float64))
    # A^H b = 0: x = 0 is the least-squares solution and LSQR stops before iterating
    assert res.converged and res.num_iters == 0 and not res.value.any()
    torch.testing.assert_close(res.residual_norm, torch.tensor(1.0, dtype=torch.float64))


# ------------------------------------------------------------------ preconditioning
def test_jacobi_preconditioner_cuts_iterations():
    g = torch.Generator().manual_seed(5)
    scales = torch.logspace(0, 3, 30, dtype=torch.float64)
    base = _spd(30, 4.0, 6)
    mat = scales.sqrt()[:, None] * base * scales.sqrt()[None, :]  # badly scaled, SPD
    A = linops.Dense(mat)
    b = torch.randn(2, 30, dtype=torch.float64, generator=g)
    plain = linops.cg(A, b, tol=1e-10)
    jacobi = linops.cg(A, b, tol=1e-10, M=linops.Diagonal(1 / torch.diagonal(mat)))
    assert plain.converged and jacobi.converged
    assert (jacobi.num_iters < plain.num_iters).all()
    # both meet the same residual test, so agree to cond * tol (cond <= 1e4 here)
    torch.testing.assert_close(jacobi.value, plain.value, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------- vs scipy counts
def _problem(n, cond, seed, indefinite=False):
    rng = np.random.default_rng(seed)
    lam = np.geomspace(1 / cond, 1.0, n)
    if indefinite:
        lam = lam * rng.choice([-1.0, 1.0], n)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    mat = (q * lam) @ q.T
    return (mat + mat.T) / 2, rng.standard_normal(n)


# Allowance: our recurrences are SciPy's (same formulas, same stopping test), so the counts
# differ only where rounding does (batched reductions, hypot for SciPy's _sym_ortho); that
# moves the count by at most 1-2 while the Krylov basis is near-orthogonal, and by up to
# ~10% once orthogonality is lost (problems needing more than n steps). Hence
# max(2, 10% of the count).
def _allowance(count):
    return max(2, math.ceil(0.1 * count))


@pytest.mark.parametrize("seed,cond", [(0, 10.0), (1, 1e3), (2, 1e5)])
def test_cg_iterations_match_scipy(seed, cond):
    mat, b = _problem(30, cond, seed)
    tol = 1e-8
    count = [0]
    x, info = spla.cg(
        mat, b, rtol=tol, atol=0.0, callback=lambda _: count.__setitem__(0, count[0] + 1)
    )
    assert info == 0
    res = linops.cg(linops.Dense(torch.from_numpy(mat)), torch.from_numpy(b), tol=tol)
    assert abs(int(res.num_iters) - count[0]) <= _allowance(count[0])


@pytest.mark.parametrize("seed,cond", [(0, 10.0), (1, 1e3), (2, 1e4)])
@pytest.mark.parametrize("indefinite", [False, True])
def test_minres_iterations_match_scipy(seed, cond, indefinite):
    mat, b = _problem(30, cond, seed, indefinite)
    tol = 1e-8
    # SciPy's minres stops on ||r|| <= rtol ||A|| ||x||, not on ||r|| <= tol ||b||: run it
    # with rtol=1e-30 and find the first iterate whose true residual meets our test
    residuals = []
    spla.minres(
        mat,
        b,
        rtol=1e-30,
        maxiter=300,
        callback=lambda x: residuals.append(np.linalg.norm(b - mat @ x)),
    )
    first = next(k + 1 for k, r in enumerate(residuals) if r <= tol * np.linalg.norm(b))
    res = linops.minres(linops.Dense(torch.from_numpy(mat)), torch.from_numpy(b), tol=tol)
    assert res.converged
    assert abs(int(res.num_iters) - first) <= _allowance(first)


@pytest.mark.parametrize(
    "seed,cond,damp", [(0, 10.0, 0.0), (1, 1e3, 0.0), (2, 1e3, 1e-2), (3, 1e2, 0.5)]
)
def test_lsqr_iterations_match_scipy(seed, cond, damp):
    mat, b = _problem(30, cond, seed)
    mat = mat[:, :20]  # rectangular, so inconsistent: the least-squares test ends it
    tol = 1e-8
    out = spla.lsqr(mat, b, damp=damp, atol=tol, btol=tol, conlim=0, iter_lim=600)
    assert out[1] in (1, 2)
    res = linops.lsqr(
        linops.Dense(torch.from_numpy(mat)), torch.from_numpy(b), damp=damp, tol=tol, max_iters=600
    )
    assert res.converged
    assert abs(int(res.num_iters) - out[2]) <= _allowance(out[2])
    # same algorithm: the solutions agree to the stopping tolerance amplified by cond
    np.testing.assert_allclose(
        res.value.numpy(), out[0], rtol=0, atol=1e3 * cond * tol * np.linalg.norm(out[0])
    )


# ------------------------------------------------------------------ float32
@pytest.mark.parametrize("method", ["cg", "minres", "lsqr"])
def test_float32(method):
    mat = _spd(20, 100.0, 7)
    b = torch.randn(4, 20, generator=torch.Generator().manual_seed(8))
    A = linops.Dense(mat)  # float64 matrix: the operator casts it to float32 with b
    # tol 1e-4: float32's attainable relative residual is ~eps32 cond = 1.2e-5 at cond 100,
    # so 1e-4 is reachable with a 8x margin (1e-6, the default, is not: throw would raise).
    # LSQR in float32 loses orthogonality sooner than in float64: more than 2 n steps.
    res = getattr(linops, method)(A, b, tol=1e-4, max_iters=200)
    assert res.value.dtype == torch.float32 and res.residual_norm.dtype == torch.float32
    assert res.converged
    # the float32 answer's true residual, in float64: x - x* = -A^{-1} r exactly
    x = res.value.double()
    r = b.double() - x @ mat.T
    rel = torch.linalg.vector_norm(r, dim=1) / torch.linalg.vector_norm(b.double(), dim=1)
    if method == "lsqr":
        # LSQR's compatible-system test: ||r|| <= tol (||b|| + anorm ||x||), anorm being its
        # running Frobenius norm of the bidiagonal matrix: each of its 2 k entries is at most
        # ||A||_2, so anorm <= sqrt(2 k) ||A||_2 (in float32 it passes ||A||_F once
        # orthogonality is lost); 1.01 for float32 rounding of the test itself
        anorm = (2 * res.num_iters.double()).sqrt() * torch.linalg.matrix_norm(mat, ord=2)
        allowed = 1e-4 * (1 + anorm * x.norm(dim=1) / b.double().norm(dim=1))
        assert (rel <= 1.01 * allowed).all()
    else:
        assert (rel <= 1e-4).all()
    want = torch.linalg.solve(mat, b.double().T).T
    err = torch.linalg.vector_norm(x - want, dim=1)
    assert (err <= torch.linalg.vector_norm(r, dim=1) * 1.0 + 10 * 1.2e-7 * want.norm(dim=1)).all()


# ------------------------------------------------------------- exact routes
def _structured():
    g = torch.Generator().manual_seed(11)
    d = 0.5 + torch.rand(3, 1, 4, dtype=torch.float64, generator=g)
    dc = torch.complex(
        1 + torch.rand(6, dtype=torch.float64, generator=g),
        torch.randn(6, dtype=torch.float64, generator=g),
    )
    R = linops.Resize((2, 6, 6), (3, 3))
    blur = linops.GaussianBlur((5, 7), sigma=1.0, boundary="circular")
    u = torch.arange(6, dtype=torch.float64)
    lam = (torch.pi * u / 6)[:, None] ** 2 + (torch.pi * u / 6)[None, :] ** 2
    heat = linops.BasisDiagonal(linops.DCT2((6, 6)), torch.exp(-0.5 * lam))
    fheat = linops.BasisDiagonal(
        linops.FFT2((4, 5)), 1 + torch.rand(4, 5, dtype=torch.float64, generator=g)
    )
    D = linops.Diagonal(d, shape=(3, 5, 4))
    return [
        ("identity", linops.Identity((2, 3)), "scaled_identity"),
        ("scaled_identity", linops.ScaledIdentity((4,), -0.7), "scaled_identity"),
        ("complex_scaled_identity", linops.ScaledIdentity((4,), 0.5 + 2j), "scaled_identity"),
        ("diagonal_broadcast", D, "diagonal"),
        ("shifted_diagonal", 2.0 * D - 0.25 * linops.Identity((3, 5, 4)), "diagonal"),
        ("diagonal_product", D @ D, "diagonal"),
        ("complex_diagonal", linops.Diagonal(dc), "diagonal"),
        ("complex_diagonal_adjoint", linops.Diagonal(dc).H, "diagonal"),
        ("heat", heat, "basis_diagonal"),
        ("shifted_heat", linops.Identity((6, 6)) - 0.5 * heat, "basis_diagonal"),
        ("fft_multiplier", fheat, "basis_diagonal"),
        ("ssd_covariance", linops.Identity((2, 6, 6)) - 0.9 * (R.H @ R) / 1.0, "kronecker"),
        ("regularised_resize", 0.1 * linops.Identity((2, 6, 6)) + R.H @ R, "kronecker"),
        ("blur", blur, "kronecker"),
        ("blur_normal", blur.H @ blur + 0.01 * linops.Identity((5, 7)), "kronecker"),
    ]


@pytest.mark.parametrize("name,A,method", _structured(), ids=[s[0] for s in _structured()])
@pytest.mark.parametrize("complex_b", [False, True])
def test_exact_routes_match_dense(name, A, method, complex_b):
    g = torch.Generator().manual_seed(12)
    b = torch.randn(3, *A.in_shape, dtype=torch.float64, generator=g)
    if complex_b:
        b = torch.complex(b, torch.randn(b.shape, dtype=torch.float64, generator=g))
    dense = A.to_dense()
    res = linops.solve(A, b)
    assert res.method == method and not res.num_iters.any() and res.converged
    want = torch.linalg.solve(dense.to(res.value.dtype), b.reshape(3, -1).T.to(res.value.dtype)).T
    # both routes are backward stable and these operators have cond <= ~1e3: 1e-10
    torch.testing.assert_close(res.value.reshape(3, -1), want, rtol=1e-10, atol=1e-10)
    assert linops.solve(A, b, method="exact").method == method


def test_exact_route_float32_and_singular():
    R = linops.Resize((8, 8), (4, 4))
    A = linops.Identity((8, 8)) + 2.0 * (R.H @ R)
    b = torch.randn(2, 8, 8)
    res = linops.solve(A, b)
    assert res.method == "kronecker" and res.value.dtype == torch.float32
    # computed in float64 and rounded: float32 rounding of x and of the residual, cond ~9
    assert (res.residual_norm <= 1e-5 * b.reshape(2, -1).norm(dim=1)).all()
    # singular: R.H @ R has rank 16 of 64; the exact route returns the pseudo-inverse solution
    dense = (R.H @ R).to_dense()
    y = torch.randn(64, dtype=torch.float64)
    sing = linops.solve(R.H @ R, y.reshape(8, 8))
    assert sing.method == "kronecker" and not sing.converged
    torch.testing.assert_close(
        sing.value.reshape(-1), torch.linalg.pinv(dense, hermitian=True) @ y, rtol=1e-8, atol=1e-9
    )


def test_solve_auto_rule():
    R = linops.Resize((6, 6), (3, 3))
    mat = _spd(36, 10.0, 13)
    b = torch.randn(2, 6, 6, dtype=torch.float64)
    # a sum with a Dense term has no exact route; self-adjoint declared -> minres
    D = linops.Dense(mat, in_shape=(6, 6), out_shape=(6, 6))
    sym = R.H @ R + D.H @ D
    assert sym.is_self_adjoint and linops.solve(sym, b).method == "minres"
    # Dense declares nothing -> lsqr; rectangular -> lsqr
    assert linops.solve(linops.Dense(mat), b.reshape(2, 36)).method == "lsqr"
    assert linops.solve(R, torch.randn(3, 3, dtype=torch.float64)).method == "lsqr"
    # method= and each method's options pass through
    x0 = torch.zeros(2, 36, dtype=torch.float64)
    res = linops.solve(
        linops.Dense(mat), b.reshape(2, 36), method="cg", M=linops.Identity((36,)), x0=x0
    )
    assert res.method == "cg" and res.converged
    assert (
        linops.solve(linops.Dense(mat), b.reshape(2, 36), method="minres", shift=0.5).method
        == "minres"
    )
    assert (
        linops.solve(R, torch.randn(3, 3, dtype=torch.float64), method="lsqr", damp=0.1).method
        == "lsqr"
    )


def test_minres_shift_matches_numpy():
    mat = _spd(10, 10.0, 14)
    b = torch.randn(2, 10, dtype=torch.float64)
    res = linops.minres(linops.Dense(mat), b, shift=0.5, tol=1e-12)  # indefinite A - 0.5 I
    want = torch.linalg.solve(mat - 0.5 * torch.eye(10, dtype=torch.float64), b.T).T
    # cond(A - 0.5 I) <= 20: 1e-12 residual -> <= 2e-11 error
    torch.testing.assert_close(res.value, want, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ devices
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_device(device):
    mat = _spd(16, 100.0, 15).to(device)
    b = torch.randn(3, 16, dtype=torch.float64, device=device)
    A = linops.Dense(mat)
    want = torch.linalg.solve(mat, b.T).T
    for method in ("cg", "minres", "lsqr"):
        res = getattr(linops, method)(A, b, tol=1e-10, max_iters=500)
        assert res.value.device.type == device and res.num_iters.device.type == device
        # cond 100, tol 1e-10 (lsqr: its own tests, ||A||_F ~ 4 ||A||): 1e-7 relative
        torch.testing.assert_close(res.value, want, rtol=1e-7, atol=1e-7)
    d = torch.rand(16, dtype=torch.float64, device=device) + 1
    res = linops.solve(linops.Diagonal(d), b)
    torch.testing.assert_close(res.value, b / d)


# ------------------------------------------------------------------ throw
def test_throw_names_misses_and_worst_residual():
    A = linops.Dense(_spd(20, 1e3, 16))
    b = torch.randn(3, 20, dtype=torch.float64)
    b[1] = 0
    res = linops.cg(A, b, tol=1e-10, max_iters=3)
    assert not res.converged and res.num_iters.tolist() == [3, 0, 3]
    worst = float((res.residual_norm / b.norm(dim=1).clamp_min(1e-300))[[0, 2]].max())
    with pytest.raises(
        linops.ConvergenceError,
        match=r"cg: 2 of 3 right-hand sides did not reach tol=1e-10 within max_iters=3 \(worst relative residual \|\|b - A x\|\| / \|\|b\|\| = ([0-9.e-]+)\)",
    ) as info:
        linops.cg(A, b, tol=1e-10, max_iters=3, throw=True)
    assert float(info.value.args[0].split("= ")[1].split(")")[0]) == pytest.approx(worst, rel=1e-2)
    with pytest.raises(linops.ConvergenceError, match=r"minres: 2 of 3 right-hand sides"):
        linops.minres(A, b, tol=1e-10, max_iters=3, throw=True)
    with pytest.raises(linops.ConvergenceError, match=r"lsqr: 2 of 3 right-hand sides"):
        linops.lsqr(A, b, tol=1e-10, max_iters=3, throw=True)
    with pytest.raises(
        linops.ConvergenceError,
        match=r"solve: 1 of 1 right-hand sides did not reach tol=1e-06 \(worst",
    ):
        linops.solve(
            linops.Diagonal(torch.tensor([0.0, 1.0], dtype=torch.float64)),
            torch.ones(2, dtype=torch.float64),
            throw=True,
        )


# ------------------------------------------------------------------ bad input
A4 = linops.Dense(torch.eye(4, dtype=torch.float64))
B4 = torch.ones(4, dtype=torch.float64)


@pytest.mark.parametrize("fn", [linops.cg, linops.minres, linops.lsqr, linops.solve])
def test_bad_operator_and_rhs(fn):
    name = fn.__name__
    with pytest.raises(TypeError, match=rf"{name}: expected A to be a LinearOperator, got ndarray"):
        fn(np.eye(4), B4)
    with pytest.raises(TypeError, match=rf"{name}: expected b to be a torch.Tensor, got list"):
        fn(A4, [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(
        ValueError, match=rf"{name}: expected b with a floating or complex dtype, got torch.int64"
    ):
        fn(A4, torch.ones(4, dtype=torch.int64))
    with pytest.raises(
        ValueError,
        match=rf"{name}: expected b with trailing shape \(4,\) \(A.in_shape of Dense\), got b of shape \(2, 3\)",
    ):
        fn(A4, torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"{name}: expected a finite b, got NaN or inf entries"):
        fn(A4, torch.tensor([1.0, float("nan"), 0.0, 0.0], dtype=torch.float64))
    for tol in (0, -1.0, float("nan"), "1e-6", True):
        with pytest.raises(
            ValueError, match=rf"{name}: expected tol > 0 \(a finite real number\), got"
        ):
            fn(A4, B4, tol=tol)
    for max_iters in (0, 2.5, True):
        with pytest.raises(
            ValueError, match=rf"{name}: expected max_iters >= 1 \(an int\) or None, got"
        ):
            fn(A4, B4, max_iters=max_iters)
    with pytest.raises(TypeError, match=rf"{name}: expected throw to be a bool, got str"):
        fn(A4, B4, throw="yes")


@pytest.mark.parametrize("fn", [linops.cg, linops.minres, linops.lsqr])
def test_bad_x0(fn):
    name = fn.__name__
    with pytest.raises(
        TypeError, match=rf"{name}: expected x0 to be a torch.Tensor or None, got list"
    ):
        fn(A4, B4, x0=[0.0] * 4)
    with pytest.raises(
        ValueError,
        match=rf"{name}: expected x0 of shape \(2, 4\) \(b's batch and A.in_shape\), got \(4,\)",
    ):
        fn(A4, torch.ones(2, 4, dtype=torch.float64), x0=B4)


def test_rectangular_rhs_message_names_out_shape():
    R = linops.Resize((6, 6), (3, 3))
    with pytest.raises(
        ValueError,
        match=r"lsqr: expected b with trailing shape \(3, 3\) \(A.out_shape of Resize\), got b of shape \(6, 6\)",
    ):
        linops.lsqr(R, torch.ones(6, 6))


@pytest.mark.parametrize("fn", [linops.cg, linops.minres])
def test_square_and_self_adjoint_required(fn):
    name = fn.__name__
    with pytest.raises(
        ValueError,
        match=rf"{name}: expected a square operator \(in_shape == out_shape\), got in_shape \(6, 6\) and out_shape \(3, 3\)",
    ):
        fn(linops.Resize((6, 6), (3, 3)), torch.ones(6, 6))
    upper = linops.Dense(torch.triu(torch.ones(4, 4, dtype=torch.float64)))
    with pytest.raises(
        ValueError,
        match=rf"{name}: expected A to be self-adjoint, got Dense with \|<Au, w> - <u, Aw>\| / norms = .* Use lsqr",
    ):
        fn(upper, B4)


def test_bad_preconditioner():
    with pytest.raises(
        TypeError, match=r"cg: expected M to be a LinearOperator or None, got Tensor"
    ):
        linops.cg(A4, B4, M=torch.eye(4))
    with pytest.raises(
        ValueError,
        match=r"cg: expected M with in_shape == out_shape == A.in_shape \(4,\), got in_shape \(3,\) and out_shape \(3,\)",
    ):
        linops.cg(A4, B4, M=linops.Identity((3,)))
    upper = linops.Dense(torch.triu(torch.ones(4, 4, dtype=torch.float64)))
    with pytest.raises(
        ValueError, match=r"cg: expected the preconditioner M to be self-adjoint, got Dense"
    ):
        linops.cg(A4, B4, M=upper)


def test_bad_shift_and_damp():
    for shift in (1j, float("inf"), "0", None):
        with pytest.raises(
            ValueError, match=r"minres: expected shift to be a finite real number, got"
        ):
            linops.minres(A4, B4, shift=shift)
    for damp in (-0.1, float("nan"), 1j):
        with pytest.raises(
            ValueError, match=r"lsqr: expected damp to be a finite real number >= 0, got"
        ):
            linops.lsqr(A4, B4, damp=damp)
    with pytest.raises(
        ValueError, match=r"lsqr: expected x0=None with damp > 0, got an x0 and damp=0.1"
    ):
        linops.lsqr(A4, B4, damp=0.1, x0=B4)


def test_bad_solve_options():
    with pytest.raises(
        ValueError,
        match=r"solve: expected method in \('auto', 'exact', 'cg', 'minres', 'lsqr'\), got 'gmres'",
    ):
        linops.solve(A4, B4, method="gmres")
    with pytest.raises(
        TypeError,
        match=r"solve: expected keyword arguments of method='cg' \(M, x0\), got unexpected damp",
    ):
        linops.solve(A4, B4, method="cg", damp=1.0)
    with pytest.raises(
        TypeError,
        match=r"solve: expected keyword arguments of method='exact' \(no other keyword\), got unexpected x0",
    ):
        linops.solve(A4, B4, method="exact", x0=B4)
    with pytest.raises(
        ValueError,
        match=r"solve: method='exact' needs a square operator with known eigenvectors .* got Dense",
    ):
        linops.solve(A4, B4, method="exact")
