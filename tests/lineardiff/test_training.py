"""Training targets, loss weights and the grouped timestep sampler."""

import pytest
import torch

import linops
from lineardiff import (
    DDPM,
    BlurringDiffusion,
    ScaleSpaceDiffusion,
    default_prediction,
    loss_weight,
    sample_timesteps,
    training_target,
)


def test_eps_target_inverts_q_sample():
    for p in (DDPM((1, 8, 8), T=30), BlurringDiffusion((1, 8, 8), T=30)):
        assert default_prediction(p) == "eps"
        x0 = torch.randn(4, 1, 8, 8, dtype=torch.float64)
        noise = torch.randn(4, 1, 8, 8, dtype=torch.float64)
        t = torch.tensor([3, 10, 10, 30])
        xt = p.q_sample(x0, t, noise)
        target = training_target(p, x0, t, noise)
        sig = torch.tensor([p.sigma(int(v)) for v in t], dtype=torch.float64).reshape(4, 1, 1, 1)
        signal = torch.stack([p.signal_operator(int(v)).apply(x0[i]) for i, v in enumerate(t)])
        torch.testing.assert_close((xt - signal) / sig, target)
        torch.testing.assert_close(loss_weight(p, t), torch.ones(4, dtype=torch.float64))


def test_ssd_target_is_the_clean_image_at_the_next_resolution():
    p = ScaleSpaceDiffusion((1, 16, 16), n_levels=2, T=40)
    assert default_prediction(p) == "signal"
    t = p.resolution_changes()[0]  # x_t at 8 px, target at 16 px (state t - 1)
    x0 = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    target = training_target(p, x0, t, torch.zeros(2, *p.shape_at(t)))
    torch.testing.assert_close(target, x0)
    t2 = t + 3  # both at 8 px: the target is the antialiased bilinear resize of x0
    target = training_target(p, x0, torch.tensor([t2, t2]), torch.zeros(2, 1, 8, 8))
    want = torch.nn.functional.interpolate(x0, size=(8, 8), mode="bilinear", antialias=True)
    torch.testing.assert_close(target, want)
    # A_{t-1} x0 / a_{t-1} from the process itself
    torch.testing.assert_close(target, p.signal_operator(t2 - 1).apply(x0) / p.signal_scale(t2 - 1))


def test_min_snr_weight():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=100)
    t = torch.tensor([1, 50, 100])
    abar = p.alphas_cumprod[t - 1]
    want = torch.minimum(abar / (1 - abar), torch.tensor(5.0, dtype=torch.float64))
    torch.testing.assert_close(loss_weight(p, t), want)
    assert loss_weight(p, 1).item() == 5.0  # early steps: SNR is huge, the weight is capped
    # the floor: weights below it rise to it, the rest are unchanged
    torch.testing.assert_close(loss_weight(p, t, floor=1.0), want.clamp(min=1.0))
    assert loss_weight(p, 100).item() < 1.0 and loss_weight(p, 100, floor=1.0).item() == 1.0
    eps = DDPM((1, 8, 8), T=30)  # eps targets: the unweighted loss, floor or not
    assert loss_weight(eps, torch.tensor([30]), floor=2.0).tolist() == [1.0]
    with pytest.raises(ValueError, match=r"loss_weight: expected floor in \[0, 5\], got -1\.0"):
        loss_weight(p, t, floor=-1)


def test_grouped_timestep_sampler_follows_algorithm_4():
    p = ScaleSpaceDiffusion((1, 16, 16), n_levels=3, T=60)
    changes = set(p.resolution_changes())
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(p.T + 1)
    whole = 0
    for _ in range(3000):
        t = sample_timesteps(p, 16, generator=g)
        shapes = {p.shape_at(int(v)) for v in t}
        assert len(shapes) == 1  # one resolution per batch
        if set(t.tolist()) & changes:
            assert len(set(t.tolist())) == 1  # a transition step fills the batch
            whole += 1
        counts[t] += 1
    # a transition batch happens with probability |changes| / T (first draw uniform): 3 sigma
    prob = len(changes) / p.T
    sd = (3000 * prob * (1 - prob)) ** 0.5
    assert abs(whole - 3000 * prob) <= 3 * sd
    # plain sampler: uniform over 1..T
    flat = sample_timesteps(DDPM((1, 4, 4), T=10), 20000, generator=g)
    freq = torch.bincount(flat, minlength=11)[1:].double() / 20000
    assert (freq - 0.1).abs().max() <= 4 * (0.1 * 0.9 / 20000) ** 0.5


def test_transition_fraction_oversamples_the_resolution_change_steps():
    p = ScaleSpaceDiffusion((1, 16, 16), n_levels=3, T=60)
    changes = p.resolution_changes()
    g = torch.Generator().manual_seed(1)
    n, frac = 4000, 0.25
    hits = {c: 0 for c in changes}
    for _ in range(n):
        t = sample_timesteps(p, 4, generator=g, transition_fraction=frac)
        assert len({p.shape_at(int(v)) for v in t}) == 1
        if int(t[0]) in hits:
            assert len(set(t.tolist())) == 1
            hits[int(t[0])] += 1
    # each change step: frac / |changes| forced plus (1 - frac) / T from Algorithm 4; 4 s.d.
    prob = frac / len(changes) + (1 - frac) / p.T
    sd = (n * prob * (1 - prob)) ** 0.5
    for c, k in hits.items():
        assert abs(k - n * prob) <= 4 * sd, (c, k, n * prob)
    # 0 is Algorithm 4 exactly: the same draws as without the option
    a = [sample_timesteps(p, 4, generator=torch.Generator().manual_seed(2)) for _ in range(1)]
    b = [sample_timesteps(p, 4, generator=torch.Generator().manual_seed(2), transition_fraction=0)]
    assert torch.equal(a[0], b[0])
    with pytest.raises(ValueError, match=r"expected transition_fraction in \[0, 1\], got 1.5"):
        sample_timesteps(p, 4, transition_fraction=1.5)


def test_errors():
    p = ScaleSpaceDiffusion((1, 16, 16), n_levels=2, T=40)
    t = p.resolution_changes()[0]
    with pytest.raises(ValueError, match=r"expected one t per batch for a signal target"):
        training_target(p, torch.zeros(2, 1, 16, 16), torch.tensor([t + 3, 1]), None)
    with pytest.raises(ValueError, match=r"expected prediction 'signal' or 'eps', got 'v'"):
        loss_weight(p, 3, prediction="v")
    with pytest.raises(ValueError, match=r"sample_timesteps: expected batch_size >= 1, got 0"):
        sample_timesteps(p, 0)
    with pytest.raises(
        TypeError, match=r"training_target: expected a diffusion process, got Resize"
    ):
        training_target(linops.Resize((4, 4), (2, 2)), None, 1, None)
