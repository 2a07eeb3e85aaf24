"""The isotropic linear diffusion process, DDPM and SSD, against closed forms, dense
matrices and Monte Carlo statistics."""

import math

import pytest
import torch

import lineardiff
import linops
from lineardiff import DDPM, LinearDiffusion, ScaleSpaceDiffusion


def test_ddpm_posterior_matches_ho_et_al_closed_forms():
    p = DDPM((1, 2, 2), T=1000)
    beta = p.betas
    abar = p.alphas_cumprod
    for t in (2, 10, 500, 1000):  # state t uses beta index t - 1
        b, ab, ab_prev = beta[t - 1].item(), abar[t - 1].item(), abar[t - 2].item()
        coef_x0 = math.sqrt(ab_prev) * b / (1 - ab)
        coef_xt = math.sqrt(1 - b) * (1 - ab_prev) / (1 - ab)
        var = (1 - ab_prev) * b / (1 - ab)
        ones, zeros = (
            torch.ones(1, 1, 2, 2, dtype=torch.float64),
            torch.zeros(1, 1, 2, 2, dtype=torch.float64),
        )
        post = p.posterior(zeros, ones, t, t - 1)
        # two rounding routes to the same closed form: 1e-12 relative
        assert post.mean[0, 0, 0, 0].item() == pytest.approx(coef_x0, rel=1e-12)
        assert p.posterior(ones, zeros, t, t - 1).mean[0, 0, 0, 0].item() == pytest.approx(
            coef_xt, rel=1e-12
        )
        cov = post.covariance_operator()
        assert isinstance(cov, linops.ScaledIdentity)
        assert post.sigma**2 * cov.scale == pytest.approx(var, rel=1e-12)


def test_ssd_with_one_level_is_ddpm():
    ssd = ScaleSpaceDiffusion((1, 8, 8), n_levels=1, T=50)
    ddpm = DDPM((1, 8, 8), T=50)
    x0 = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    noise = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    for t in (1, 17, 50):
        torch.testing.assert_close(
            ssd.q_sample(x0, t, noise), ddpm.q_sample(x0, t, noise), rtol=0, atol=0
        )
        xt = ddpm.q_sample(x0, t, noise)
        torch.testing.assert_close(
            ssd.posterior(xt, x0, t, t - 1).mean, ddpm.posterior(xt, x0, t, t - 1).mean
        )


def test_convex_decay_boundaries_of_design():
    p = ScaleSpaceDiffusion((1, 64, 64), n_levels=4, T=1000)
    r = p.resolution_of_state  # state t has the resolution of code timestep t - 1
    for code_t, res in [
        (0, 64),
        (437, 64),
        (438, 32),
        (749, 32),
        (750, 16),
        (936, 16),
        (937, 8),
        (999, 8),
    ]:
        assert r[code_t + 1] == res, code_t
    assert p.resolution_changes() == [439, 751, 938]
    assert p.shape_at(0) == (1, 64, 64) and p.shape_at(1000) == (1, 8, 8)


def _dense(op):
    return op.to_dense()


def test_composed_transition_equals_product_of_steps():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)
    s, t = 3, 20
    prod = _dense(p.step_operator(s + 1))
    for u in range(s + 2, t + 1):
        prod = _dense(p.step_operator(u)) @ prod
    torch.testing.assert_close(_dense(p.transition_operator(s, t)), prod, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(_dense(p.signal_operator(t)), _dense(p.transition_operator(0, t)))


def test_posterior_mean_and_covariance_against_dense_kalman_form():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)
    t = p.resolution_changes()[0] + 2
    s = t - 4  # spans the resolution change
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=g)
    xt = p.q_sample(x0, t, generator=g)
    post = p.posterior(xt, x0, t, s)
    A_s, M = _dense(p.signal_operator(s)), _dense(p.transition_operator(s, t))
    sig_s2, sig_t2 = p.sigma(s) ** 2, p.sigma(t) ** 2
    K = sig_s2 * M.T / sig_t2  # Sigma_s M^T Sigma_t^{-1}
    mu_s = x0.reshape(2, -1) @ A_s.T
    mean = mu_s + (xt.reshape(2, -1) - mu_s @ M.T) @ K.T
    cov = sig_s2 * torch.eye(M.shape[1], dtype=torch.float64) - K @ M * sig_s2
    torch.testing.assert_close(post.mean.reshape(2, -1), mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        post.sigma**2 * _dense(post.covariance_operator()), cov, rtol=1e-12, atol=1e-13
    )


def _mc_tolerance(cov, n):
    """3 standard deviations of the Frobenius error of a sample covariance of n Gaussian draws.

    E||S - Sigma||_F^2 = (||Sigma||_F^2 + tr(Sigma)^2) / n for zero-mean data.
    """
    return 3 * math.sqrt((torch.linalg.matrix_norm(cov) ** 2 + torch.trace(cov) ** 2).item() / n)


def _check_directional_variances(samples, cov, directions=None):
    """Variance along each eigenvector of ``cov`` (or of ``directions``) within 5 standard errors.

    For zero-mean Gaussian data the sample variance along a unit vector u has relative
    standard error sqrt(2 / n); 5 of them keep the family-wise false-alarm rate over a
    few dozen directions below 1e-4. The Frobenius test alone cannot see a covariance
    that is wrong in a few directions only (e.g. the identity in place of I - rho M^T M).
    """
    n = samples.shape[0]
    basis = torch.linalg.eigh(cov if directions is None else directions).eigenvectors
    want = torch.einsum("ij,ik,kj->j", basis, cov, basis)
    got = (samples @ basis).square().mean(0)
    rel = (got / want - 1).abs()
    assert rel.max() <= 5 * math.sqrt(2 / n), (rel.max().item(), 5 * math.sqrt(2 / n))


def test_posterior_noise_covariance_by_monte_carlo():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)
    t = p.resolution_changes()[0]
    x0 = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    post = p.posterior(torch.zeros(1, *p.shape_at(t), dtype=torch.float64), x0, t, t - 1)
    n = 20000
    xi = torch.randn(n, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    eta = post.noise(xi).reshape(n, -1)
    emp = eta.T @ eta / n
    want = post.sigma**2 * _dense(post.covariance_operator())
    assert torch.linalg.matrix_norm(emp - want) <= _mc_tolerance(want, n)
    _check_directional_variances(eta, want)


@pytest.mark.parametrize("size,levels", [(8, 2), (16, 3)])
def test_chained_transitions_reproduce_the_marginal(size, levels):
    p = ScaleSpaceDiffusion((1, size, size), n_levels=levels, T=12)
    n = 20000
    g = torch.Generator().manual_seed(2)
    x0 = torch.linspace(-1, 1, size * size, dtype=torch.float64).reshape(1, 1, size, size)
    x = x0.expand(n, 1, size, size)
    for t in range(1, p.T + 1):
        M = p.step_operator(t)
        # one-step noise covariance sigma_t^2 I - sigma_{t-1}^2 M M^T, drawn through sqrtm
        shape = p.shape_at(t)
        step_cov = p.sigma(t) ** 2 * linops.Identity(shape) - p.sigma(t - 1) ** 2 * (M @ M.H)
        xi = torch.randn(n, *shape, dtype=torch.float64, generator=g)
        x = M.apply(x) + linops.sqrtm(step_cov, xi).value
    flat = x.reshape(n, -1)
    mean = p.signal_operator(p.T).apply(x0).reshape(-1)
    d = flat.shape[1]
    cov_want = p.sigma(p.T) ** 2 * torch.eye(d, dtype=torch.float64)
    # mean: each coordinate has variance sigma_T^2; 4 standard errors over 16 coordinates
    assert (flat.mean(0) - mean).abs().max() <= 4 * p.sigma(p.T) / math.sqrt(n)
    centred = flat - mean
    emp = centred.T @ centred / n
    assert torch.linalg.matrix_norm(emp - cov_want) <= _mc_tolerance(cov_want, n)
    # directions: the eigenvectors of A_T A_T^T, where the resizes act
    A = _dense(p.signal_operator(p.T))
    _check_directional_variances(centred, cov_want, directions=A @ A.T)


def test_q_sample_vectorised_over_t_within_a_resolution():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)
    x0 = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    noise = torch.randn(3, *p.shape_at(20), dtype=torch.float64)
    ts = torch.tensor([18, 19, 20])
    batch = p.q_sample(x0, ts, noise)
    for i, t in enumerate(ts.tolist()):
        torch.testing.assert_close(batch[i : i + 1], p.q_sample(x0[i : i + 1], t, noise[i : i + 1]))
    with pytest.raises(
        ValueError, match=r"expected timesteps whose states share one shape, got t in \[1, 20\]"
    ):
        p.q_sample(x0[:2], torch.tensor([1, 20]))


def test_infeasible_and_malformed_processes_are_refused():
    R = linops.Resize((1, 8, 8), (4, 4))
    with pytest.raises(
        ValueError,
        match=r"step 2 is infeasible: sigma_t\^2 = 0\.36 must be >= .* = 1\.018\d* \(margin -0\.658\)",
    ):
        LinearDiffusion([1.0, 1.0], [None, 4.0 * R], [0.0, 0.5, 0.6], (1, 8, 8))
    with pytest.raises(
        ValueError, match=r"step 2 expected an operator with in_shape \(1, 4, 4\), got \(1, 8, 8\)"
    ):
        LinearDiffusion([1.0, 1.0], [R, R], [0.0, 0.5, 0.9], (1, 8, 8))
    with pytest.raises(
        ValueError,
        match=r"expected non-decreasing sigmas, got sigma_2 = 0.3 < sigma_1 = 0.5 at step 2",
    ):
        LinearDiffusion([1.0, 1.0], [None, None], [0.0, 0.5, 0.3], (1, 8, 8))
    with pytest.raises(ValueError, match=r"expected finite sigmas >= 0 with sigma_0 = 0"):
        LinearDiffusion([1.0], [None], [0.1, 0.5], (1, 8, 8))
    with pytest.raises(
        ValueError, match=r"expected T >= 1 scales, T bases and T \+ 1 sigmas, got 2, 1 and \(3,\)"
    ):
        LinearDiffusion([1.0, 1.0], [None], [0.0, 0.5, 0.9], (1, 8, 8))
    p = DDPM((1, 4, 4), T=10)
    with pytest.raises(ValueError, match=r"DDPM.posterior: expected s < t, got s=5, t=5"):
        p.posterior(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), 5, 5)
    with pytest.raises(
        ValueError, match=r"DDPM.shape_at: expected an integer t in \[0, 10\], got 11"
    ):
        p.shape_at(11)
    with pytest.raises(
        ValueError,
        match=r"DDPM.q_sample: expected x0 of shape \(N, \*\(1, 4, 4\)\), got \(1, 4, 4\)",
    ):
        p.q_sample(torch.zeros(1, 4, 4), 3)


def test_posterior_at_s_zero_is_the_clean_image():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)
    x0 = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    xt = p.q_sample(x0, 20)
    post = p.posterior(xt, x0, 20, 0)
    torch.testing.assert_close(post.mean, x0)
    assert torch.equal(post.sample(), post.mean)


def test_public_names():
    assert set(lineardiff.__all__) >= {
        "DDPM",
        "ScaleSpaceDiffusion",
        "LinearDiffusion",
        "Posterior",
    }


def test_blurring_diffusion_without_blur_is_the_ddpm_like_process():
    bd = lineardiff.BlurringDiffusion((1, 8, 8), T=30, sigma_b_max=0.0)
    same = LinearDiffusion(bd.scales, [None] * 30, bd.sigmas, (1, 8, 8))
    x0 = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    noise = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    for t in (1, 15, 30):
        torch.testing.assert_close(bd.q_sample(x0, t, noise), same.q_sample(x0, t, noise))
        xt = same.q_sample(x0, t, noise)
        torch.testing.assert_close(
            bd.posterior(xt, x0, t, t - 1).mean, same.posterior(xt, x0, t, t - 1).mean
        )


def test_blurring_diffusion_marginal_is_a_t_d_t_in_dct_space():
    bd = lineardiff.BlurringDiffusion((1, 8, 8), T=40)
    x0 = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    for t in (5, 20, 40):
        want = linops.idct2(bd.a[t] * bd.dissipation[t] * linops.dct2(x0))
        torch.testing.assert_close(bd.signal_operator(t).apply(x0), want, rtol=1e-12, atol=1e-13)
    ts = torch.tensor([3, 17, 40])
    noise = torch.zeros(3, 1, 8, 8, dtype=torch.float64)
    batch = bd.q_sample(torch.cat([x0, x0[:1]]), ts, noise)
    for i, t in enumerate(ts.tolist()):
        torch.testing.assert_close(
            batch[i], bd.signal_operator(t).apply(torch.cat([x0, x0[:1]])[i])
        )


def test_blurring_diffusion_posterior_against_dense_and_monte_carlo():
    bd = lineardiff.BlurringDiffusion((1, 8, 8), T=40)
    t, s = 30, 27
    x0 = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    xt = bd.q_sample(x0, t, generator=torch.Generator().manual_seed(0))
    post = bd.posterior(xt, x0, t, s)
    A_s, M = _dense(bd.signal_operator(s)), _dense(bd.transition_operator(s, t))
    sig_s2, sig_t2 = bd.sigma(s) ** 2, bd.sigma(t) ** 2
    K = sig_s2 * M.T / sig_t2
    mu_s = x0.reshape(1, -1) @ A_s.T
    mean = mu_s + (xt.reshape(1, -1) - mu_s @ M.T) @ K.T
    cov = sig_s2 * torch.eye(64, dtype=torch.float64) - K @ M * sig_s2
    torch.testing.assert_close(post.mean.reshape(1, -1), mean, rtol=1e-12, atol=1e-12)
    n = 20000
    xi = torch.randn(n, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    eta = post.noise(xi).reshape(n, -1)
    assert torch.linalg.matrix_norm(eta.T @ eta / n - cov) <= _mc_tolerance(cov, n)
    _check_directional_variances(eta, cov)


def test_ve_sigmas_and_posterior():
    p = lineardiff.VE((1, 4, 4), T=20)
    sig = torch.tensor([p.sigma(t) for t in range(1, 21)], dtype=torch.float64)
    assert (
        (sig[1:] > sig[:-1]).all()
        and sig[0] == pytest.approx(0.002)
        and sig[-1] == pytest.approx(80.0)
    )
    x0, xt = (
        torch.zeros(1, 1, 4, 4, dtype=torch.float64),
        torch.ones(1, 1, 4, 4, dtype=torch.float64),
    )
    post = p.posterior(xt, x0, 10, 9)
    rho = p.sigma(9) ** 2 / p.sigma(10) ** 2
    # VE posterior: mean = rho x_t + (1 - rho) x_0, variance sigma_s^2 (1 - rho)
    torch.testing.assert_close(post.mean, rho * xt)
    assert post.sigma**2 * post.covariance_operator().scale == pytest.approx(
        p.sigma(9) ** 2 * (1 - rho)
    )
    with pytest.raises(ValueError, match=r"VE: expected 0 < sigma_min < sigma_max"):
        lineardiff.VE((1, 4, 4), sigma_min=1.0, sigma_max=0.5)
