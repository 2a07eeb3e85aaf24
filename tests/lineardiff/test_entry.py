"""The calibrated SKILD entry: the fit against the exact Wiener gains of Gaussian data, the
entry's joint law with the measurement against the true ``q(x_n0 | x_0)``, errors."""

import pytest
import torch

import linops
from lineardiff import (
    DDPM,
    SKILD,
    EntryCalibration,
    PowerSpectrumFit,
    ScaleSpaceDiffusion,
    fit_entry_calibration,
    skild_upscale,
    upscale,
)

FIT = PowerSpectrumFit(C=2.0, k0=3.0, alpha=1.5)
SIGMA = 0.5  # pixel noise of the 4 x 4 measurement


def _pairs(p, n, seed):
    """Gaussian data with per-mode variance S_0 (the process's spectrum), and its 4 x 4
    low-pass view plus white noise: a linear measurement with an exact Wiener posterior."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 8, 8, dtype=torch.float64, generator=g) * p.spectrum.sqrt()
    x0 = linops.idct2(X)
    y = p.low_res(x0, 4) + SIGMA * torch.randn(n, 1, 4, 4, dtype=torch.float64, generator=g)
    return x0, y


def _exact(p):
    """The Wiener gain and residual per mode of the 8 x 8 DCT: embed scales the 4 x 4 DCT
    by 2, so a measured mode reads X_k + 2 SIGMA xi."""
    P = p.spectrum.to(torch.float64)
    noise = torch.zeros(8, 8, dtype=torch.float64)
    noise[:4, :4] = 4 * SIGMA**2
    seen = torch.zeros(8, 8, dtype=torch.bool)
    seen[:4, :4] = True
    gain = torch.where(seen, P / (P + noise), 0.0)
    residual = torch.where(seen, P * noise / (P + noise), P)
    return gain[None], residual[None]


def test_fit_recovers_the_wiener_gains_of_gaussian_data():
    p = SKILD((1, 8, 8), FIT)
    x0, y = _pairs(p, 40000, 0)
    cal = fit_entry_calibration(p, x0, y)
    gain, residual = _exact(p)
    # 40000 pairs: moment ratios carry ~2 / sqrt(40000) = 1% relative error; 6% is > 5 s.e.
    assert cal.input_size == (4, 4) and cal.n == 40000
    torch.testing.assert_close(cal.gain, gain, rtol=0.06, atol=0.01)
    torch.testing.assert_close(cal.residual, residual, rtol=0.06, atol=0.0)


def test_entry_has_the_joint_law_of_the_forward_process_with_the_measurement():
    # exact for Gaussian data: the calibrated entry X given y must have the same covariance
    # with Y and the same variance, per mode, as the true x_n0 = q_sample(x_0, n0); the plain
    # entry (noise-free low modes) has the wrong variance on the measured modes
    p = SKILD((1, 8, 8), FIT)
    gain, residual = _exact(p)
    cal = EntryCalibration(gain, residual, (4, 4), 0)
    x0, y = _pairs(p, 40000, 1)
    g = torch.Generator().manual_seed(2)
    start, x_cal = p.super_resolution_entry(y, generator=g, calibration=cal)
    _, x_plain = p.super_resolution_entry(y, generator=g)
    x_true = p.q_sample(x0, start, generator=g)
    Y = linops.dct2(p.embed(y))

    def moments(x):
        X = linops.dct2(x)
        return (X * Y).mean(0), (X * X).mean(0)

    (c_true, v_true), (c_cal, v_cal), (_, v_plain) = map(moments, (x_true, x_cal, x_plain))
    # per-mode second moments from 40000 draws: ~1.4% s.e. of a variance; 7% is 5 s.e.
    torch.testing.assert_close(v_cal, v_true, rtol=0.07, atol=0.0)
    scale = (v_true * (Y * Y).mean(0)).sqrt()  # covariances relative to their natural size
    assert float(((c_cal - c_true).abs() / scale).max()) < 0.03
    assert float((v_plain / v_true).max()) > 1.3  # the test tells the two entries apart


def test_skild_upscale_uses_the_calibration():
    p = SKILD((1, 8, 8), FIT, T=50)
    gain, residual = _exact(p)
    cal = EntryCalibration(gain, residual, (4, 4), 0)
    y = torch.randn(3, 1, 4, 4)

    def zero(x, t, shape):
        return torch.zeros_like(x)

    def run(**kw):
        return skild_upscale(zero, p, y, generator=torch.Generator().manual_seed(0), **kw)

    a, b = run(), run(calibration=cal)
    assert a.shape == b.shape == (3, 1, 8, 8) and not torch.equal(a, b)
    c = upscale(
        zero, p, y, generator=torch.Generator().manual_seed(0), prediction="eps", calibration=cal
    )
    assert c.shape == (3, 1, 8, 8)


def test_errors_name_the_argument():
    p = SKILD((1, 8, 8), FIT)
    x0, y = _pairs(p, 10, 0)
    with pytest.raises(
        TypeError,
        match=r"fit_entry_calibration: expected a process that "
        r"super-resolves from any size \(SKILD\), got DDPM",
    ):
        fit_entry_calibration(DDPM((1, 8, 8), T=10), x0, y)
    with pytest.raises(
        ValueError, match=r"expected x0 of shape \(N, 1, 8, 8\), got \(10, 1, 4, 4\)"
    ):
        fit_entry_calibration(p, y, y)
    with pytest.raises(ValueError, match=r"expected y of shape \(10, 1, h, w\) with h <= 8"):
        fit_entry_calibration(p, x0, y[:5])
    with pytest.raises(ValueError, match=r"expected y as a tensor \(N, C, H, W\), got \(4, 4\)"):
        fit_entry_calibration(p, x0, torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"expected at least 2 pairs, got 1"):
        fit_entry_calibration(p, x0[:1], y[:1])
    cal = fit_entry_calibration(p, x0, y)
    with pytest.raises(
        ValueError,
        match=r"expected inputs of size \(4, 4\) on a grid "
        r"\(1, 8, 8\) .* got y of shape \(2, 1, 2, 2\)",
    ):
        p.super_resolution_entry(torch.zeros(2, 1, 2, 2), calibration=cal)
    with pytest.raises(TypeError, match=r"expected calibration as an EntryCalibration"):
        p.super_resolution_entry(y, calibration={"gain": 1})
    ssd = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)
    with pytest.raises(
        ValueError,
        match=r"upscale: expected calibration=None for a process on "
        r"a resolution pyramid",
    ):
        upscale(lambda x, t, s: x, ssd, torch.zeros(2, 1, 4, 4), calibration=cal)
