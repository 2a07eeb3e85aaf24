"""Flexi-UNet against the full UNet at 64 px: FLOPs and time per route, and per training step.

The network is the SSD paper's CelebA-64 configuration (ADM: channel_mult (1, 2, 3, 4), two
ResBlocks per level, attention at 16 and 8 px, 4 heads) at reduced width (32 base channels
instead of 128), with 4 pyramid levels (64, 32, 16, 8). A training step of Scale Space Diffusion
draws one timestep t uniformly; under the ConvexDecay_0.5 resolution schedule (T = 1000) the
input is at 64 px for t in [0, 437], 32 for [438, 749], 16 for [750, 936] and 8 for [937, 999];
the three steps where the resolution changes (t = 438, 750, 937) predict at the next finer
level, so the decoder runs one level further. The expected cost of a step is the average of
the route costs over t; the baseline is the full UNet at 64 px on every step (DDPM).

Run
---
``python benchmarks/bench_models.py`` prints the table (FLOPs per route, forward and
forward+backward times, expected FLOP and time ratios); ``--help`` lists the options.

``pytest benchmarks/bench_models.py --benchmark-enable`` times each route (groups "forward"
and "forward+backward", compared with the full UNet); add ``-m slow`` for the expected-step
benchmark, which runs the routes in their schedule proportions (16 steps: 7 at 64 px, 5 at 32,
3 at 16, 1 at 8, i.e. the weights 0.438 / 0.312 / 0.187 / 0.063 to within 0.001). On a
shared two-core machine set ``LINEARDIFF_BENCH_THREADS=1``: two threads competing with
another process slow every call by an erratic factor. ``LINEARDIFF_BENCH_WIDTH`` (32) and
``LINEARDIFF_BENCH_BATCH`` (2) size the pytest runs.

The paper reports 38.48 vs 60.05 GFLOPs (forward, per image) for SSD 4L vs DDPM. This full
UNet at width 128 counts 60.6 GFLOPs; its Flexi-UNet routes average 42.2 (ratio 0.70). The
authors' code stops each route one decoder block early (it slices ``output_blocks[:end]``,
which drops the last block of the output level, the one that takes the level's first skip);
removing that block from our routes gives 39.0 GFLOPs (0.64), the paper's figure (the
script prints this ratio too; ``--base-channels 128`` for the paper's width). We run the
full decoder level, as the paper's text and Fig. 3 describe and as the top route must to equal
the UNet.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models import FlexiUNet, UNet, count_flops, count_parameters
from models._flops import _EXTRA_FORMULAS

IMAGE_SIZE = 64
CONFIG = dict(
    base_channels=int(os.environ.get("LINEARDIFF_BENCH_WIDTH", "32")),
    channel_mult=(1, 2, 3, 4),
    num_res_blocks=2,
    attention_levels=(2, 3),
    num_heads=4,
    num_groups=32,
)
BATCH = int(os.environ.get("LINEARDIFF_BENCH_BATCH", "2"))
# (input size, output size); every same-resolution route and every transition
ROUTES = [(64, 64), (32, 64), (32, 32), (16, 32), (16, 16), (8, 16), (8, 8)]


# -- schedule ---------------------------------------------------------------------------------


def convex_decay_sizes(num_steps: int, gamma: float, resolutions) -> list[int]:
    """Resolution r(t) of SSD's ConvexDecay_gamma schedule for t = 0 .. num_steps - 1.

    ``x = 1 - (1 - t / (T - 1)) ** gamma``; level index ``n - 1 - min(floor(x n), n - 1)`` into
    the resolutions sorted ascending (design note, section 3.2).
    """
    ascending = sorted(resolutions)
    n = len(ascending)
    sizes = []
    for t in range(num_steps):
        x = 1 - (1 - t / (num_steps - 1)) ** gamma
        sizes.append(ascending[n - 1 - min(math.floor(x * n), n - 1)])
    return sizes


def route_weights(num_steps: int = 1000, gamma: float = 0.5, resolutions=(64, 32, 16, 8)):
    """Fraction of timesteps on each (input size, output size) route; t = 0 predicts at r(0)."""
    sizes = convex_decay_sizes(num_steps, gamma, resolutions)
    weights: dict[tuple[int, int], float] = {}
    for t, size in enumerate(sizes):
        route = (size, sizes[max(t - 1, 0)])
        weights[route] = weights.get(route, 0.0) + 1.0 / num_steps
    return weights


# -- models and steps -------------------------------------------------------------------------


def build(base_channels: int | None = None):
    config = dict(CONFIG) if base_channels is None else {**CONFIG, "base_channels": base_channels}
    flexi = FlexiUNet(3, image_size=IMAGE_SIZE, **config)
    unet = UNet(3, **config)
    return flexi, unet


def make_call(flexi, unet, route, batch):
    """A forward call on ``route`` (``None``: the full UNet at 64 px) and its input tensors."""
    s_in, s_out = (IMAGE_SIZE, IMAGE_SIZE) if route is None else route
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, s_in, s_in, generator=g)
    t = torch.full((batch,), 500)
    fn = unet if route is None else functools.partial(flexi, out_size=s_out)
    return fn, x, t


def forward(fn, x, t):
    with torch.no_grad():
        return fn(x, t)


def train_step(model, fn, x, t):
    """Forward, an x0-prediction style loss, backward (no optimiser)."""
    model.zero_grad(set_to_none=True)
    fn(x, t).square().mean().backward()


# -- pytest-benchmark -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models():
    return build()


def _route_id(route):
    return "unet64" if route is None else f"{route[0]}to{route[1]}"


ALL = [None, *ROUTES]


def _tag(benchmark, group, route):
    benchmark.group = group
    base = f"test_{group.replace('+', '_')}[unet64]"
    benchmark.extra_info["baseline"] = None if route is None else base


@pytest.mark.parametrize("route", ALL, ids=_route_id)
def test_forward(benchmark, models, route):
    flexi, unet = models
    fn, x, t = make_call(flexi, unet, route, BATCH)
    _tag(benchmark, "forward", route)
    benchmark.extra_info["gflops"] = count_flops(fn, x, t) / 1e9
    out = benchmark(forward, fn, x, t)
    size = IMAGE_SIZE if route is None else route[1]
    assert out.shape == (BATCH, 3, size, size)


@pytest.mark.parametrize("route", ALL, ids=_route_id)
def test_forward_backward(benchmark, models, route):
    flexi, unet = models
    fn, x, t = make_call(flexi, unet, route, BATCH)
    model = unet if route is None else flexi
    _tag(benchmark, "forward+backward", route)
    benchmark.extra_info["gflops"] = count_flops(fn, x, t, backward=True) / 1e9
    benchmark(train_step, model, fn, x, t)


# 16 steps in the schedule's proportions (transitions, 3 steps in 1000, left out)
CYCLE = [(64, 64)] * 7 + [(32, 32)] * 5 + [(16, 16)] * 3 + [(8, 8)]


@pytest.mark.slow
@pytest.mark.parametrize("network", ["unet64", "flexi"])
def test_expected_training_step(benchmark, models, network):
    flexi, unet = models
    calls = [make_call(flexi, unet, None if network == "unet64" else r, BATCH) for r in CYCLE]
    model = unet if network == "unet64" else flexi
    benchmark.group = "16 training steps, ConvexDecay_0.5"
    benchmark.extra_info["baseline"] = (
        None if network == "unet64" else ("test_expected_training_step[unet64]")
    )

    def cycle():
        for fn, x, t in calls:
            train_step(model, fn, x, t)

    benchmark(cycle)


def test_schedule_matches_the_quoted_boundaries():
    sizes = convex_decay_sizes(1000, 0.5, (64, 32, 16, 8))
    expected = [64] * 438 + [32] * 312 + [16] * 187 + [8] * 63  # [0,437], [438,749], ...
    assert sizes == expected
    weights = route_weights()
    assert weights[(32, 64)] == weights[(16, 32)] == weights[(8, 16)] == 1 / 1000
    assert math.isclose(sum(weights.values()), 1.0)
    # the 16-step cycle reproduces the per-level weights to within 0.001
    for size in (64, 32, 16, 8):
        level = sum(w for (s_in, _), w in weights.items() if s_in == size)
        assert abs(CYCLE.count((size, size)) / 16 - level) <= 1e-3


def test_expected_flop_ratio_is_below_one(models):
    flexi, unet = models
    weights = route_weights()
    full = count_flops(*make_call(flexi, unet, None, 1), backward=True)
    expected = sum(
        w * count_flops(*make_call(flexi, unet, r, 1), backward=True) for r, w in weights.items()
    )
    # at least the share of full-resolution steps, at most the full network
    assert weights[(64, 64)] < expected / full < 1


def flops_without_last_decoder_block(flexi, route) -> tuple[int, int]:
    """Forward FLOPs of ``route`` at batch 1, with and without the last decoder block of the
    output level (the block the authors' code leaves out, see the module docstring)."""
    s_in, s_out = route
    level_out = flexi.resolutions.index(s_out)
    counter = FlopCounterMode(display=False, custom_mapping=dict(_EXTRA_FORMULAS))
    with counter, torch.no_grad():
        flexi(torch.zeros(1, 3, s_in, s_in), torch.zeros(1), out_size=s_out)
    counts = counter.get_flop_counts()
    total = sum(counts["Global"].values())
    last = f"FlexiUNet.decoder.{level_out}.blocks.{flexi.num_res_blocks}"
    return total, total - sum(counts[last].values())


# -- script mode ------------------------------------------------------------------------------


def _median_times(calls, repeats):
    """Median seconds per call, the calls interleaved round by round (load drifts even out)."""
    times = {name: [] for name in calls}
    for fn in calls.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-channels", type=int, default=CONFIG["base_channels"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    flexi, unet = build(args.base_channels)
    weights = route_weights()
    rows = {}
    timed_fwd, timed_train = {}, {}
    for route in ALL:
        fn, x, t = make_call(flexi, unet, route, args.batch)
        model = unet if route is None else flexi
        rows[route] = dict(
            weight=1.0 if route is None else weights[route],
            fwd_flops=count_flops(fn, x, t),
            train_flops=count_flops(fn, x, t, backward=True),
        )
        timed_fwd[route] = functools.partial(forward, fn, x, t)
        timed_train[route] = functools.partial(train_step, model, fn, x, t)
    fwd_times = _median_times(timed_fwd, args.repeats)
    train_times = _median_times(timed_train, args.repeats)

    print(
        f"FlexiUNet vs UNet, {IMAGE_SIZE} px, pyramid {flexi.resolutions}, base {args.base_channels}, "
        f"channel_mult {CONFIG['channel_mult']}, attention at 16 and 8 px; batch {args.batch}, "
        f"{args.threads} thread(s), median of {args.repeats}"
    )
    print(f"parameters: FlexiUNet {count_parameters(flexi):,}, UNet {count_parameters(unet):,}")
    header = (
        f"{'route':<10}{'weight':>8}{'fwd GFLOP':>11}{'f+b GFLOP':>11}"
        f"{'fwd ms':>9}{'f+b ms':>9}{'f+b vs full':>13}"
    )
    print(header)
    print("-" * len(header))
    full_train = train_times[None]
    for route in ALL:
        row = rows[route]
        name = "full UNet" if route is None else f"{route[0]}->{route[1]}"
        print(
            f"{name:<10}{row['weight']:>8.3f}{row['fwd_flops'] / 1e9:>11.3f}"
            f"{row['train_flops'] / 1e9:>11.3f}{fwd_times[route] * 1e3:>9.1f}"
            f"{train_times[route] * 1e3:>9.1f}{train_times[route] / full_train:>13.3f}"
        )
    expected = {
        key: sum(w * value[r] for r, w in weights.items())
        for key, value in dict(
            fwd_flops={r: rows[r]["fwd_flops"] for r in ROUTES},
            train_flops={r: rows[r]["train_flops"] for r in ROUTES},
            fwd_time={r: fwd_times[r] for r in ROUTES},
            train_time={r: train_times[r] for r in ROUTES},
        ).items()
    }
    result = dict(
        fwd_flop_ratio=expected["fwd_flops"] / rows[None]["fwd_flops"],
        train_flop_ratio=expected["train_flops"] / rows[None]["train_flops"],
        fwd_time_ratio=expected["fwd_time"] / fwd_times[None],
        train_time_ratio=expected["train_time"] / full_train,
    )
    print("-" * len(header))
    print(
        f"expected step (ConvexDecay_0.5, T=1000): forward {expected['fwd_flops'] / 1e9:.3f} vs "
        f"{rows[None]['fwd_flops'] / 1e9:.3f} GFLOP (ratio {result['fwd_flop_ratio']:.3f}); "
        f"forward+backward {expected['train_flops'] / 1e9:.3f} vs "
        f"{rows[None]['train_flops'] / 1e9:.3f} GFLOP (ratio {result['train_flop_ratio']:.3f})"
    )
    print(
        f"expected step time: forward {expected['fwd_time'] * 1e3:.1f} vs "
        f"{fwd_times[None] * 1e3:.1f} ms (ratio {result['fwd_time_ratio']:.3f}); "
        f"forward+backward {expected['train_time'] * 1e3:.1f} vs {full_train * 1e3:.1f} ms "
        f"(ratio {result['train_time_ratio']:.3f})"
    )
    full_1 = count_flops(*make_call(flexi, unet, None, 1))
    short = sum(w * flops_without_last_decoder_block(flexi, r)[1] for r, w in weights.items())
    result["authors_routing_fwd_flop_ratio"] = short / full_1
    print(
        "routes without the last decoder block of the output level (the authors' code): "
        f"forward FLOP ratio {result['authors_routing_fwd_flop_ratio']:.3f}"
    )
    print("paper (CelebA-64, SSD 4L vs DDPM): 38.48 vs 60.05 GFLOP (0.64); 52.38 vs 70.71 h (0.74)")
    return result


if __name__ == "__main__":
    main()
