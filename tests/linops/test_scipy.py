"""scipy.sparse.linalg solvers running on linops operators."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import linops


def test_eigsh_finds_top_eigenvalues_of_resize_normal_operator():
    R = linops.Resize((12, 12), (6, 6))
    A = linops.as_scipy(R.H @ R)
    vals = np.sort(spla.eigsh(A, k=3, which="LA", tol=1e-12)[0])
    want = np.sort(torch.linalg.eigvalsh((R.H @ R).to_dense()).numpy())[-3:]
    np.testing.assert_allclose(vals, want, rtol=1e-10)


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
