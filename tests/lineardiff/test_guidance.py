"""Likelihood guidance (ancestral_sample's log_likelihood): the Tweedie correction, an oracle
with a perfect denoiser, which states are guided, and bad input."""

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
