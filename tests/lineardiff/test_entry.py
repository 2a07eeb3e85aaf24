"""The calibrated entry (SKILD and SSD): the fit against the exact Wiener gains of Gaussian
data (SSD: the per-mode moments from dense covariance matrices), the entry's joint law with the
measurement against the true forward state, errors."""

import pytest
import torch

import linops
from lineardiff import (
    DDPM,
    SKILD,
    EntryCalibration,
    PowerSpectrumFit,
    ScaleSpaceDiffusion,
    calibrated_view,
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


def _moments(x, Y):
    """Per-mode covariance with the measurement's DCT ``Y`` and variance of ``x``'s DCT."""
    X = linops.dct2(x)
    return (X * Y).mean(0), (X * X).mean(0)


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

    (c_true, v_true), (c_cal, v_cal), (_, v_plain) = (
        _moments(x, Y) for x in (x_true, x_cal, x_plain)
    )
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
        r"super-resolves \(SKILD, or one on a resolution pyramid such as SSD\), got DDPM",
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
        match=r"ScaleSpaceDiffusion.super_resolution_entry: expected inputs of size \(4, 4\) on "
        r"a grid \(1, 8, 8\) .* got y of shape \(2, 1, 4, 4\)",
    ):  # a SKILD calibration (full grid) given to SSD
        upscale(lambda x, t, s: x, ssd, torch.zeros(2, 1, 4, 4), calibration=cal)
    with pytest.raises(
        ValueError,
        match=r"fit_entry_calibration: expected y at one of the process's coarser "
        r"resolutions \[4\], got \(10, 1, 2, 2\)",
    ):
        fit_entry_calibration(ssd, x0, x0[:, :, :2, :2])


# ----------------------------------------------------------------------------- SSD
SPEC = 1.0 / (1.0 + torch.arange(8.0)[:, None] ** 2 + torch.arange(8.0)[None, :] ** 2)


def _ssd_pairs(p, n, seed, scale=0.7):
    """Gaussian data with DCT spectrum SPEC on 8 x 8, and a measurement of its 4 x 4 view that
    is neither the view nor a per-mode function of it: ``scale * v`` plus white noise."""
    g = torch.Generator().manual_seed(seed)
    x0 = linops.idct2(torch.randn(n, 1, 8, 8, dtype=torch.float64, generator=g) * SPEC.sqrt())
    v = p.low_res(x0, 4)
    return x0, scale * v + SIGMA * torch.randn(v.shape, dtype=torch.float64, generator=g)


def _ssd_exact(p, scale=0.7):
    """The per-mode moments the fit estimates, from dense covariances: K = D^T diag(SPEC) D
    (D the 8 x 8 orthonormal DCT), the view B (dense, from the process's own resize applied to
    the identity), in the 4 x 4 DCT basis E: Kvv = E B K B^T E^T, Kvy = scale Kvv,
    Kyy = scale^2 Kvv + SIGMA^2 I."""
    eye = torch.eye(64, dtype=torch.float64).reshape(64, 1, 8, 8)
    D = linops.dct2(eye).reshape(64, 64).T  # column j: the DCT of the j-th pixel basis image
    K = D.T @ torch.diag(SPEC.flatten().to(torch.float64)) @ D
    B = p.low_res(eye, 4).reshape(64, 16).T
    E = linops.dct2(torch.eye(16, dtype=torch.float64).reshape(16, 1, 4, 4)).reshape(16, 16).T
    kvv = torch.diagonal(E @ B @ K @ B.T @ E.T)
    kvy, kyy = scale * kvv, scale**2 * kvv + SIGMA**2
    gain = kvy / kyy
    return gain.reshape(1, 4, 4), (kvv - gain * kvy).reshape(1, 4, 4), kvv.reshape(1, 4, 4)


def test_ssd_fit_recovers_the_per_mode_moments_of_dense_covariances():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)
    x0, y = _ssd_pairs(p, 40000, 3)
    cal = fit_entry_calibration(p, x0, y)
    gain, residual, kvv = _ssd_exact(p)
    kyy = 0.7**2 * kvv + SIGMA**2
    # the gain's standard error from n pairs is about sqrt(Kvv / Kyy / n) (the spread of
    # V - g Y over that of Y): 5 s.e., elementwise; the residual to 5% of the view's variance
    # (it is Kvv (1 - rho^2), a difference of moments each known to ~1%)
    assert cal.input_size == (4, 4) and cal.gain.shape == (1, 4, 4)
    se = (kvv / kyy / 40000).sqrt()
    assert bool(((cal.gain - gain).abs() <= 5 * se).all()), (cal.gain, gain, se)
    assert float(((cal.residual - residual).abs() / kvv).max()) < 0.05


def test_ssd_entry_has_the_joint_law_of_the_forward_state_with_the_measurement():
    # the calibrated entry drawn from the dense route's gains must match the true
    # x_start = q_sample(x_0, start) per mode of the entry grid: its variance and its
    # covariance with y; the plain entry a y + sigma eps (y taken for the view) does not
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)
    gain, residual, _ = _ssd_exact(p)
    cal = EntryCalibration(gain, residual, (4, 4), 0)
    x0, y = _ssd_pairs(p, 40000, 4)
    g = torch.Generator().manual_seed(5)
    start, x_cal = p.super_resolution_entry(y, generator=g, calibration=cal)
    _, x_plain = p.super_resolution_entry(y, generator=g)
    x_true = p.q_sample(x0, start, generator=g)
    assert x_true.shape == x_cal.shape == (40000, 1, 4, 4)
    Y = linops.dct2(y)

    (c_true, v_true), (c_cal, v_cal), (_, v_plain) = (
        _moments(x, Y) for x in (x_true, x_cal, x_plain)
    )
    # per-mode second moments of 40000 draws: ~1.4% s.e. of a variance; 7% is 5 s.e.
    torch.testing.assert_close(v_cal, v_true, rtol=0.07, atol=0.0)
    scale = (v_true * (Y * Y).mean(0)).sqrt()
    assert float(((c_cal - c_true).abs() / scale).max()) < 0.03
    assert float((v_plain / v_true - 1).abs().max()) > 0.15  # the test tells them apart


def test_ssd_upscale_uses_the_calibration():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)
    gain, residual, _ = _ssd_exact(p)
    cal = EntryCalibration(gain, residual, (4, 4), 0)
    y = torch.randn(3, 1, 4, 4)

    def mean(x, t, shape):  # a denoiser whose output depends on the state it is given
        return x.mean(dim=(1, 2, 3), keepdim=True).expand(x.shape[0], *shape)

    def run(**kw):
        return upscale(mean, p, y, generator=torch.Generator().manual_seed(0), **kw)

    a, b = run(), run(calibration=cal)
    assert a.shape == b.shape == (3, 1, 8, 8) and not torch.equal(a, b)
    # the view is drawn once (the generator's first draw) and stands for y everywhere: with
    # the consistency projection the output's view is exactly that draw, not y
    c = run(calibration=cal, consistency=True)
    view = calibrated_view(p, y, cal, torch.Generator().manual_seed(0))
    torch.testing.assert_close(p.low_res(c, 4), view, rtol=0, atol=1e-5)
    assert float((p.low_res(c, 4) - y).abs().max()) > 0.1
