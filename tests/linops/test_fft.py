"""FFT2: orthonormal, complex, adjoint equal to the inverse."""

import numpy as np
import pytest
import torch

import linops
from linops.testing import dottest


def test_against_numpy_and_inverse():
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    F = linops.FFT2((5, 6))
    y = F.apply(x)
    assert y.dtype == torch.complex128
    np.testing.assert_allclose(y.numpy(), np.fft.fft2(x.numpy(), norm="ortho"), atol=1e-13)
    back = F.apply_adjoint(y)
    np.testing.assert_allclose(back.real.numpy(), x.numpy(), atol=1e-13)
    np.testing.assert_allclose(back.imag.numpy(), 0, atol=1e-13)


def test_complex_dot_test_and_dense_is_unitary():
    F = linops.FFT2((3, 4))
    assert F.is_unitary and F.is_complex
    dottest(F, dtype=torch.float32)
    d = F.to_dense()
    torch.testing.assert_close(d.mH @ d, torch.eye(12, dtype=torch.complex128), rtol=0, atol=1e-14)


def test_fft_basis_diagonal_with_even_symbol_keeps_real_signals_real():
    n = 8
    k = torch.fft.fftfreq(n, dtype=torch.float64)
    symbol = torch.exp(-(k[:, None] ** 2 + k[None, :] ** 2))  # even in k: a real convolution
    op = linops.BasisDiagonal(linops.FFT2((n, n)), symbol)
    x = torch.randn(n, n, dtype=torch.float64)
    out = op.apply(x)
    np.testing.assert_allclose(out.imag.numpy(), 0, atol=1e-14)
    dottest(op)


def test_bad_shape():
    with pytest.raises(ValueError, match=r"FFT2: expected a shape with at least two axes"):
        linops.FFT2(7)
