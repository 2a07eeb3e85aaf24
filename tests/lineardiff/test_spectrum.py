"""Per-mode DCT power and the offset power-law fit, against scipy and synthetic fields."""

import dataclasses
import math

import numpy as np
import pytest
import scipy.fft
import torch

import linops
from lineardiff._spectrum import (
    PowerSpectrumFit,
    dct_mode_variance,
    fit_power_spectrum,
    power_law_spectrum,
)


def _fields(n, shape, C, k0, alpha, seed, channels=None):
    """Gaussian fields whose orthonormal-DCT coefficients have variance S(k) = C(|k|^2+k0^2)^-a.

    Built in numpy with scipy's orthonormal inverse DCT (not linops), so the fit's own DCT is
    checked against an independent transform.
    """
    H, W = shape
    u, v = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    S = C * ((np.pi * u) ** 2 + (np.pi * v) ** 2 + k0**2) ** (-alpha)
    rng = np.random.default_rng(seed)
    size = (n, H, W) if channels is None else (n, channels, H, W)
    coeffs = np.sqrt(S) * rng.standard_normal(size)
    return torch.from_numpy(scipy.fft.idctn(coeffs, axes=(-2, -1), norm="ortho"))


def test_power_law_spectrum_closed_form():
    S = power_law_spectrum((5, 7), 2.5, 1.5, 1.25)
    assert S.shape == (5, 7) and S.dtype == torch.float64
    u, v = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
    want = 2.5 * ((np.pi * u) ** 2 + (np.pi * v) ** 2 + 1.5**2) ** (-1.25)
    np.testing.assert_allclose(S.numpy(), want, rtol=1e-13)


@pytest.mark.parametrize("channels", [None, 3])
def test_dct_mode_variance_matches_scipy(channels):
    rng = np.random.default_rng(1)
    size = (6, 5, 7) if channels is None else (6, channels, 5, 7)
    x = rng.standard_normal(size) + 0.3  # non-zero mean: the DC mode keeps it (not centred)
    coeffs = scipy.fft.dctn(x, axes=(-2, -1), norm="ortho")
    axes = (0,) if channels is None else (0, 1)
    want = (coeffs**2).mean(axis=axes)
    np.testing.assert_allclose(dct_mode_variance(torch.from_numpy(x)).numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(dct_mode_variance(x).numpy(), want, rtol=1e-12)  # ndarray input
    # Parseval: the modes sum to the mean squared norm per channel image
    np.testing.assert_allclose(want.sum(), (x**2).sum(axis=(-2, -1)).mean(), rtol=1e-12)


def test_dct_mode_variance_float32_and_chunks():
    # 1030 samples cross the 1024-sample chunk boundary; float32 input is promoted to float64
    x = torch.randn(1030, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    got = dct_mode_variance(x)
    assert got.dtype == torch.float64 and got.shape == (4, 4)
    want = (linops.dct2(x.double()) ** 2).mean(dim=(0, 1))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("alpha", [1.0, 1.75, 2.5])
@pytest.mark.parametrize("k0", [1.0, 3.0])
def test_fit_recovers_power_law(alpha, k0):
    # The bar: alpha within 2% on fields drawn with a known law. N = 2000 fields of
    # 32 x 32 give each mode's log power a noise of sqrt(2 / N) = 0.032; over 1023 modes the
    # fit's alpha has a standard error of ~0.1% (measured over 20 seeds), so 2% is ~20 SE.
    C = 0.7
    x = _fields(2000, (32, 32), C, k0, alpha, seed=int(10 * alpha + k0))
    fit = fit_power_spectrum(x)
    assert abs(fit.alpha - alpha) <= 0.02 * alpha
    # k0 is weakly determined (the smallest nonzero |k| is pi): its spread over 20 seeds is
    # 0.11 at k0 = 1, alpha = 1 and below that elsewhere; 0.5 is ~5 of those. C: spread 0.9%.
    assert abs(fit.k0 - k0) <= 0.5
    assert abs(math.log(fit.C / C)) <= 0.05
    # residuals of a correct law are the per-mode sampling noise, sqrt(2 / N); 10% covers the
    # spread of an rms over 1023 modes and the chi-square skew
    assert fit.rms_log_residual == pytest.approx(math.sqrt(2 / 2000), rel=0.1)


def test_fit_averages_channels_and_can_use_dc():
    # 3 channels of 400 fields = 1200 samples per mode; DC follows the law too, so keeping it
    # must not bias the fit (tolerances as above, scaled by sqrt(2000 / 1200) ~ 1.3)
    x = _fields(400, (16, 16), 2.0, 2.0, 1.5, seed=7, channels=3)
    for exclude_dc in (True, False):
        fit = fit_power_spectrum(x, exclude_dc=exclude_dc)
        assert abs(fit.alpha - 1.5) <= 0.02 * 1.5
        assert abs(fit.k0 - 2.0) <= 0.5


def test_fit_ignores_a_mean_offset_through_dc():
    # a constant offset only moves the DC mode, which the default fit leaves out; the other
    # modes change by the DCT's rounding only (~1e-16 of the offset's DC), hence rel=1e-6
    x = _fields(1000, (16, 16), 1.0, 3.0, 2.0, seed=3)
    fa, fb = fit_power_spectrum(x), fit_power_spectrum(x + 5.0)
    a = (fa.C, fa.k0, fa.alpha, fa.rms_log_residual)
    b = (fb.C, fb.k0, fb.alpha, fb.rms_log_residual)
    assert b == pytest.approx(a, rel=1e-6)
    # the kept DC power is the data's own: E[(mean + 5)^2] = E[mean^2] + 10 E[mean] + 25
    assert fb.mean_square == pytest.approx(fa.mean_square + 10 * float(x.mean()) + 25, rel=1e-9)


def test_fit_result_is_frozen_and_evaluates():
    fit = PowerSpectrumFit(C=2.0, k0=1.0, alpha=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.alpha = 1.0
    torch.testing.assert_close(fit.spectrum((3, 4)), power_law_spectrum((3, 4), 2.0, 1.0, 0.5))
    with pytest.raises(ValueError, match=r"PowerSpectrumFit.spectrum: expected mean_square in \(0, inf\), got -1.0"):
        PowerSpectrumFit(2.0, 1.0, 0.5, mean_square=-1.0).spectrum((3, 4))


ERRORS = [
    (
        lambda: power_law_spectrum((4,), 1.0, 1.0, 1.0),
        ValueError,
        r"power_law_spectrum: expected shape as \(H, W\), got \(4,\)",
    ),
    (
        lambda: power_law_spectrum((4, 4), 0.0, 1.0, 1.0),
        ValueError,
        r"power_law_spectrum: expected C in \(0, inf\), got 0\.0",
    ),
    (
        lambda: power_law_spectrum((4, 4), 1.0, -1.0, 1.0),
        ValueError,
        r"power_law_spectrum: expected k0 in \[0, inf\), got -1\.0",
    ),
    (
        lambda: power_law_spectrum((4, 4), 1.0, 1.0, math.nan),
        ValueError,
        r"power_law_spectrum: expected alpha in \(-inf, inf\), got nan",
    ),
    (
        lambda: dct_mode_variance([[1.0]]),
        TypeError,
        r"dct_mode_variance: expected data as a Tensor or ndarray, got list",
    ),
    (
        lambda: dct_mode_variance(torch.zeros(4, 4)),
        ValueError,
        r"dct_mode_variance: expected data of shape \(N, H, W\) or \(N, C, H, W\) with N >= 1, got \(4, 4\)",
    ),
    (
        lambda: dct_mode_variance(torch.zeros(0, 4, 4)),
        ValueError,
        r"dct_mode_variance: expected data of shape .* got \(0, 4, 4\)",
    ),
    (
        lambda: dct_mode_variance(torch.zeros(2, 4, 4, dtype=torch.complex64)),
        TypeError,
        r"dct_mode_variance: expected real data, got dtype torch\.complex64",
    ),
    (
        lambda: fit_power_spectrum(torch.randn(5, 1, 2)),
        ValueError,
        r"fit_power_spectrum: expected at least 3 modes to fit 3 parameters, got 1 from images of shape \(1, 2\)",
    ),
    (
        lambda: fit_power_spectrum(torch.ones(5, 4, 4)),
        ValueError,
        r"fit_power_spectrum: expected positive finite power in every fitted mode, got a minimum of 0\.0",
    ),
    (
        lambda: fit_power_spectrum(torch.randn(5, 4, 4), exclude_dc=1),
        TypeError,
        r"fit_power_spectrum: expected exclude_dc as a bool, got 1",
    ),
]


@pytest.mark.parametrize(
    "call, exc, match",
    ERRORS,
    ids=[m.split(":")[0] + f"-{i}" for i, (_, _, m) in enumerate(ERRORS)],
)
def test_argument_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_the_dc_mode_keeps_the_datas_own_power():
    """The law is fitted without the DC mode; the fit keeps the measured DC power instead."""
    from lineardiff.data import wolff_configurations

    x = torch.from_numpy(wolff_configurations(16, 2000, seed=11)).float()
    fit = fit_power_spectrum(x)
    power = dct_mode_variance(x)
    S = fit.spectrum((16, 16))
    # the DC entry is the data's power (float64 rounding of one division and product)
    assert abs(S[0, 0].item() - power[0, 0].item()) <= 1e-12 * power[0, 0].item()
    # independent route: the DC coefficient is 16 * mean(x), so its power is 256 E[mean^2]
    want = 256 * float((x.double().mean(dim=(1, 2)) ** 2).mean())
    assert abs(S[0, 0].item() - want) <= 1e-9 * want
    # every other mode follows the law
    law = power_law_spectrum((16, 16), fit.C, fit.k0, fit.alpha)
    torch.testing.assert_close(S.flatten()[1:], law.flatten()[1:], rtol=0, atol=0)
    # and the law alone would starve the magnetisation mode (critical Ising: ~10-20x less)
    assert law[0, 0] < power[0, 0] / 5
    assert PowerSpectrumFit(fit.C, fit.k0, fit.alpha).spectrum((16, 16))[0, 0] == law[0, 0]
    assert fit_power_spectrum(x, exclude_dc=False).mean_square is None
