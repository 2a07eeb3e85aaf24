"""The denoiser error per state and the reverse variance it gives (lineardiff/_signal_mse.py)."""

import pytest
import torch

import lineardiff
from lineardiff import DDPM, ScaleSpaceDiffusion, SignalMSE, measure_signal_mse

V = 0.5  # variance of the white Gaussian data: its posterior mean and variance are closed forms


def _wiener(p):
    """The exact posterior-mean denoiser of N(0, V I) data under a DDPM."""

    def denoise(x, t, shape):
        a, s = p.signal_scale(int(t[0])), p.sigma(int(t[0]))
        return (a * V / (a * a * V + s * s)) * x

    return denoise


def _posterior_variance(p, t):
    a, s = p.signal_scale(t), p.sigma(t)
    return V * s * s / (a * a * V + s * s)


def test_measured_error_of_the_exact_denoiser_is_the_posterior_variance():
    p = DDPM((1, 8, 8), T=100)
    x0 = torch.randn(2000, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * V**0.5
    m = measure_signal_mse(_wiener(p), p, x0, [100, 60, 30, 10], clip=None, progress=False,
                           generator=torch.Generator().manual_seed(1))
    assert m.timesteps == (10, 30, 60, 100) and m.n == 2000
    for i, t in enumerate(m.timesteps):
        # the Monte-Carlo error of a mean over 2000 images: 4 of its standard errors
        assert abs(float(m.mse[i]) - _posterior_variance(p, t)) < 4 * float(m.standard_errors[i])
    # clipping is measured as the sampler applies it: a clip of 1e-9 predicts ~0, so the
    # error is E[x0^2] (to ~1e-9 relative)
    zero = measure_signal_mse(_wiener(p), p, x0, [50], clip=1e-9, progress=False)
    assert float(zero.mse[0]) == pytest.approx(float(x0.double().square().mean()), rel=1e-7)


def test_an_eps_model_is_measured_through_its_signal():
    p = DDPM((1, 4, 4), T=50)
    x0 = torch.randn(32, 1, 4, 4).clamp(-1, 1)
    gen = torch.Generator().manual_seed(3)
    xt = p.q_sample(x0, 20, generator=torch.Generator().manual_seed(3))
    true_eps = (xt - p.signal_scale(20) * x0) / p.sigma(20)
    oracle = lambda x, t, shape: true_eps[: x.shape[0]]  # noqa: E731 - the noise that was drawn
    m = measure_signal_mse(oracle, p, x0, [20], prediction="eps", clip=None, generator=gen,
                           progress=False, batch_size=64)
    assert float(m.mse[0]) < 1e-10  # the true noise gives back x0 exactly


def test_the_reverse_variance_makes_large_steps_exact_for_gaussian_data():
    # With the exact denoiser and its exact error, p(x_s | x_t) is the Gaussian the step
    # draws: every visited state has q's marginal variance a_s^2 V + sigma_s^2, whatever the
    # step size. Without the error term the walk is too narrow (by 23-46 % here).
    p = DDPM((1, 8, 8), T=100)
    steps = [100, 60, 30, 10]
    for table, low, high in (((lambda t: _posterior_variance(p, t)), 0.985, 1.015),
                             (None, 0.0, 0.8)):
        gen = torch.Generator().manual_seed(0)
        total = p.signal_scale(100) ** 2 * V + p.sigma(100) ** 2
        x_T = torch.randn(4000, 1, 8, 8, generator=gen) * total**0.5  # q's marginal at T
        seen = {}
        lineardiff.ancestral_sample(
            _wiener(p), p, 4000, timesteps=steps, x_T=x_T, signal_mse=table, generator=gen,
            callback=lambda t, s, x, z, seen=seen: seen.__setitem__(s, float(x.var())),
            progress=False)
        for s in (60, 30, 10):
            ratio = seen[s] / (p.signal_scale(s) ** 2 * V + p.sigma(s) ** 2)
            # 256,000 values: the variance's relative standard error is 0.3 %; 1.5 % is 5 of it
            assert low < ratio < high, (s, ratio, table)


def _coloured_setup():
    """Stationary Gaussian data on a periodic 8 x 8 grid, power 2 / (1 + |k|^2) per mode, and
    its exact (per-mode Wiener) posterior-mean denoiser under a DDPM."""
    from lineardiff._signal_mse import _radial_bins

    p = DDPM((1, 8, 8), T=100)
    k = torch.fft.fftfreq(8, dtype=torch.float64) * 8
    power = 2.0 / (1 + k[:, None] ** 2 + k[None, :] ** 2)

    def colour(xi, gain):
        return torch.fft.ifft2(torch.fft.fft2(xi.double()) * gain).real.float()

    def denoise(x, t, shape):
        a, s = p.signal_scale(int(t[0])), p.sigma(int(t[0]))
        return colour(x, a * power / (a * a * power + s * s))

    def posterior_power(t):
        a, s = p.signal_scale(t), p.sigma(t)
        return power * s * s / (a * a * power + s * s)

    return p, power, colour, denoise, posterior_power, _radial_bins((8, 8))


def test_the_measured_error_spectrum_is_the_posterior_power_per_wavenumber():
    p, power, colour, denoise, posterior_power, bins = _coloured_setup()
    x0 = colour(torch.randn(4000, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                power.sqrt())
    m = measure_signal_mse(denoise, p, x0, [60, 20], clip=None, progress=False,
                           generator=torch.Generator().manual_seed(1))
    for t in (60, 20):
        got = m.spectrum(t, (8, 8))
        for j in range(int(bins.max()) + 1):
            want = posterior_power(t)[bins == j].mean()
            # bin 0 is one real mode: its mean of 4000 chi^2_1 draws has 2.2 % relative s.e.;
            # 10 % is over 4 of it (the other bins average more modes)
            assert abs(float(got[bins == j][0] / want) - 1) < 0.1, (t, j)
        assert float(got.mean()) == pytest.approx(m(t), rel=0.05)  # the error, up to binning
    with pytest.raises(ValueError, match=r"SignalMSE.spectrum: expected a grid of shape "
                       r"\[8, 8\] at t=60 \(what was measured there\), got \[4, 4\]"):
        m.spectrum(60, (4, 4))


def test_the_error_spectrum_makes_large_steps_exact_mode_by_mode():
    # Coloured data: the exact error per Fourier mode gives every mode q's marginal power at
    # every visited state; the isotropic error (its mean) leaves the large scales too narrow
    # (18-22 % here) and the small ones too wide - the signature of a too-ordered sample.
    p, power, colour, denoise, posterior_power, _ = _coloured_setup()

    class Exact:
        def __call__(self, t):
            return float(posterior_power(t).mean())

        def spectrum(self, t, shape):
            return posterior_power(t)

    steps = [100, 60, 30, 10]
    for table in (Exact(), lambda t: float(posterior_power(t).mean())):
        gen = torch.Generator().manual_seed(0)
        x_T = colour(torch.randn(8000, 1, 8, 8, generator=gen),
                     (p.signal_scale(100) ** 2 * power + p.sigma(100) ** 2).sqrt())
        seen = {}

        def keep(t, s, x, z, seen=seen):
            seen[s] = torch.fft.fft2(x.double()).abs().square().mean((0, 1)) / 64

        lineardiff.ancestral_sample(denoise, p, 8000, timesteps=steps, x_T=x_T,
                                    signal_mse=table, generator=gen, callback=keep,
                                    progress=False)
        for s in (60, 30, 10):
            ratio = seen[s] / (p.signal_scale(s) ** 2 * power + p.sigma(s) ** 2)
            if isinstance(table, Exact):
                # one mode's power from 8000 draws: 1.1-1.6 % relative s.e.; 8 % is 5 of it
                assert float((ratio - 1).abs().max()) < 0.08, (s, ratio)
            else:
                assert float(ratio[0, 0]) < 0.88 and float(ratio[4, 4]) > 1.1, (s, ratio)


def test_interpolation_stays_within_a_resolution_step():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=40)
    first = next(t for t in range(1, p.T + 1) if p.shape_at(t) != p.shape_at(t - 1))
    steps = sorted({2, first - 4, first, first + 3, 40})
    values = torch.arange(1.0, len(steps) + 1, dtype=torch.float64)
    m = SignalMSE(p, steps, values, torch.zeros_like(values), 10, 1.0)
    i = steps.index(first)
    # the resolution change is a segment of its own: its neighbours never mix with it
    assert m(first) == values[i]
    assert m(first - 1) == values[i - 1] and m(first + 1) == values[i + 1]
    mid = (first + 3 + 40) // 2
    w = (mid - first - 3) / (40 - first - 3)
    assert m(mid) == pytest.approx(float((1 - w) * values[i + 1] + w * values[i + 2]), rel=1e-12)
    assert m(1) == values[0]  # below the measured range: the nearest measured state
    lone = SignalMSE(p, [10], [0.1], [0.0], 10, None)
    with pytest.raises(ValueError, match=rf"SignalMSE: expected a state measured at the "
                       rf"resolution step of t={first}"):
        lone(first)
    with pytest.raises(ValueError, match=r"SignalMSE: expected t in \[1, 40\], got 0"):
        m(0)


def test_the_record_round_trips_and_bad_records_are_refused():
    p = DDPM((1, 4, 4), T=30)
    m = SignalMSE(p, [5, 20], [0.1, 0.4], [0.01, 0.02], 64, 1.0)
    back = SignalMSE.from_dict(p, m.to_dict())
    assert back.timesteps == m.timesteps and torch.equal(back.mse, m.mse)
    assert back(10) == pytest.approx(0.2) and back.n == 64 and back.clip == 1.0
    with pytest.raises(ValueError, match=r"SignalMSE.from_dict: expected a record with the "
                       r"fields \['timesteps', 'mse'"):
        SignalMSE.from_dict(p, {"mse": [1.0]})
    bad = {**m.to_dict(), "mse": [0.1]}
    with pytest.raises(ValueError, match=r"expected timesteps, mse and standard_errors of one "
                       r"length >= 1, got 2, 1 and 2"):
        SignalMSE.from_dict(p, bad)
    with pytest.raises(ValueError, match=r"expected increasing timesteps, got \[20, 5\]"):
        SignalMSE.from_dict(p, {**m.to_dict(), "timesteps": [20, 5]})
    with pytest.raises(ValueError, match=r"expected finite mse values >= 0, got \[0.1, -1.0\]"):
        SignalMSE.from_dict(p, {**m.to_dict(), "mse": [0.1, -1.0]})
    assert m.spectrum(10, (4, 4)) is None  # none measured: the sampler draws white noise
    spectra = [{"shape": [4, 4], "power": [0.3, 0.1, 0.05, 0.01]}] * 2
    coloured = SignalMSE.from_dict(p, {**m.to_dict(), "spectra": spectra})
    assert torch.equal(SignalMSE.from_dict(p, coloured.to_dict()).spectrum(10, (4, 4)),
                       coloured.spectrum(10, (4, 4)))
    assert float(coloured.spectrum(12, (4, 4))[0, 0]) == pytest.approx(0.3)
    for bad in ([{"shape": [4, 4], "power": [-1.0]}] * 2, spectra[:1]):
        with pytest.raises(ValueError, match=r"expected spectra as one \{'shape': \[H, W\], "
                           r"'power': \[finite values >= 0\]\} per state"):
            SignalMSE.from_dict(p, {**m.to_dict(), "spectra": bad})


def test_bad_arguments_name_what_was_expected():
    p = DDPM((1, 4, 4), T=10)
    x0 = torch.zeros(4, 1, 4, 4)
    zero = lambda x, t, shape: torch.zeros(x.shape[0], *shape)  # noqa: E731
    with pytest.raises(ValueError, match=r"measure_signal_mse: expected x0 of shape "
                       r"\(N, \*\(1, 4, 4\)\), got \(4, 1, 3, 3\)"):
        measure_signal_mse(zero, p, torch.zeros(4, 1, 3, 3))
    with pytest.raises(ValueError, match=r"expected at least 2 images in x0, got 1"):
        measure_signal_mse(zero, p, x0[:1])
    with pytest.raises(ValueError, match=r"expected distinct timesteps, at least one, got "
                       r"\[3, 3\]"):
        measure_signal_mse(zero, p, x0, [3, 3])
    with pytest.raises(ValueError, match=r"expected timesteps in \[1, 10\], got 11"):
        measure_signal_mse(zero, p, x0, [11])
    with pytest.raises(ValueError, match=r"expected prediction in \('signal', 'eps'\), got 'x'"):
        measure_signal_mse(zero, p, x0, [3], prediction="x")
    wrong = lambda x, t, shape: torch.zeros(x.shape[0], 1, 2, 2)  # noqa: E731
    with pytest.raises(ValueError, match=r"expected denoiser output of shape \(4, 1, 4, 4\) at "
                       r"t=3, got \(4, 1, 2, 2\)"):
        measure_signal_mse(wrong, p, x0, [3], progress=False)
    with pytest.raises(TypeError, match=r"ancestral_sample: expected signal_mse as a callable or None, got float"):
        lineardiff.ancestral_sample(zero, p, 2, signal_mse=0.1, progress=False)
    for value in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=r"ancestral_sample: expected signal_mse\(10\) to be "
                           r"a finite number >= 0, got"):
            lineardiff.ancestral_sample(zero, p, 2, signal_mse=lambda t, v=value: v,
                                        progress=False)
