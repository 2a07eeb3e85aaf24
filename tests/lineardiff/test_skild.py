"""SKILD against dense DCT-basis matrices, Monte Carlo, oracle sampling and super-resolution."""

import math

import numpy as np
import pytest
import scipy.fft
import torch
from dense_references import dct_matrix

from lineardiff import SKILD, PowerSpectrumFit, ancestral_sample, respace, skild_upscale

FIT = PowerSpectrumFit(C=2.0, k0=3.0, alpha=1.5)


def _proc(size=8, T=40):
    return SKILD((1, size, size), FIT, T=T)


def _dct_dense(size):
    return torch.from_numpy(np.kron(dct_matrix(size), dct_matrix(size)))


def test_marginal_against_scipy_dct():
    p = _proc()
    x0 = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    noise = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    t = 17
    X0 = scipy.fft.dctn(x0.numpy(), axes=(-2, -1), norm="ortho")
    E = scipy.fft.dctn(noise.numpy(), axes=(-2, -1), norm="ortho")
    ab = p.alphabar[t].numpy()
    S = FIT.spectrum((8, 8)).numpy()
    want = scipy.fft.idctn(
        np.sqrt(ab) * X0 + np.sqrt((1 - ab) * S) * E, axes=(-2, -1), norm="ortho"
    )
    np.testing.assert_allclose(p.q_sample(x0, t, noise).numpy(), want, atol=1e-12)


def test_posterior_against_dense_kalman_form():
    p = _proc()
    V = _dct_dense(8)
    t, s = 30, 22
    x0 = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    xt = p.q_sample(x0, t, generator=torch.Generator().manual_seed(0))
    sig_s = V.T @ torch.diag(p.variance[s].reshape(-1)) @ V
    sig_t = V.T @ torch.diag(p.variance[t].reshape(-1)) @ V
    A_s = V.T @ torch.diag(p.alphabar[s].sqrt().reshape(-1)) @ V
    M = V.T @ torch.diag((p.alphabar[t] / p.alphabar[s]).sqrt().reshape(-1)) @ V
    K = sig_s @ M.T @ torch.linalg.inv(sig_t)
    mu_s = A_s @ x0.reshape(-1)
    mean = mu_s + K @ (xt.reshape(-1) - M @ mu_s)
    cov = sig_s - K @ M @ sig_s
    post = p.posterior(xt, x0, t, s)
    torch.testing.assert_close(post.mean.reshape(-1), mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(post.covariance_operator().to_dense(), cov, rtol=1e-10, atol=1e-12)
    # Monte Carlo: the noise has that covariance (3 standard deviations of the Frobenius error)
    n = 20000
    xi = torch.randn(n, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    eta = post.noise(xi).reshape(n, -1)
    tol = 3 * math.sqrt((torch.linalg.matrix_norm(cov) ** 2 + torch.trace(cov) ** 2).item() / n)
    assert torch.linalg.matrix_norm(eta.T @ eta / n - cov) <= tol
    # and per basis direction: variance within 5 relative standard errors sqrt(2/n)
    var = (eta @ V.T).square().mean(0)
    want = torch.diagonal(V @ cov @ V.T)
    assert ((var / want) - 1).abs().max() <= 5 * math.sqrt(2 / n)


def test_eps_oracle_sampler_returns_the_point():
    p = _proc()
    x0 = torch.randn(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def eps_oracle(x, t, shape):
        tt = int(t[0])
        X = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho")
        X0 = scipy.fft.dctn(x0.numpy(), axes=(-2, -1), norm="ortho")
        E = (X - np.sqrt(p.alphabar[tt].numpy()) * X0) / np.sqrt(p.variance[tt].numpy())
        return torch.from_numpy(scipy.fft.idctn(E, axes=(-2, -1), norm="ortho"))

    for steps in (None, respace(p, 8)):
        out = ancestral_sample(
            eps_oracle, p, 3, prediction="eps", timesteps=steps, progress=False, dtype=torch.float64
        )
        # dividing by sqrt(alphabar_T) ~ 1e-3 at the start amplifies rounding: 1e-9
        torch.testing.assert_close(out, x0.expand(3, 1, 8, 8), rtol=0, atol=1e-9)


def test_signal_from_noise_keeps_modes_above_the_snr_floor_and_bounds_a_noisy_prediction():
    """Modes with alphabar / (1 - alphabar) >= min_snr are inverted exactly (dense scipy
    route); the others get 0. A noise prediction off by delta = 0.1 then gives an x0 error of
    at most delta / sqrt(min_snr) = 1 per mode (in units of the noise spectrum) instead of
    1e3-1e8, and the states of a whole chain driven by such a prediction stay bounded."""
    p = _proc(16, T=200)
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, 1, 16, 16, dtype=torch.float64, generator=gen)
    t = 120
    ab, var = p.alphabar[t].numpy(), p.variance[t].numpy()
    alive = ab / (1 - ab) >= p.min_snr
    assert alive.any() and not alive.all()  # the test sees both kinds of mode
    assert (np.sqrt(ab[~alive]) >= 1e-8).any()  # including ones the old 1e-8 cut inverted
    x = p.q_sample(x0, t, generator=gen)
    eps = p_eps(p, x, x0, t)
    X = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho")
    E = scipy.fft.dctn(eps.numpy(), axes=(-2, -1), norm="ortho")
    want = np.where(alive, (X - np.sqrt(var) * E) / np.sqrt(ab), 0.0)
    got = scipy.fft.dctn(p.signal_from_noise(x, eps, t, t - 1).numpy(), axes=(-2, -1),
                         norm="ortho")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)
    X0 = scipy.fft.dctn(x0.numpy(), axes=(-2, -1), norm="ortho")
    np.testing.assert_allclose(got[..., alive], X0[..., alive], rtol=0, atol=1e-8)
    # a 10 % noise error: every kept mode's x0 error is at most 0.1 sqrt(S_0 / min_snr)
    noise = 0.1 * torch.randn(eps.shape, dtype=torch.float64, generator=gen)
    bad = scipy.fft.dctn(p.signal_from_noise(x, eps + noise, t, t - 1).numpy(),
                         axes=(-2, -1), norm="ortho")
    S0 = var / (1 - ab)
    Nk = scipy.fft.dctn(noise.numpy(), axes=(-2, -1), norm="ortho")
    bound = np.abs(Nk) * np.sqrt(S0 / p.min_snr)
    assert (np.abs(bad - got) <= bound * (1 + 1e-9))[..., alive].all()

    def noisy_oracle(xt, tt, shape):  # the exact noise of x0 plus 10 % white error
        k = int(tt[0])
        e = 0.1 * torch.randn(xt.shape, dtype=xt.dtype, generator=gen)
        return p_eps(p, xt, x0[:1].expand_as(xt), k) + e

    peak = []
    ancestral_sample(noisy_oracle, p, 4, prediction="eps", timesteps=respace(p, 40),
                     progress=False, dtype=torch.float64, clip=None,
                     callback=lambda t, s, x, sig: peak.append(float(x.abs().max())))
    # the states stay at the scale of x0 + noise (|x0| <= ~3 here; measured 3.1); the old cut
    # (invert every mode with sqrt(alphabar) >= 1e-8) let them grow to 34 on this chain
    # and to 1e8 on a trained network's
    assert max(peak) < 5.0


@pytest.mark.parametrize("low", [8, 12])  # 2x and the non-integer 1.5x
def test_super_resolution_with_an_oracle(low):
    p = SKILD((1, 16 if low == 8 else 18, 16 if low == 8 else 18), FIT, T=60)
    H = p.shape[1]
    x0 = torch.randn(1, 1, H, H, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def eps_oracle(x, t, shape):
        tt = int(t[0])
        return p_eps(p, x, x0, tt)

    y = torch.nn.functional.interpolate(x0, size=(low, low), mode="area")
    start = p.start_step(low)
    assert 1 <= start <= p.T
    seen = []
    out = skild_upscale(
        eps_oracle, p, y, num_steps=12, progress=False, callback=lambda t, s, x, sig: seen.append(t)
    )
    assert seen[0] == start and out.shape == x0.shape
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-8)


def p_eps(p, x, x0, t):
    import linops

    X = linops.dct2(x) - p.alphabar[t].sqrt() * linops.dct2(x0)
    return linops.idct2(X / p.variance[t].sqrt())


def test_start_step_grows_as_the_input_shrinks_and_embedding_keeps_band_limited_images():
    p = SKILD((1, 32, 32), FIT, T=100)
    assert p.start_step(16) < p.start_step(8) < p.start_step(4)
    import linops

    X = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    X[..., :3, :3] = torch.randn(3, 3, dtype=torch.float64)
    y = linops.idct2(X)
    up = p.embed(y)
    down = linops.idct2(linops.dct2(up)[..., :8, :8] * (64 / 1024) ** 0.5)
    torch.testing.assert_close(down, y)


def test_low_res_against_scipy_and_as_the_inverse_of_embed():
    """low_res keeps the h x w lowest orthonormal-DCT modes, inverted at h x w, scaled by
    sqrt(hw / HW): checked with scipy's DCT-II; embed(low_res(x)) is x band-limited, and
    low_res(embed(y)) is y. Tolerance: float64 rounding of O(64) operations."""
    p = SKILD((1, 8, 8), FIT, T=10)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    for size in (5, (3, 6), 8):
        h, w = (size, size) if isinstance(size, int) else size
        X = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho")[..., :h, :w]
        want = scipy.fft.idctn(X, axes=(-2, -1), norm="ortho") * math.sqrt(h * w / 64)
        got = p.low_res(x, size)
        assert got.shape == (3, 1, h, w)
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
        y = torch.randn(2, 1, h, w, dtype=torch.float64)
        torch.testing.assert_close(p.low_res(p.embed(y), (h, w)), y, rtol=0, atol=1e-12)
        band = np.zeros_like(scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho"))
        band[..., :h, :w] = X
        np.testing.assert_allclose(p.embed(got).numpy(),
                                   scipy.fft.idctn(band, axes=(-2, -1), norm="ortho"),
                                   rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"SKILD.low_res: expected x of shape \(\.\.\., 8, 8\), "
                                         r"got \(2, 1, 4, 4\)"):
        p.low_res(torch.zeros(2, 1, 4, 4), 2)
    with pytest.raises(ValueError, match=r"SKILD.low_res: expected a size between 1 and "
                                         r"\(8, 8\), got \(9, 9\)"):
        p.low_res(x, 9)


def test_errors():
    with pytest.raises(
        ValueError,
        match=r"SKILD: expected spectrum of shape \(8, 8\) or a PowerSpectrumFit, got \(4, 4\)",
    ):
        SKILD((1, 8, 8), torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"SKILD: expected a positive spectrum"):
        SKILD((1, 8, 8), torch.zeros(8, 8))
    p = _proc()
    with pytest.raises(ValueError, match=r"SKILD.posterior: expected s < t, got s=3, t=2"):
        p.posterior(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), 2, 3)


def test_linear_schedule_matches_the_schedule_functions_and_log_linear_is_monotone():
    from lineardiff import skild_alphabar, skild_effective_band

    p = SKILD((1, 16, 16), FIT, T=50)
    times = torch.arange(0, 51, dtype=torch.float64) / 50
    torch.testing.assert_close(p.alphabar, skild_alphabar(times, (16, 16)))
    band = skild_effective_band(times[1:], 16)
    assert p.start_step(8) == int((band <= 8).nonzero()[0]) + 1
    q = SKILD((1, 16, 16), FIT, T=50, lambda_schedule="log_linear", k_c=31.2)
    assert bool((q.alphabar[1:] <= q.alphabar[:-1]).all()) and q.alphabar[0].min() == 1
    lam = times * 10 ** (-3.75 + 1.75 * times)
    torch.testing.assert_close(q.lam, lam)
    with pytest.raises(
        ValueError, match=r"expected lambda_schedule 'linear' or 'log_linear', got 'cosine'"
    ):
        SKILD((1, 8, 8), FIT, lambda_schedule="cosine")
