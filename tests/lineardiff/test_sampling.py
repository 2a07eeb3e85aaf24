"""Ancestral sampling: oracle models return the data point; intermediate states have the
exact marginal law; respacing keeps the resolution changes."""

import math

import pytest
import torch

import lineardiff
import linops
from lineardiff import (
    DDPM,
    BlurringDiffusion,
    ScaleSpaceDiffusion,
    ancestral_sample,
    respace,
    upscale,
)


def _signal_oracle(process, x0):
    """Predicts B_{0->s} x0 exactly: the clean image carried to the requested state."""
    cache = {}

    def model(x, t, out_shape):
        key = tuple(out_shape)
        if key not in cache:
            # the base chain only depends on the resolution path; take the last state of that shape
            s = max(u for u in range(process.T + 1) if process.shape_at(u) == key)
            _, base = process.transition(0, s)
            cache[key] = x0 if base is None else base.apply(x0)
        return cache[key].expand(x.shape[0], *out_shape)

    return model


@pytest.mark.parametrize(
    "make",
    [lambda: DDPM((1, 8, 8), T=40), lambda: ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=40)],
)
@pytest.mark.parametrize("respaced", [False, True])
def test_oracle_returns_the_point(make, respaced):
    p = make()
    x0 = torch.linspace(-1, 1, 64, dtype=torch.float64).reshape(1, 1, 8, 8)
    steps = respace(p, 7) if respaced else None
    out = ancestral_sample(
        _signal_oracle(p, x0),
        p,
        4,
        timesteps=steps,
        progress=False,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(out, x0.expand(4, 1, 8, 8), rtol=0, atol=1e-12)


def test_eps_oracle_for_blurring_diffusion():
    p = BlurringDiffusion((1, 8, 8), T=30)
    x0 = torch.randn(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def eps_oracle(x, t, shape):  # the exact noise of x_t given x0
        tt = int(t[0])
        return (x - p.signal_operator(tt).apply(x0.expand_as(x))) / p.sigma(tt)

    out = ancestral_sample(
        eps_oracle,
        p,
        3,
        prediction="eps",
        timesteps=respace(p, 10),
        progress=False,
        dtype=torch.float64,
    )
    # the deblurring in signal_from_noise divides by d_t >= d_min: 1e-9 absolute
    torch.testing.assert_close(out, x0.expand(3, 1, 8, 8), rtol=0, atol=1e-9)


def test_intermediate_states_have_the_marginal_law():
    """With the oracle and an exact start x_T ~ q(x_T | x0), every visited x_s ~ q(x_s | x0)."""
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=30)
    x0 = torch.linspace(-1, 1, 64, dtype=torch.float64).reshape(1, 1, 8, 8)
    n = 20000
    g = torch.Generator().manual_seed(5)
    x_T = p.q_sample(x0.expand(n, 1, 8, 8), p.T, generator=g)
    seen = {}

    def callback(t, s, x, signal):
        if s in (20, 5):
            seen[s] = x.clone()

    steps = sorted(set(respace(p, 8)) | {20, 5}, reverse=True)
    ancestral_sample(
        _signal_oracle(p, x0),
        p,
        n,
        timesteps=steps,
        callback=callback,
        progress=False,
        generator=g,
        x_T=x_T,
        dtype=torch.float64,
    )
    for s, x in seen.items():
        mean = p.signal_operator(s).apply(x0).reshape(-1)
        flat = x.reshape(n, -1)
        sd = p.sigma(s)
        # mean within 5 standard errors per coordinate; variance within 5 relative SE sqrt(2/n)
        assert (flat.mean(0) - mean).abs().max() <= 5 * sd / math.sqrt(n)
        var = (flat - mean).square().mean(0)
        assert (var / sd**2 - 1).abs().max() <= 5 * math.sqrt(2 / n)


def test_respace_keeps_resolution_changes():
    p = ScaleSpaceDiffusion((1, 64, 64), n_levels=4, T=1000)
    steps = respace(p, 10)
    for t in p.resolution_changes():
        assert t in steps and t - 1 in steps
    assert (
        steps[0] == 1000
        and steps[-1] == 1
        and all(a > b for a, b in zip(steps, steps[1:], strict=False))
    )


def test_clip_and_errors():
    p = DDPM((1, 4, 4), T=10)
    big = lambda x, t, shape: torch.full((x.shape[0], *shape), 5.0)  # noqa: E731
    out = ancestral_sample(big, p, 2, clip=1.0, progress=False)
    torch.testing.assert_close(out, torch.ones(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"expected strictly decreasing timesteps from T=10"):
        ancestral_sample(big, p, 2, timesteps=[10, 10, 3], progress=False)
    with pytest.raises(
        ValueError,
        match=r"expected the model to return shape \(2, 1, 4, 4\) at t=10, got \(2, 4, 4\)",
    ):
        ancestral_sample(lambda x, t, s: torch.zeros(2, 4, 4), p, 2, progress=False)
    with pytest.raises(ValueError, match=r"expected prediction in \('signal', 'eps'\), got 'v'"):
        ancestral_sample(big, p, 2, prediction="v")
    with pytest.raises(ValueError, match=r"respace: expected num_steps in \[1, 10\], got 0"):
        respace(p, 0)
    ssd = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)
    t = ssd.resolution_changes()[0]
    with pytest.raises(ValueError, match=r"expected an invertible step between"):
        ssd.signal_from_noise(
            torch.zeros(1, *ssd.shape_at(t)), torch.zeros(1, *ssd.shape_at(t)), t, t - 1
        )


def test_public():
    assert {"ancestral_sample", "respace"} <= set(lineardiff.__all__)


@pytest.mark.parametrize("low", [8, 4])
def test_super_resolution_with_an_oracle_returns_the_truth(low):
    p = ScaleSpaceDiffusion((1, 16, 16), n_levels=3, T=60)
    x0 = torch.randn(2, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y = torch.nn.functional.interpolate(x0, size=(low, low), mode="bilinear", antialias=True)
    if low == 4:  # the chain of resizes, as the process defines the 4 px level
        y = torch.nn.functional.interpolate(
            torch.nn.functional.interpolate(x0, size=(8, 8), mode="bilinear", antialias=True),
            size=(4, 4),
            mode="bilinear",
            antialias=True,
        )
    seen = []
    out = upscale(
        _signal_oracle(p, x0),
        p,
        y,
        num_steps=10,
        progress=False,
        callback=lambda t, s, x, sig: seen.append(t),
    )
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)
    start = min(t for t in range(1, p.T + 1) if p.shape_at(t) == (1, low, low))
    assert seen[0] == start
    with pytest.raises(ValueError, match=r"super_resolution_entry: expected inputs at one of the process\'s coarser resolutions"):
        upscale(_signal_oracle(p, x0), p, torch.zeros(1, 1, 5, 5), progress=False)


def test_consistency_projection_makes_the_output_downsample_to_the_input():
    p = ScaleSpaceDiffusion((1, 16, 16), n_levels=2, T=40)
    y = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    blind = lambda x, t, shape: torch.zeros(x.shape[0], *shape, dtype=x.dtype)  # noqa: E731
    out = upscale(blind, p, y, num_steps=8, consistency=True, progress=False)
    down = torch.nn.functional.interpolate(out, size=(8, 8), mode="bilinear", antialias=True)
    torch.testing.assert_close(down, y, rtol=0, atol=1e-10)
    plain = upscale(blind, p, y, num_steps=8, progress=False)
    assert (
        torch.nn.functional.interpolate(plain, size=(8, 8), mode="bilinear", antialias=True) - y
    ).abs().max() > 0.1


def _ssd_oracle(p, x0):
    def oracle(x, t, shape):
        s = max(u for u in range(int(t[0])) if p.shape_at(u) == tuple(shape))
        return p.signal_target(x0, s + 1)
    return oracle


def test_ilvr_with_a_perfect_denoiser_returns_the_truth_and_its_input():
    p = ScaleSpaceDiffusion((1, 16, 16), n_levels=3, T=60)
    x0 = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    for size in (8, 4):
        y = p.low_res(x0, size)
        out = upscale(_ssd_oracle(p, x0), p, y, ilvr=True, progress=False,
                      generator=torch.Generator().manual_seed(0))
        # float64 rounding of ~60 steps of resizes and pseudo-inverses
        torch.testing.assert_close(out, x0, rtol=0, atol=1e-9)
        torch.testing.assert_close(p.low_res(out, size), y, rtol=0, atol=1e-9)


def test_ilvr_projection_is_exact_on_the_coarse_grid_whatever_the_model():
    # a useless model (zeros): without ILVR the output ignores y; with it D x_out = y exactly
    p = ScaleSpaceDiffusion((1, 16, 16), n_levels=2, T=40)
    y = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    zeros = lambda x, t, shape: torch.zeros(x.shape[0], *shape, dtype=x.dtype)  # noqa: E731
    gen = torch.Generator().manual_seed(3)
    free = upscale(zeros, p, y, progress=False, generator=gen)
    guided = upscale(zeros, p, y, ilvr=True, progress=False, generator=gen)
    assert (p.low_res(free, 8) - y).abs().max() > 0.5
    # pinv of the 16 -> 8 resize in float64: D D^+ = I to ~1e-12
    torch.testing.assert_close(p.low_res(guided, 8), y, rtol=0, atol=1e-10)


def test_ilvr_keeps_the_marginal_of_a_consistent_clean_image():
    """x_s + M^+ (a y + sigma_s M xi - M x_s) ~ q(x_s | x0) when D x0 = y (Monte Carlo)."""
    from lineardiff._sampling import _low_pass_replacement

    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=40)
    start = next(t for t in range(1, 41) if p.shape_at(t) == (1, 4, 4))
    x0 = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    y = p.low_res(x0, 4)
    s = start // 2
    n = 20000
    gen = torch.Generator().manual_seed(5)
    xs = p.q_sample(x0.expand(n, 1, 8, 8), s, generator=gen)
    # a state drawn from the wrong image: the guide must pull its seen part to y's
    wrong = p.q_sample(torch.zeros(n, 1, 8, 8, dtype=torch.float64), s, generator=gen)
    guide = _low_pass_replacement(p, y, start, gen)
    _, base = p.transition(s, start)
    base_pinv = linops.pinv(base)
    for state in (xs, wrong):
        g = guide(s, state)
        mean, var = g.mean(0), g.var(0)
        want = p.signal_scale(s) * x0[0]
        # the seen part follows y exactly; the unseen part keeps the state's: for the wrong
        # state only the seen part is corrected, so compare after the projection P = D^+ D
        se = p.sigma(s) / n**0.5
        seen = base_pinv.apply(base.apply(mean - want))  # the projection P = D^+ D
        assert seen.abs().max() < 5 * se  # 5 standard errors of a mean
        if state is xs:
            assert (mean - want).abs().max() < 5 * se
            # variance sigma_s^2 per pixel: 5 standard errors of a variance (sqrt(2/n))
            assert ((var / p.sigma(s) ** 2) - 1).abs().max() < 5 * (2 / n) ** 0.5
