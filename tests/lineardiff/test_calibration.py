"""band_calibration: slopes of exact and mis-scaled posterior-mean denoisers (closed forms)."""

import pytest
import torch

import lineardiff
from lineardiff import DDPM, BandCalibration, ScaleSpaceDiffusion, band_calibration


def _wiener(p, gain=1.0):
    """The exact posterior mean for white unit-variance Gaussian data, times ``gain``."""
    def denoise(x, t, shape):
        tt = int(t[0])
        a, s = p.signal_scale(tt), p.sigma(tt)
        return gain * a / (a * a + s * s) * x
    return denoise


def test_exact_posterior_mean_has_slope_one_and_a_doubled_one_half():
    # x0 ~ N(0, I): E[x0 | x_t] = a / (a^2 + s^2) x_t is linear, so the regression slope of
    # the target on the prediction is 1 in every band, and 1/2 for twice the prediction -
    # exactly in expectation; 4 standard errors (about 2e-3 here) cover the sampling noise
    p = DDPM((1, 16, 16), T=50)
    x0 = torch.randn(2048, 1, 16, 16, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    for gain, want in ((1.0, 1.0), (2.0, 0.5)):
        cal = band_calibration(_wiener(p, gain), p, x0, [50, 30, 10], pool=0, generator=gen)
        assert isinstance(cal, BandCalibration) and cal.slopes.shape == (3, 6)
        # |k| <= 8 sqrt(2) on a 16 x 16 grid: the last band (|k| >= 12) is empty and gets 1
        assert cal.slopes[:, 5].tolist() == [1.0] * 3
        got, se = cal.slopes[:, :5], cal.standard_errors[:, :5]
        assert bool(((got - want).abs() <= 4 * se).all()), got
        assert float(se.max()) < 0.02  # the test has the power to tell 1 from 1/2


def test_wrapped_denoiser_recovers_the_posterior_mean():
    p = DDPM((1, 8, 8), T=20)
    gen = torch.Generator().manual_seed(1)
    cal = band_calibration(_wiener(p, 3.0), p, torch.randn(4096, 1, 8, 8, dtype=torch.float64),
                           [20, 5], generator=gen)
    fixed = cal.wrap(_wiener(p, 3.0))
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    for t in (20, 5):
        tb = torch.full((5,), t)
        want = _wiener(p)(x, tb, (1, 8, 8))
        # slopes within ~1 % of 1/3 (s.e. <= 3e-3): the rescaled prediction within 2 % of
        # the exact one in norm (a band filter: elementwise ratios mean nothing near zero)
        err = (fixed(x, tb, (1, 8, 8)) - want).norm() / want.norm()
        assert float(err) < 0.02, float(err)
    # clamped slopes: low=high=1 is the denoiser itself
    tb = torch.full((5,), 5)
    same = cal.wrap(_wiener(p, 3.0), low=1.0, high=1.0)(x, tb, (1, 8, 8))
    torch.testing.assert_close(same, _wiener(p, 3.0)(x, tb, (1, 8, 8)))
    with pytest.raises(ValueError, match=r"BandCalibration.wrap: expected high in \[1, inf\), got 0\.5"):
        cal.wrap(_wiener(p), low=1.0, high=0.5)
    # a state that was not fitted passes through unchanged
    tb = torch.full((5,), 12)
    torch.testing.assert_close(fixed(x, tb, (1, 8, 8)), _wiener(p, 3.0)(x, tb, (1, 8, 8)))


def test_pooling_joins_neighbours_of_one_shape_and_leaves_a_resolution_change_alone():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=40)
    change = p.resolution_changes()[0]

    def upsample(x, t, shape):  # a prediction with power in every band
        return torch.nn.functional.interpolate(x, size=shape[-2:], mode="nearest")

    steps = [change + 2, change + 1, change, change - 1, change - 2]
    x0 = torch.randn(64, 1, 8, 8, dtype=torch.float64)
    fits = [band_calibration(upsample, p, x0, steps, pool=k,
                             generator=torch.Generator().manual_seed(2)) for k in (0, 4)]
    i = steps.index(change)  # same draws in both fits: pooling is the only difference
    torch.testing.assert_close(fits[1].slopes[i], fits[0].slopes[i], rtol=0, atol=0)
    # its neighbours pool with each other (same shapes), so their slopes change
    assert not torch.equal(fits[1].slopes[i + 1], fits[0].slopes[i + 1])
    assert fits[1].factors(change + 1, 4).shape == (4, 4)
    assert fits[1].factors(change, 8).shape == (8, 8) and fits[1].factors(7, 8) is None


@pytest.mark.parametrize("call, error, message", [
    (lambda p, x: band_calibration(3, p, x, [1]), TypeError,
     r"band_calibration: expected denoiser as a callable, got int"),
    (lambda p, x: band_calibration(_wiener(p), "ddpm", x, [1]), TypeError,
     r"band_calibration: expected a diffusion process, got str"),
    (lambda p, x: band_calibration(_wiener(p), p, x[:, :, :4], [1]), ValueError,
     r"band_calibration: expected x0 of shape \(N, \*\(1, 8, 8\)\), got \(4, 1, 4, 8\)"),
    (lambda p, x: band_calibration(_wiener(p), p, x[:1], [1]), ValueError,
     r"band_calibration: expected at least 2 images in x0, got 1"),
    (lambda p, x: band_calibration(_wiener(p), p, x, [0]), ValueError,
     r"band_calibration: expected timesteps in \[1, 10\], got 0"),
    (lambda p, x: band_calibration(_wiener(p), p, x, [3, 3]), ValueError,
     r"band_calibration: expected distinct timesteps, at least one, got \[3, 3\]"),
    (lambda p, x: band_calibration(_wiener(p), p, x, 5), TypeError,
     r"band_calibration: expected timesteps as a sequence of ints, got 5"),
    (lambda p, x: band_calibration(_wiener(p), p, x, [2], edges=(2.0, 1.0)), ValueError,
     r"band_calibration: expected increasing positive finite edges, got \(2\.0, 1\.0\)"),
    (lambda p, x: band_calibration(lambda x, t, s: x[:, :, :2], p, x, [2]), ValueError,
     r"band_calibration: expected denoiser output of shape \(4, 1, 8, 8\) at t=2, got \(4, 1, 2, 8\)"),
])
def test_bad_input(call, error, message):
    p = DDPM((1, 8, 8), T=10)
    with pytest.raises(error, match=message):
        call(p, torch.randn(4, 1, 8, 8))


def test_exported():
    assert lineardiff.band_calibration is band_calibration
    assert "BandCalibration" in lineardiff.__all__
