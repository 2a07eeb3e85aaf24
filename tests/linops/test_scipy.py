"""scipy.sparse.linalg solvers running on linops operators."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import linops


def test_eigsh_finds_top_eigenvalues_of_resize_normal_operator():
    # R^T R of a 2-D resize is a Kronecker product, so its eigenvalues repeat (0.2396 twice),
    # and a Lanczos method may return one copy of a repeated value and the next one down (CI
    # saw it once with ARPACK's random start). So: every value found is an eigenvalue of the
    # dense matrix to 1e-10, the largest is the top one, and the start vector is fixed.
    R = linops.Resize((12, 12), (6, 6))
    A = linops.as_scipy(R.H @ R)
    v0 = np.random.default_rng(0).standard_normal(144)
    vals = np.sort(spla.eigsh(A, k=3, which="LA", tol=1e-12, v0=v0)[0])
    dense = torch.linalg.eigvalsh((R.H @ R).to_dense()).numpy()
    nearest = np.abs(vals[:, None] - dense[None, :]).min(axis=1)
    assert (nearest <= 1e-10 * dense.max()).all(), nearest
    np.testing.assert_allclose(vals[-1], dense.max(), rtol=1e-10)
    assert len(np.unique(np.round(vals, 8))) >= 2  # not one value three times


def test_lsqr_inverts_a_blur():
    B = linops.GaussianBlur((10, 10), 0.7, boundary="circular")
    x = np.random.default_rng(0).standard_normal(100)
    b = B.apply(torch.from_numpy(x).reshape(10, 10)).reshape(-1).numpy()
    sol = spla.lsqr(linops.as_scipy(B), b, atol=1e-14, btol=1e-14, iter_lim=500)[0]
    np.testing.assert_allclose(sol, x, atol=1e-6)


def test_matmat_rmatvec_and_complex():
    M = torch.randn(4, 6, dtype=torch.float64)
    A = linops.as_scipy(linops.Dense(M, in_shape=(2, 3), out_shape=(4,)))
    V = np.random.default_rng(1).standard_normal((6, 3))
    np.testing.assert_allclose(A.matmat(V), M.numpy() @ V)
    np.testing.assert_allclose(A.rmatvec(np.ones(4)), M.numpy().T @ np.ones(4))
    F = linops.as_scipy(linops.FFT2((2, 2)))
    assert np.iscomplexobj(F.matvec(np.ones(4)))


def test_rejects_non_operator():
    with pytest.raises(TypeError, match=r"as_scipy: expected a LinearOperator, got ndarray"):
        linops.as_scipy(np.eye(2))
