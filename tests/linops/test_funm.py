"""Matrix functions against dense references: Lanczos, exact structured paths, errors."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st

import linops

FUNCS = {"sqrt": np.sqrt, "invsqrt": lambda x: 1 / np.sqrt(x), "exp": np.exp, "log": np.log}
DERIVS = {
    "sqrt": lambda x: 0.5 / np.sqrt(x),
    "invsqrt": lambda x: 0.5 * x**-1.5,
    "exp": np.exp,
    "log": lambda x: 1 / x,
}


def _attainable(lam, name):
    """Rounding-level error of f(A) v in our relative measure.

    Eigenvalues are only known to ~eps ||A||; through f that is an absolute error
    ~eps ||A|| max|f'| ||v||, and errors are relative to >= 1e-3 ||f(A)|| ||v||. So
    1e3 * eps * cond_f with cond_f = ||A|| max|f'| / max|f|, times 10 for the
    accumulation over the Krylov basis.
    """
    cond_f = (
        lam.max() * np.abs(DERIVS[name](lam)).max() / max(np.abs(FUNCS[name](lam)).max(), 1e-300)
    )
    return 1e4 * np.finfo(float).eps * cond_f


@st.composite
def spd_problems(draw):
    """A symmetric positive definite matrix with a spectrum the test chose."""
    n = draw(st.integers(2, 200))
    cond = 10 ** draw(st.floats(0, 6))
    kind = draw(st.sampled_from(["spread", "clustered", "geometric"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    if kind == "spread":
        lam = np.linspace(1 / cond, 1.0, n)
    elif kind == "geometric":
        lam = np.geomspace(1 / cond, 1.0, n)
    else:  # two tight clusters at the ends
        lam = np.where(rng.random(n) < 0.5, 1 / cond, 1.0) * (1 + 1e-3 * rng.random(n))
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    mat = (q * lam) @ q.T
    return (mat + mat.T) / 2, lam, q, rng.standard_normal((3, n))


def _dense_f(q, lam, name, v):
    return ((q * FUNCS[name](lam)) @ q.T @ v.T).T


def _rel_err(got, want, lam, name, v):
    """Errors relative to max(||f(A) v||, 1e-3 ||f(A)|| ||v||), as funm defines them."""
    den = np.maximum(
        np.linalg.norm(want, axis=1),
        1e-3 * np.abs(FUNCS[name](lam)).max() * np.linalg.norm(v, axis=1),
    )
    return np.linalg.norm(got - want, axis=1) / np.where(den > 0, den, 1.0)  # f(A) = 0: absolute


@given(spd_problems(), st.sampled_from(sorted(FUNCS)))
def test_lanczos_to_convergence_matches_dense(problem, name):
    mat, lam, q, v = problem
    A = linops.Dense(torch.from_numpy(mat))
    want = _dense_f(q, lam, name, v)
    res = linops.funm(
        name, A, torch.from_numpy(v), method="lanczos", tol=1e-13, max_iters=2 * len(lam)
    )
    err = _rel_err(res.value.numpy(), want, lam, name, v)
    # full reorthogonalisation to the end of the Krylov space: 1e-10 (the bar),
    # or the rounding level of f itself where f is ill-conditioned (see _attainable)
    assert err.max() <= max(1e-10, _attainable(lam, name)), (err.max(), res.num_iters)


@given(spd_problems(), st.sampled_from(sorted(FUNCS)), st.sampled_from([1e-4, 1e-7, 1e-10]))
def test_converged_means_true_error_below_tol(problem, name, tol):
    mat, lam, q, v = problem
    A = linops.Dense(torch.from_numpy(mat))
    want = _dense_f(q, lam, name, v)
    res = linops.funm(name, A, torch.from_numpy(v), method="lanczos", tol=tol, max_iters=300)
    err = _rel_err(res.value.numpy(), want, lam, name, v)
    done = res.error_estimate.numpy() <= tol
    # the claim under test: every right-hand side declared converged is within tol
    # (unless tol is below what rounding allows for this f and spectrum)
    bound = max(tol, _attainable(lam, name))
    assert (err[done] <= bound).all(), (err, res.error_estimate, res.num_iters)
    if res.converged:
        assert (err <= bound).all()


def _ssd_covariance(n, rho_fraction):
    """I - rho c^2 R^T R for a 2x antialiased resize, rho_fraction of the PSD limit."""
    R = linops.Resize((n, n), (n // 2, n // 2))
    dense_r = R.to_dense()
    lmax = torch.linalg.eigvalsh(dense_r.T @ dense_r)[-1].item()
    A = linops.Identity((n, n)) - (rho_fraction / lmax) * (R.H @ R)
    dense = torch.eye(n * n, dtype=torch.float64) - (rho_fraction / lmax) * dense_r.T @ dense_r
    return A, dense


@pytest.mark.parametrize("n", [16, 24])
@pytest.mark.parametrize("rho", [0.3, 0.9, 0.999, 1.0])
def test_ssd_covariance_exact_path_against_scipy_sqrtm(n, rho):
    A, dense = _ssd_covariance(n, rho)
    ref = scipy.linalg.sqrtm(dense.numpy())
    ref = np.real(ref)
    v = torch.randn(3, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    res = linops.sqrtm(A, v)
    assert res.method == "kronecker" and res.num_iters == 0
    want = (v.reshape(3, -1).numpy() @ ref.T).reshape(3, n, n)
    # at rho = 1 the smallest eigenvalue is 0 and sqrtm itself loses ~sqrt(eps): compare
    # relative to ||v||; elsewhere both routes are backward stable (1e-12)
    tol = 1e-12 if rho < 1 else 1e-7
    np.testing.assert_allclose(res.value.numpy(), want, rtol=0, atol=tol * np.abs(want).max())
    res32 = linops.sqrtm(A, v.float())
    assert res32.value.dtype == torch.float32
    np.testing.assert_allclose(
        res32.value.numpy(), want, rtol=0, atol=1e-6 * np.abs(want).max() * 4
    )


@pytest.mark.parametrize("rho", [0.5, 0.999])
def test_ssd_covariance_lanczos_against_dense(rho):
    A, dense = _ssd_covariance(16, rho)
    lam, q = np.linalg.eigh(dense.numpy())
    v = np.random.default_rng(1).standard_normal((4, 256))
    want = _dense_f(q, np.clip(lam, 0, None), "sqrt", v)
    res = linops.sqrtm(A, torch.from_numpy(v).reshape(4, 16, 16), method="lanczos", tol=1e-10)
    err = np.linalg.norm(res.value.reshape(4, -1).numpy() - want, axis=1) / np.linalg.norm(
        want, axis=1
    )
    assert res.converged and err.max() <= 1e-10
    assert (res.error_estimate.numpy() >= err).all()  # the estimate bounds the true error here


def test_resize_normal_operator_recognised_with_scale_and_channels():
    R = 2.0 * linops.Resize((3, 12, 12), (6, 6), mode="bicubic")
    A = 0.7 * linops.Identity((3, 12, 12)) + 0.1 * (R.H @ R)
    v = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    exact = linops.funm("log", A, v)
    dense = linops.funm("log", A, v, method="dense")
    assert exact.method == "kronecker"
    torch.testing.assert_close(exact.value, dense.value, rtol=0, atol=1e-12)


def test_gaussian_blur_and_basis_diagonal_paths():
    B = linops.GaussianBlur((9, 7), 1.1, boundary="circular")
    v = torch.randn(2, 9, 7, dtype=torch.float64)
    res = linops.expm(B, v)
    assert res.method == "kronecker"
    torch.testing.assert_close(
        res.value, linops.expm(B, v, method="dense").value, rtol=0, atol=1e-12
    )
    d = torch.rand(6, 5, dtype=torch.float64) + 0.1
    H = linops.BasisDiagonal(linops.DCT2((6, 5)), d)
    res = linops.invsqrtm(H, v[:, :6, :5].contiguous())
    assert res.method == "basis_diagonal"
    torch.testing.assert_close(
        res.value, linops.invsqrtm(H, v[:, :6, :5].contiguous(), method="dense").value
    )
    s = linops.sqrtm(linops.ScaledIdentity((4,), 9.0), torch.ones(4, dtype=torch.float64))
    assert s.method == "scaled_identity" and torch.equal(
        s.value, torch.full((4,), 3.0, dtype=torch.float64)
    )


def test_batched_equals_per_vector():
    A, _ = _ssd_covariance(16, 0.99)
    v = torch.randn(5, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    batch = linops.sqrtm(A, v, method="lanczos", tol=1e-11)
    for i in range(5):
        one = linops.sqrtm(A, v[i], method="lanczos", tol=1e-11)
        # the same tolerance from two runs that may stop at different steps
        torch.testing.assert_close(batch.value[i], one.value, rtol=0, atol=1e-9)


def test_float32_lanczos():
    A, dense = _ssd_covariance(16, 0.9)
    v = torch.randn(3, 16, 16)
    res = linops.sqrtm(A, v, method="lanczos")
    ref = linops.sqrtm(A, v.double()).value
    assert res.value.dtype == torch.float32 and res.converged
    err = (res.value.double() - ref).norm() / ref.norm()
    assert err < 1e-5  # float32 default tol


def test_callable_and_no_reorth():
    A, _ = _ssd_covariance(16, 0.5)
    v = torch.randn(2, 16, 16, dtype=torch.float64)
    cube = linops.funm(lambda x: x**3, A, v, method="lanczos")
    want = A.apply(A.apply(A.apply(v)))
    torch.testing.assert_close(cube.value, want, rtol=0, atol=1e-12)
    plain = linops.funm("sqrt", A, v, method="lanczos", reorth="none", tol=1e-8)
    torch.testing.assert_close(plain.value, linops.sqrtm(A, v).value, rtol=0, atol=1e-7)


def test_breakdown_gives_exact_answer_early():
    # v in a 2-dimensional invariant subspace: Lanczos must stop after 2 steps
    d = torch.tensor([1.0, 4.0, 9.0, 16.0], dtype=torch.float64)
    A = linops.Diagonal(d)
    v = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    res = linops.sqrtm(A, v, method="lanczos")
    assert res.num_iters == 2 and res.converged
    torch.testing.assert_close(
        res.value, torch.tensor([[1.0, 2.0, 0, 0], [0, 0, 0, 0]], dtype=torch.float64)
    )


def test_negative_eigenvalue_is_reported():
    A, _ = _ssd_covariance(16, 1.2)  # 20% beyond the PSD limit
    v = torch.randn(16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with pytest.raises(
        ValueError,
        match=r"sqrt needs a positive semidefinite operator, got an eigenvalue -0.2\d* \(Kronecker eigenpair",
    ):
        linops.sqrtm(A, v)
    with pytest.raises(
        ValueError,
        # the first negative Ritz value found, in %g format (its size depends on v)
        match=r"sqrt needs a positive semidefinite operator, got an eigenvalue -\d[\d.e+-]* \(a Ritz value",
    ):
        linops.sqrtm(A, v, method="lanczos")
    with pytest.raises(
        ValueError,
        match=r"log needs a positive definite operator, got an eigenvalue -1 \(diag entry \(1,\) of the BasisDiagonal\)",
    ):
        linops.logm(
            linops.BasisDiagonal(linops.DCT2((1, 2)), torch.tensor([1.0, -1.0])), torch.ones(1, 2)
        )


def test_invalid_inputs():
    A, _ = _ssd_covariance(16, 0.5)
    with pytest.raises(
        ValueError, match=r"funm\('sqrt'\): expected a self-adjoint operator, got Dense with"
    ):
        linops.sqrtm(linops.Dense(torch.randn(16, 16), (4, 4), (4, 4)), torch.ones(4, 4))
    sym = torch.randn(16, 16)
    # a symmetric matrix without the flag passes the randomised check
    assert linops.sqrtm(linops.Dense(sym @ sym.T, (4, 4), (4, 4)), torch.ones(4, 4)).converged
    with pytest.raises(ValueError, match=r"expected a finite v, got NaN or inf entries"):
        linops.sqrtm(A, torch.full((16, 16), math.nan))
    with pytest.raises(
        ValueError, match=r"expected v with trailing shape \(16, 16\), got \(8, 8\)"
    ):
        linops.sqrtm(A, torch.ones(8, 8))
    with pytest.raises(
        ValueError,
        match=r"expected f in \('sqrt', 'invsqrt', 'exp', 'log'\) or a callable, got 'cbrt'",
    ):
        linops.funm("cbrt", A, torch.ones(16, 16))
    with pytest.raises(ValueError, match=r"expected method in .*got 'cg'"):
        linops.funm("sqrt", A, torch.ones(16, 16), method="cg")
    with pytest.raises(ValueError, match=r"method='exact' needs a structured operator"):
        linops.funm("sqrt", linops.Dense(torch.eye(4)), torch.ones(4), method="exact")
    with pytest.raises(ValueError, match=r"expected a square operator"):
        linops.funm("sqrt", linops.Resize((8, 8), (4, 4)), torch.ones(8, 8))


def test_throw_on_non_convergence():
    A, _ = _ssd_covariance(16, 0.999)
    v = torch.randn(16, 16, dtype=torch.float64)
    res = linops.sqrtm(A, v, method="lanczos", tol=1e-12, max_iters=5)
    assert not res.converged and res.num_iters == 5
    with pytest.raises(linops.ConvergenceError, match=r"did not reach tol=1e-12 in 5 iterations"):
        linops.sqrtm(A, v, method="lanczos", tol=1e-12, max_iters=5, throw=True)


@pytest.mark.parametrize("name", ["sqrt", "invsqrt", "log", "exp"])
def test_exact_path_low_rank_split_equals_the_full_eigenbasis(monkeypatch, name):
    """R^T R of a 2x resize has rank n/2: the exact path works on the nonzero eigenpairs
    only, plus f(a) v; the same result as the full eigenbasis and as the dense route."""
    from linops import _funm_exact

    A, _ = _ssd_covariance(24, 0.9)
    v = torch.randn(2, 24, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    calls = []
    real = _funm_exact._nonzero
    monkeypatch.setattr(_funm_exact, "_nonzero", lambda lam: calls.append(real(lam)) or calls[-1])
    split = linops.funm(name, A, v)
    assert [int(c.sum()) for c in calls] == [12, 12]  # half of each factor's eigenpairs kept
    monkeypatch.setattr(_funm_exact, "_nonzero", lambda lam: torch.ones_like(lam, dtype=torch.bool))
    full = linops.funm(name, A, v)
    # both backward stable on 24 x 24 factors: a few hundred eps of ||f(A) v||
    torch.testing.assert_close(
        split.value, full.value, rtol=0, atol=1e-13 * full.value.abs().max().item() * 10
    )
    dense = linops.funm(name, A, v, method="dense")
    torch.testing.assert_close(
        split.value, dense.value, rtol=0, atol=1e-12 * dense.value.abs().max().item()
    )


# ------------------------------------------ issue 15: never converged on garbage
def test_singular_operator_is_refused_for_log_and_invsqrt():
    """R^T R (rank n/4) and I - R^T R / lambda_max (one zero eigenvalue): Lanczos meets a
    Ritz value that is zero to rounding (1e-14 against ||A|| ~ 1); log of it would be a
    finite -32 and invsqrt 1e7, both meaningless. Every route refuses with the eigenvalue."""
    R = linops.Resize((16, 16), (8, 8))
    A, _ = _ssd_covariance(16, 1.0)
    v = torch.randn(3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for op in [R.H @ R, A]:
        for f in ["log", "invsqrt"]:
            for method in ["lanczos", "dense", "auto"]:
                with pytest.raises(
                    ValueError,
                    match=rf"{f} needs a positive definite operator, got an eigenvalue .*"
                    r"(zero to rounding|it must be > 0)",
                ):
                    linops.funm(f, op, v, method=method)
    assert linops.sqrtm(A, v, method="lanczos").converged  # sqrt is defined there


@pytest.mark.parametrize("method", ["lanczos", "dense", "auto"])
def test_overflow_is_not_converged_and_throw_raises(method):
    """exp of eigenvalues in [700, 800] overflows float64 (exp(710) = inf): the estimate
    used to read 0 with converged=True; now inf, not converged, and throw=True raises."""
    d = torch.linspace(700.0, 800.0, 12, dtype=torch.float64)
    A = linops.Diagonal(d) if method != "auto" else linops.ScaledIdentity((12,), 800.0)
    v = torch.randn(2, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    res = linops.expm(A, v, method=method)
    assert not res.converged
    assert not bool(torch.isfinite(res.value).all())
    assert bool(torch.isinf(res.error_estimate).all())
    with pytest.raises(linops.ConvergenceError, match=r"funm\('exp'\): the result is not finite"):
        linops.expm(A, v, method=method, throw=True)


def test_callable_with_the_wrong_output_shape_is_named():
    A, _ = _ssd_covariance(16, 0.5)
    v = torch.randn(2, 16, 16, dtype=torch.float64)

    def first_column(x):
        return x[..., :1]

    for method in ["lanczos", "dense", "auto"]:
        with pytest.raises(
            ValueError,
            match=r"funm: expected f \(first_column\) to return the shape of its input .*got "
            r"shape \((.*, )?1,?\) for an input of shape",
        ):
            linops.funm(first_column, A, v, method=method)
    with pytest.raises(ValueError, match=r"expected f \(<lambda>\) to return a tensor"):
        linops.funm(lambda x: 1.0, A, v, method="lanczos")


def test_a_callable_returning_nan_is_not_converged():
    A, _ = _ssd_covariance(16, 0.5)
    v = torch.randn(2, 16, 16, dtype=torch.float64)
    res = linops.funm(lambda x: torch.log(x - 10.0), A, v, method="lanczos")  # log of < 0
    assert not res.converged and bool(torch.isinf(res.error_estimate).all())


def test_nan_inside_the_operator_is_refused():
    d = torch.tensor([1.0, float("nan"), 2.0], dtype=torch.float64)
    v = torch.ones(3, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"the operator returned NaN or inf for a finite unit vector"
    ):
        linops.sqrtm(linops.Diagonal(d), v, method="lanczos")
    with pytest.raises(ValueError, match=r"expected an operator with finite entries"):
        linops.sqrtm(linops.Diagonal(d), v, method="dense")
    with pytest.raises(
        ValueError, match=r"expected an operator with finite entries, got an eigenvalue nan \(diag"
    ):
        linops.sqrtm(linops.BasisDiagonal(linops.DCT2((1, 3)), d.reshape(1, 3)), v.reshape(1, 3))
    with pytest.raises(ValueError, match=r"expected an operator with finite entries"):
        linops.expm(linops.Dense(torch.diag(d)), v)  # not flagged self-adjoint: caught there


# ------------------------------------------------------------- reorthogonalisation
def _run(A, v, f, reorth, tol, max_iters=500):
    from linops._funm_lanczos import _lanczos

    name = f if isinstance(f, str) else None
    fn = {"sqrt": torch.sqrt, "exp": torch.exp}.get(f, f)
    return _lanczos(
        A,
        v,
        fn,
        name,
        where="t",
        tol=tol,
        max_iters=max_iters,
        reorth=reorth,
        backend="torch",
        differentiable=False,
    )


def test_auto_reorth_skips_the_basis_where_nothing_needs_it():
    """sqrt on a large space: the residual estimate needs no orthogonality, so "auto" never
    projects against the basis, with the same steps and error as full reorthogonalisation
    (which is 2-10x slower at 64 px)."""
    A, _ = _ssd_covariance(32, 0.999)
    v = torch.randn(4, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    exact = linops.sqrtm(A, v).value.reshape(4, -1)
    auto = _run(A, v, "sqrt", "auto", 1e-8, max_iters=300)
    full = _run(A, v, "sqrt", "full", 1e-8, max_iters=300)
    assert auto.reorth_steps == 0 and full.reorth_steps == full.num_iters
    assert abs(auto.num_iters - full.num_iters) <= 2
    for state in (auto, full):
        err = (state.value - exact).norm(dim=1) / exact.norm(dim=1)
        # tol 1e-8; the estimate bounds the error here (never below it)
        assert bool((err <= 1e-8).all()) and bool((state.error_estimate >= err).all())


def test_auto_reorth_switches_to_full_when_the_estimate_needs_it():
    """exp(-100 A) uses differences of iterates (an orthonormal basis): "auto" runs the plain
    recurrence until the estimated loss of orthogonality passes min(sqrt(eps), tol / 100),
    then reorthogonalises every step; same steps and error as "full" (partial
    reorthogonalisation at sqrt(eps) had left 2e-12 here, unseen by the estimate)."""
    A0, _ = _ssd_covariance(24, 0.999)
    v = torch.randn(2, 24, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    A = -100.0 * A0
    want = linops.expm(A, v).value.reshape(2, -1)
    for tol in [1e-6, 1e-11]:
        auto = _run(A, v, "exp", "auto", tol, max_iters=300)
        full = _run(A, v, "exp", "full", tol, max_iters=300)
        assert 0 < auto.reorth_steps < auto.num_iters
        assert abs(auto.num_iters - full.num_iters) <= 2
        for state in (auto, full):
            err = (state.value - want).norm(dim=1) / want.norm(dim=1)
            assert bool(state.converged.all()) and bool((err <= tol).all()), (tol, err)


def test_reorth_option_is_validated():
    A, _ = _ssd_covariance(16, 0.5)
    with pytest.raises(
        ValueError, match=r"expected reorth in \('auto', 'full', 'none'\), got 'some'"
    ):
        linops.sqrtm(A, torch.ones(16, 16), method="lanczos", reorth="some")


def test_estimate_at_the_critical_point_is_close_and_above():
    """0.999 of SSD's feasibility limit (condition number 1000), 32 px, 3 channels: at
    tol 2e-5 the estimate of every right-hand side is at least its true error and at most
    20x it (measured 7.4-10.9x; the residual bound alone is 50-63x there, see
    _RateTransfer), and the returned value is within tol."""
    R = linops.Resize((3, 32, 32), (16, 16))
    r_h, r_w = R.factors()
    lmax = (torch.linalg.matrix_norm(r_h, 2) * torch.linalg.matrix_norm(r_w, 2)).item() ** 2
    A = linops.Identity(R.in_shape) - (0.999 / lmax) * (R.H @ R)
    v = torch.randn(8, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = linops.sqrtm(A, v).value.reshape(8, -1)
    res = linops.sqrtm(A, v, method="lanczos", tol=2e-5)
    err = (res.value.reshape(8, -1) - exact).norm(dim=1) / exact.norm(dim=1)
    ratio = res.error_estimate / err
    assert res.converged and bool((err <= 2e-5).all())
    assert bool((ratio >= 1).all()) and bool((ratio <= 20).all()), ratio
