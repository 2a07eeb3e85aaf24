"""Power iteration: spectral norm and largest eigenvalue against dense routes."""

import pytest
import torch

import linops


def test_spectral_norm_against_svd():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(7, 5, dtype=torch.float64, generator=g)
    res = linops.spectral_norm(linops.Dense(m), tol=1e-10)
    want = torch.linalg.matrix_norm(m, ord=2).item()
    assert res.converged
    assert abs(res.value - want) <= 1e-8 * want
    # the estimate is honest: the true error is below it (first-order bound, so allow 2x)
    assert abs(res.value - want) <= 2 * res.error_estimate + 1e-15


def test_lambda_max_of_resize_normal_operator():
    R = linops.Resize((16, 16), (8, 8))
    A = R.H @ R
    want = torch.linalg.eigvalsh(A.to_dense())[-1].item()
    res = linops.lambda_max(A, tol=1e-7, max_iters=5000)
    # for self-adjoint A an eigenvalue lies within error_estimate of the value
    assert abs(res.value - want) <= res.error_estimate + 1e-12
    assert res.value <= want + 1e-12  # a Rayleigh quotient never exceeds lambda_max


def test_non_convergence_is_reported_not_raised():
    R = linops.Resize((32, 32), (16, 16))
    res = linops.lambda_max(R.H @ R, tol=1e-12, max_iters=20)
    assert not res.converged and res.num_iters == 20 and res.error_estimate > 0


def test_errors():
    with pytest.raises(ValueError, match=r"lambda_max: expected a square operator"):
        linops.lambda_max(linops.Resize((4, 4), (2, 2)))
    with pytest.raises(ValueError, match=r"spectral_norm: expected tol > 0, got 0"):
        linops.spectral_norm(linops.Identity((2,)), tol=0)
    with pytest.raises(ValueError, match=r"expected max_iters >= 1, got 0"):
        linops.spectral_norm(linops.Identity((2,)), max_iters=0)
    with pytest.raises(TypeError, match=r"spectral_norm: expected a LinearOperator, got Tensor"):
        linops.spectral_norm(torch.eye(2))


def test_spectral_bounds_against_eigvalsh():
    R = linops.Resize((20, 20), (10, 10), mode="bicubic")
    A = linops.Identity((20, 20)) - 0.9 / 0.2512 * (R.H @ R) * 0.25
    eig = torch.linalg.eigvalsh(A.to_dense())
    b = linops.spectral_bounds(A, tol=1e-10)
    assert b.converged
    # interlacing: Ritz values lie inside the spectrum; the error bars reach the ends
    assert eig[0] - 1e-12 <= b.lower <= eig[0] + b.lower_error + 1e-12
    assert eig[-1] - b.upper_error - 1e-12 <= b.upper <= eig[-1] + 1e-12
    assert abs(b.lower - eig[0].item()) < 1e-8 and abs(b.upper - eig[-1].item()) < 1e-8


def test_spectral_bounds_beats_power_iteration_on_clustered_top():
    R = linops.Resize((32, 32), (16, 16))
    b = linops.spectral_bounds(R.H @ R, tol=1e-8)
    p = linops.lambda_max(R.H @ R, tol=1e-8, max_iters=b.num_iters)
    assert b.converged and not p.converged


def test_spectral_bounds_errors():
    with pytest.raises(ValueError, match=r"spectral_bounds: expected a square operator"):
        linops.spectral_bounds(linops.Resize((4, 4), (2, 2)))
    with pytest.raises(ValueError, match=r"spectral_bounds: expected a real operator"):
        linops.spectral_bounds(linops.FFT2((2, 2)))
