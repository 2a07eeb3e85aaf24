"""Likelihood guidance (ancestral_sample's log_likelihood): the Tweedie correction, an oracle
with a perfect denoiser, which states are guided, and bad input."""

import math

import pytest
import torch

import lineardiff
from lineardiff import block_sign_likelihood

U = torch.ones(1, 4, 4)


def _two_point_oracle(process):
    """The exact E[x0 | x_t] for x0 = +U or -U with probability 1/2 each (DDPM states)."""

    def model(x, t, shape):
        step = int(t[0])
        a, sigma = process.signal_scale(step), process.sigma(step)
        # log p(+U | x_t) - log p(-U | x_t) = 2 a <x_t, U> / sigma^2
        odds = a * (x * U).flatten(1).sum(1) / sigma ** 2
        return torch.tanh(odds).reshape(-1, 1, 1, 1) * U

    return model


def test_the_oracle_follows_the_observed_block_signs():
    # Unguided, the perfect denoiser of the two-point data gives +U or -U at random; guided by
    # block signs all +1 (seen in 2 of the 4 blocks, the others observe nothing), the exact
    # posterior is +U with probability 1 - 1e-7. Guidance approximates p(y | x_t) by
    # p(y | z(x_t)) (not exact: once the oracle's tanh saturates, a wrong early choice is not
    # undone), and measured 0.885 of +U here; a wrong sign of the correction gives < 0.5 and a
    # missing Tweedie factor (sigma^2 / a >> 1 early) leaves it near 0.5.
    torch.manual_seed(0)
    p = lineardiff.DDPM((1, 4, 4), T=200)
    oracle = _two_point_oracle(p)
    steps = lineardiff.respace(p, 40)
    g = torch.Generator().manual_seed(1)
    free = lineardiff.ancestral_sample(oracle, p, 200, timesteps=steps, generator=g,
                                       progress=False)
    blocks = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).expand(200, 1, 2, 2)
    guided = lineardiff.ancestral_sample(oracle, p, 200, timesteps=steps, generator=g,
                                         progress=False,
                                         log_likelihood=block_sign_likelihood(blocks))
    plus = lambda x: (x.flatten(1).mean(1) > 0).float().mean().item()  # noqa: E731
    # 200 fair coins: the fraction of +U lies in [0.35, 0.65] except with probability 3e-5
    assert 0.35 < plus(free) < 0.65
    assert plus(guided) > 0.8
    assert torch.allclose(guided.abs(), U.expand(200, 1, 4, 4), atol=1e-3)  # still +-U
    stronger = lineardiff.ancestral_sample(oracle, p, 200, timesteps=steps, generator=g,
                                           progress=False, guidance_scale=4.0,
                                           log_likelihood=block_sign_likelihood(blocks))
    assert plus(stronger) >= plus(guided)


def test_the_correction_is_zeta_sigma2_over_a_times_the_gradient():
    # A linear signal model z(x) = x / a_t: the corrected signal must be
    # z + zeta (sigma^2 / a) grad_x ll(z(x)) = z + zeta (sigma^2 / a^2) grad_z ll(z).
    p = lineardiff.DDPM((1, 4, 4), T=50)
    seen = []

    def model(x, t, shape):
        return x / p.signal_scale(int(t[0]))

    def ll(z):
        return -(z - 0.3).square().flatten(1).sum(1)

    def callback(t, s, x, signal):
        seen.append((t, signal.clone()))

    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    zeta = 0.7
    lineardiff.ancestral_sample(model, p, 3, timesteps=[50, 20], x_T=x_T, progress=False,
                                log_likelihood=ll, guidance_scale=zeta, callback=callback,
                                dtype=torch.float64, generator=torch.Generator())
    t, signal = seen[0]
    a, sigma = p.signal_scale(50), p.sigma(50)
    z = x_T / a
    expected = z + zeta * sigma ** 2 / a ** 2 * (-2 * (z - 0.3))
    torch.testing.assert_close(signal, expected, rtol=1e-12, atol=1e-12)


def test_ssd_guides_only_its_full_resolution_states():
    p = lineardiff.ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=40)
    shapes = []

    def ll(z):
        shapes.append(tuple(z.shape[1:]))
        return -z.square().flatten(1).sum(1)

    def model(x, t, shape):
        return torch.nn.functional.interpolate(x, size=shape[-2:], mode="nearest")

    steps = lineardiff.respace(p, 10)
    lineardiff.ancestral_sample(model, p, 2, timesteps=steps, progress=False, log_likelihood=ll)
    pairs = zip(steps, steps[1:] + [0], strict=True)
    full = [t for t, s in pairs if p.shape_at(t) == p.shape_at(s) == (1, 8, 8)]
    coarse = [t for t in steps if p.shape_at(t) != (1, 8, 8)]
    assert full and coarse  # both kinds of state are walked
    assert shapes == [(1, 8, 8)] * len(full)


def test_block_sign_likelihood_values():
    ll = block_sign_likelihood(torch.tensor([[[[1.0, -1.0]]]]), beta=2.0)
    x = torch.tensor([[[[1.0, 1.0, 0.0, -1.0], [1.0, 0.0, -1.0, -1.0]]]])
    # block means 0.75 and -0.75, both agreeing: 2 log sigmoid(1.5)
    want = 2 * torch.nn.functional.logsigmoid(torch.tensor(1.5))
    torch.testing.assert_close(ll(x), want.reshape(1))


BAD = [
    (lambda: block_sign_likelihood(torch.ones(2, 2)), ValueError, "blocks of shape"),
    (lambda: block_sign_likelihood(torch.ones(1, 1, 2, 2), beta=-1), ValueError, "beta"),
    (lambda: block_sign_likelihood("x"), TypeError, "blocks"),
    (lambda: block_sign_likelihood(torch.ones(1, 1, 2, 2))(torch.ones(1, 1, 5, 5)),
     ValueError, "expected images of shape"),
    (lambda: lineardiff.ancestral_sample(lambda x, t, s: x, lineardiff.DDPM((1, 4, 4), T=5), 2,
                                         progress=False, log_likelihood=3),
     TypeError, "log_likelihood"),
    (lambda: lineardiff.ancestral_sample(lambda x, t, s: x, lineardiff.DDPM((1, 4, 4), T=5), 2,
                                         progress=False, log_likelihood=lambda z: z.sum(),
                                         guidance_scale=1.0),
     ValueError, r"log_likelihood to return shape \(2,\)"),
    (lambda: lineardiff.ancestral_sample(lambda x, t, s: x, lineardiff.DDPM((1, 4, 4), T=5), 2,
                                         progress=False, log_likelihood=lambda z: z.sum((1, 2, 3)),
                                         guidance_scale=-1.0),
     ValueError, "guidance_scale"),
    (lambda: lineardiff.ancestral_sample(
        lambda x, t, s: x, lineardiff.DDPM((1, 4, 4), T=5), 2, progress=False,
        log_likelihood=lambda z: torch.sign(z).sum((1, 2, 3)).detach()),
     ValueError, "depend differentiably"),
]


@pytest.mark.parametrize("call, exc, match", BAD)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_super_resolve_with_guidance_keeps_the_block_spins():
    # The shipped 16 x 16 SSD model, 8 -> 16 from majority blocks of Monte Carlo: guidance
    # keeps (nearly) every non-tied block; entry-only conditioning keeps far fewer. 20 steps
    # and 8 inputs keep it cheap (measured 0.99 guided, 0.71 not; the thresholds leave room
    # for other seeds).
    from lineardiff.data import wolff_configurations
    from lineardiff.metrics import block_consistency, majority_blocks
    from lineardiff.pretrained import load_model

    model = load_model("ising16-ssd")
    truth = wolff_configurations(16, 8, seed=20_000)
    coarse = majority_blocks(truth, 2, seed=0)
    y = 0.77 * torch.from_numpy(coarse.astype("float32")).unsqueeze(1)
    runs = {g: lineardiff.super_resolve(model, y, steps=20, seed=0, progress=False, guidance=g)
            for g in (0.0, 1.0)}
    kept = {g: block_consistency(torch.sign(x[:, 0]).numpy(), coarse, 2)["consistency"]
            for g, x in runs.items()}
    assert kept[1.0] >= 0.97 and kept[1.0] > kept[0.0] + 0.05


# --- the block mean's posterior variance and the marginal likelihood ---------------------------

def _two_point_mmse(process, t, nodes=120):
    """E[e] and E[e^2] for e = (1 - tanh(w))^2, w ~ N(g, g), g = 16 a^2 / sigma^2: the block-mean
    error of the perfect denoiser for x0 = +U (by symmetry also -U; |U|^2 = 16), whose mean is
    the posterior variance averaged over x_t (Gauss-Hermite quadrature)."""
    import numpy as np

    a, sigma = process.signal_scale(t), process.sigma(t)
    g = 16 * a ** 2 / sigma ** 2
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    e = (1 - np.tanh(g + np.sqrt(g) * x)) ** 2
    return float((w * e).sum() / w.sum()), float((w * e * e).sum() / w.sum())


def test_block_mean_variance_of_the_oracle_is_its_exact_posterior_variance():
    # The perfect denoiser's block-mean error is the posterior variance; for the two-point
    # data it has the closed form above. The four blocks of a draw are equal, so 4000 draws
    # are 4000 independent errors: within 4.5 s.e. (from the quadrature's second moment;
    # heavy-tailed where a wrong sign is rare, hence no fixed relative tolerance) and within
    # 40 % (a missing sigma or a wrong block average misses by far more).
    p = lineardiff.DDPM((1, 4, 4), T=200)
    x0 = torch.where(torch.rand(4000, 1, 1, 1, generator=torch.Generator().manual_seed(3)) < 0.5,
                     1.0, -1.0) * U
    v = lineardiff.block_mean_variance(_two_point_oracle(p), p, x0, 2, num=5,
                                       generator=torch.Generator().manual_seed(4))
    assert v.timesteps == [1, 51, 101, 150, 200]  # round(i * 199 / 4) + 1
    for t, got in zip(v.timesteps, v.values, strict=True):
        want, second = _two_point_mmse(p, t)
        se = ((second - want ** 2) / 4000) ** 0.5
        if want > 1e-4:
            assert abs(got - want) < min(4.5 * se + 1e-12, 0.4 * want), (t, got, want, se)
        else:  # a state where the sign is certain: the error is (nearly) zero
            assert got < 1e-3
    assert v(76) == pytest.approx((v(51) * v(101)) ** 0.5)  # log-linear, midway


def test_marginal_block_likelihood_matches_the_gaussian_average():
    # log p(s | x_t) = log E[sigmoid(beta s u)], u ~ N(m, v), by quadrature (the independent
    # route); the probit approximation is good to ~0.02 in probability (Bishop 2006, 4.5.2),
    # 0.03 in log at these values.
    import math

    import numpy as np

    blocks = torch.tensor([[[[1.0, -1.0]]]])
    x = torch.tensor([[[[0.2, 0.2, -0.6, -0.6], [0.2, 0.2, -0.6, -0.6]]]])  # means 0.2, -0.6
    ll = block_sign_likelihood(blocks, beta=8.0, variance=lambda t: 0.05)
    assert ll.time_dependent
    nodes, w = np.polynomial.hermite_e.hermegauss(60)

    def avg(m, v, beta):
        return float((w / (1 + np.exp(-beta * (m + math.sqrt(v) * nodes)))).sum() / w.sum())

    want = math.log(avg(0.2, 0.05, 8.0)) + math.log(avg(0.6, 0.05, 8.0))
    assert float(ll(x, 7)) == pytest.approx(want, abs=0.03)
    # beta = inf: log Phi(s m / sqrt(v)) exactly (both blocks above -1 s.d.)
    exact = block_sign_likelihood(blocks, beta=math.inf, variance=lambda t: 0.05)
    phi = torch.distributions.Normal(0.0, 1.0).cdf
    want = torch.log(phi(torch.tensor(0.2 / 0.05 ** 0.5)) * phi(torch.tensor(0.6 / 0.05 ** 0.5)))
    torch.testing.assert_close(exact(x, 7), want.reshape(1), rtol=1e-6, atol=1e-6)
    # spins=True: v_B = v mean_B(1 - x^2) / mean(1 - x^2) = 0.05 * (0.96, 0.64) / 0.8
    local = block_sign_likelihood(blocks, beta=math.inf, variance=lambda t: 0.05, spins=True)
    want = torch.log(phi(torch.tensor(0.2 / 0.06 ** 0.5)) * phi(torch.tensor(0.6 / 0.04 ** 0.5)))
    torch.testing.assert_close(local(x, 7), want.reshape(1), rtol=1e-6, atol=1e-6)
    # a block decided against its sign at a tiny variance: below -1 s.d. the tangent line,
    # slope phi(1) / Phi(-1) = 1.525 per s.d. (log Phi's own slope there would be ~5000)
    z = torch.full((1, 1, 2, 2), -0.5, requires_grad=True)
    tiny = block_sign_likelihood(blocks[:, :, :, :1], beta=math.inf, variance=lambda t: 1e-8)
    value = tiny(z, 1)
    (grad,) = torch.autograd.grad(value.sum(), z)
    edge = math.log(float(phi(torch.tensor(-1.0))))
    assert float(value.detach()) == pytest.approx(edge + 1.5251 * (-0.5 / 1e-4 + 1), rel=1e-4)
    torch.testing.assert_close(grad, torch.full_like(z, 1.5251 / 1e-4 / 4), rtol=1e-4, atol=0)


def test_the_sampler_passes_the_state_to_a_time_dependent_likelihood():
    p = lineardiff.DDPM((1, 4, 4), T=30)
    seen = []

    def variance(t):
        seen.append(t)
        return 0.1

    ll = block_sign_likelihood(torch.ones(2, 1, 2, 2), beta=math.inf, variance=variance)
    steps = [30, 20, 10, 1]
    lineardiff.ancestral_sample(lambda x, t, s: x.tanh(), p, 2, timesteps=steps,
                                progress=False, log_likelihood=ll)
    assert seen == steps


def test_the_oracle_follows_the_block_signs_with_the_marginal_likelihood():
    # As the plain test above, with the exact majority rule marginalised over the oracle's
    # measured posterior variance: it must follow the signs (measured 0.925 of +U here, 0.885
    # with the plain approximation; 200 fair coins exceed 0.85 with probability < 1e-20).
    p = lineardiff.DDPM((1, 4, 4), T=200)
    oracle = _two_point_oracle(p)
    x0 = torch.where(torch.rand(2000, 1, 1, 1, generator=torch.Generator().manual_seed(5)) < 0.5,
                     1.0, -1.0) * U
    v = lineardiff.block_mean_variance(oracle, p, x0, 2, generator=torch.Generator())
    blocks = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).expand(200, 1, 2, 2)
    guided = lineardiff.ancestral_sample(
        oracle, p, 200, timesteps=lineardiff.respace(p, 40), progress=False,
        generator=torch.Generator().manual_seed(1),
        log_likelihood=block_sign_likelihood(blocks, beta=math.inf, variance=v))
    assert (guided.flatten(1).mean(1) > 0).float().mean().item() > 0.85
    assert torch.allclose(guided.abs(), U.expand(200, 1, 4, 4), atol=1e-3)


def test_block_mean_variance_interpolates_and_checks():
    v = lineardiff.BlockMeanVariance([10, 20], [1e-4, 1e-2])
    assert v(5) == 1e-4 and v(30) == 1e-2
    assert v(15) == pytest.approx(1e-3)
    assert "2 states" in repr(v)


BAD_VARIANCE = [
    (lambda: block_sign_likelihood(torch.ones(1, 1, 2, 2), spins=True), ValueError,
     "spins=True only with a variance"),
    (lambda: block_sign_likelihood(torch.ones(1, 1, 2, 2), beta=math.inf), ValueError, "beta"),
    (lambda: block_sign_likelihood(torch.ones(1, 1, 2, 2), variance=0.1), TypeError, "variance"),
    (lambda: block_sign_likelihood(torch.ones(1, 1, 1, 1), variance=lambda t: 0.0)(
        torch.ones(1, 1, 2, 2), 3), ValueError, r"variance\(3\) as a finite number > 0"),
    (lambda: lineardiff.block_mean_variance(lambda x, t, s: x, lineardiff.DDPM((1, 4, 4), T=5),
                                            torch.ones(2, 4, 4), 2),
     ValueError, r"x0 of shape \(N, 1, 4, 4\)"),
    (lambda: lineardiff.block_mean_variance(lambda x, t, s: x, lineardiff.DDPM((1, 4, 4), T=5),
                                            torch.ones(2, 1, 4, 4), 3),
     ValueError, "factor dividing"),
    (lambda: lineardiff.block_mean_variance(lambda x, t, s: x, lineardiff.DDPM((1, 4, 4), T=5),
                                            torch.ones(2, 1, 4, 4), 2, num=1),
     ValueError, "num"),
    (lambda: lineardiff.block_mean_variance(lambda x, t, s: x, "ddpm", torch.ones(2, 1, 4, 4), 2),
     TypeError, "diffusion process"),
    (lambda: lineardiff.BlockMeanVariance([2, 1], [1.0, 1.0]), ValueError, "increasing"),
    (lambda: lineardiff.BlockMeanVariance([1, 2], [1.0, 0.0]), ValueError, "> 0"),
]


@pytest.mark.parametrize("call, exc, match", BAD_VARIANCE)
def test_bad_variance_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_super_resolve_with_the_measured_block_variance_keeps_the_block_spins():
    # As above with the marginal likelihood (exact majority rule over the measured posterior
    # variance of a block mean, measured on 32 other Monte Carlo configurations; measured
    # 0.99 here). Guidance without a scale refuses the variance.
    from lineardiff.data import wolff_configurations
    from lineardiff.metrics import block_consistency, majority_blocks
    from lineardiff.pretrained import load_model

    model = load_model("ising16-ssd")
    held = torch.from_numpy(wolff_configurations(16, 32, seed=20_001).astype("float32"))
    v = lineardiff.block_mean_variance(model.denoiser, model.process, held.unsqueeze(1), 2,
                                       num=8, generator=torch.Generator().manual_seed(0))
    truth = wolff_configurations(16, 8, seed=20_000)
    coarse = majority_blocks(truth, 2, seed=0)
    y = 0.77 * torch.from_numpy(coarse.astype("float32")).unsqueeze(1)
    x = lineardiff.super_resolve(model, y, steps=20, seed=0, progress=False, guidance=1.0,
                                 block_variance=v)
    kept = block_consistency(torch.sign(x[:, 0]).numpy(), coarse, 2)["consistency"]
    assert kept >= 0.97
    with pytest.raises(ValueError, match="block_variance only with guidance > 0"):
        lineardiff.super_resolve(model, y, steps=20, progress=False, block_variance=v)
    with pytest.raises(TypeError, match="block_variance as a BlockMeanVariance"):
        lineardiff.super_resolve(model, y, steps=20, progress=False, guidance=1.0,
                                 block_variance=lambda t: 0.1)
