"""DCT2 and the 1-D transforms against scipy.fft."""

import numpy as np
import pytest
import scipy.fft
import torch
from hypothesis import given
from hypothesis import strategies as st

import linops


@given(n=st.integers(1, 40), batch=st.integers(1, 3))
def test_dct_1d_against_scipy(n, batch):
    x = torch.randn(batch, n, dtype=torch.float64)
    want = scipy.fft.dct(x.numpy(), norm="ortho", axis=-1)
    # an FFT of length n: rounding grows like log(n) eps
    np.testing.assert_allclose(linops.dct(x).numpy(), want, rtol=0, atol=1e-13)
    np.testing.assert_allclose(
        linops.idct(x).numpy(), scipy.fft.idct(x.numpy(), norm="ortho"), rtol=0, atol=1e-13
    )


@given(h=st.integers(1, 17), w=st.integers(1, 17), c=st.integers(1, 2))
def test_dct2_against_scipy(h, w, c):
    x = torch.randn(2, c, h, w, dtype=torch.float64)
    D = linops.DCT2((c, h, w))
    want = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho")
    np.testing.assert_allclose(D.apply(x).numpy(), want, rtol=0, atol=1e-13)
    np.testing.assert_allclose(D.apply_adjoint(D.apply(x)).numpy(), x.numpy(), rtol=0, atol=1e-13)


def test_float32():
    x = torch.randn(3, 16, 15)
    want = scipy.fft.dctn(x.double().numpy(), axes=(-2, -1), norm="ortho")
    out = linops.dct2(x)
    assert out.dtype == torch.float32
    # float32 FFTs of length <= 16: a few eps times the norm of a row
    np.testing.assert_allclose(out.numpy(), want, rtol=0, atol=2e-6)


def test_dct_along_other_axis():
    x = torch.randn(5, 6, 7, dtype=torch.float64)
    np.testing.assert_allclose(
        linops.dct(x, dim=0).numpy(), scipy.fft.dct(x.numpy(), axis=0, norm="ortho"), atol=1e-13
    )


def test_unitary_flag_and_bad_shape():
    assert linops.DCT2((4, 4)).is_unitary
    with pytest.raises(
        ValueError, match=r"DCT2: expected a shape with at least two axes, got \(4,\)"
    ):
        linops.DCT2((4,))
