"""pytest-benchmark of the cost of Scale Space Diffusion against DDPM at equal network width.

The settings and helpers are in ``cost_setup.py``; the full measurement with its report and
JSON is ``python benchmarks/cost_report.py``.

``LINEARDIFF_BENCH_THREADS=1 pytest benchmarks/bench_costs.py --benchmark-enable`` times, as
pytest-benchmark groups (about 4 minutes), each SSD benchmark against its DDPM twin of the group
and the train loop against the bare loop; the summary prints ``baseline / this`` (SSD's
speed-up; for the loop ``1 / (1 + overhead)``):

- **training step** (forward, MSE, backward, AdamW step on pre-made inputs): DDPM ``k``
  full-resolution steps, SSD ``k`` steps on a fixed cycle of routes in the proportions of its
  timestep sampler (:func:`route_cycle`);
- **sampling**: one run of ``sample_count`` images at equal step counts, with the share of it
  spent in the posterior of the resolution-change steps; the posterior draws of those steps
  alone against the whole run;
- **training loop**: :func:`lineardiff.train` against the bare step on the same timesteps.

The runs are smaller than the report's: batch ``LINEARDIFF_BENCH_BATCH`` (2) at 64 px and
``LINEARDIFF_BENCH_BATCH16`` (16) at 16 px. Under the default ``--benchmark-disable`` every
benchmark runs once on a shortened workload (a smoke test: a few minutes on one thread, most of
it building and running the 64 px networks once).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest
import torch

import lineardiff

# cost_setup.py sits next to this file; pytest's importlib mode does not put this folder on
# sys.path (running a script does)
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from cost_setup import (  # noqa: E402
    StepTimer,
    bare_loop,
    bare_sequence_inputs,
    bare_step,
    expected_flops,
    fake_data,
    make_bare,
    route_cycle,
    route_inputs,
    route_weights,
    run_train,
    sample,
    sampling_steps,
    setting_16,
    setting_64,
    train_sequence,
)


def change_posteriors(setting, timesteps, n: int) -> list:
    """The posteriors of the resolution-change steps of a sampling run at batch ``n``."""
    process = setting.ssd
    pairs = zip(timesteps, [*timesteps[1:], 0], strict=True)
    g = torch.Generator().manual_seed(3)
    posts = []
    for t, s in pairs:
        if s > 0 and process.shape_at(t) != process.shape_at(s):
            x_t = torch.randn(n, *process.shape_at(t), generator=g)
            signal = torch.randn(n, *process.shape_at(s), generator=g)
            posts.append(process.posterior_from_signal(x_t, signal, t, s))
    return posts


def _smoke(config) -> bool:
    """True under ``--benchmark-disable`` (each benchmark runs once: shorten the workload)."""
    session = getattr(config, "_benchmarksession", None)
    return session is None or session.disabled


@pytest.fixture(scope="module")
def settings():
    return {"64px": setting_64(), "16px": setting_16()}


@pytest.fixture(scope="module")
def flops(settings):
    """:func:`expected_flops` of each setting (FLOP counting runs the networks: once each)."""
    return {name: expected_flops(setting) for name, setting in settings.items()}


CASES = [(s, k) for s in ("64px", "16px") for k in ("ddpm", "ssd")]


def _case_id(case):
    return f"{case[1]}{case[0][:-2]}"


def _tag(benchmark, group, kind, baseline_test, setting_name):
    benchmark.group = f"{group} {setting_name}"
    benchmark.extra_info["baseline"] = (
        None if kind == "ddpm" else f"{baseline_test}[ddpm{setting_name[:-2]}]"
    )


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_train_step(benchmark, settings, flops, case, request):
    """DDPM: ``k`` full-resolution steps; SSD: ``k`` steps on a cycle of routes in the
    proportions of its timestep sampler (``k = 16`` at 64 px, ``20`` at 16 px)."""
    name, kind = case
    setting = settings[name]
    weights = route_weights(setting.ssd, setting.transition_fraction)
    k = 16 if name == "64px" else 20
    cycle = route_cycle(weights, k)
    if _smoke(request.config):
        cycle = list(dict.fromkeys(cycle))  # each route once
    process, net = setting.pair(kind)
    routes = cycle if kind == "ssd" else [next(iter(route_weights(process)))] * len(cycle)
    inputs = {r: route_inputs(process, r, setting.batch) for r in set(routes)}
    model, opt = make_bare(net, setting.lr)
    _tag(benchmark, "train step", kind, "test_train_step", name)
    benchmark.extra_info["cycle"] = {f"{a}->{b}": routes.count((a, b)) for a, b in set(routes)}
    benchmark.extra_info["expected_flop_ratio"] = flops[name]["ratio"]

    def run():
        for r in routes:
            bare_step(model, opt, *inputs[r])

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_sampling(benchmark, settings, case, request):
    """One sampling run of ``sample_count`` images at equal step counts."""
    name, kind = case
    setting = settings[name]
    steps = sampling_steps(setting, 3 if _smoke(request.config) else None)[kind]
    _tag(benchmark, "sampling", kind, "test_sampling", name)
    benchmark.extra_info.update(steps=len(steps), images=setting.sample_count)
    timer = StepTimer(setting.pair(kind)[0])
    wall = []

    def run():
        start = time.perf_counter()
        out = sample(setting, kind, steps, setting.sample_count, timer=timer)
        wall.append(time.perf_counter() - start)
        return out

    out = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert out.shape == (setting.sample_count, *setting.ssd.shape_at(0))
    if kind == "ssd":
        share = timer.change / sum(wall)
        benchmark.extra_info["posterior_noise_share"] = share
        print(f"\n{name}: posterior at resolution changes {100 * share:.2f} % of sampling")


@pytest.mark.parametrize("name", ["64px", "16px"])
def test_posterior_noise_at_changes(benchmark, settings, name, request):
    """The posterior draws of the resolution-change steps of one sampling run, against the
    whole SSD sampling run (the summary's factor is 1 / share)."""
    setting = settings[name]
    steps = sampling_steps(setting, 3 if _smoke(request.config) else None)["ssd"]
    posts = change_posteriors(setting, steps, setting.sample_count)
    g = torch.Generator().manual_seed(0)
    benchmark.group = f"sampling {name}"
    benchmark.extra_info["baseline"] = f"test_sampling[ssd{name[:-2]}]"
    benchmark.extra_info["changes"] = len(posts)
    out = benchmark(lambda: [p.sample(g) for p in posts])
    assert len(out) == len(setting.ssd.resolution_changes())


LOOP_STEPS = {"64px": 8, "16px": 10}


@pytest.fixture(scope="module")
def sequences(settings, request):
    """Per setting and process: the data, and the timesteps ``lineardiff.train`` draws."""
    out = {}
    for name, kind in CASES:
        setting = settings[name]
        steps = 2 if _smoke(request.config) else LOOP_STEPS[name]
        process, _ = setting.pair(kind)
        data = fake_data(process, 256)
        ts = train_sequence(setting, kind, steps, data)
        out[name, kind] = (data, ts, bare_sequence_inputs(setting, kind, ts))
    return out


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bare_loop(benchmark, settings, sequences, case):
    name, kind = case
    setting = settings[name]
    _, ts, inputs = sequences[name, kind]
    benchmark.group = f"train loop {name} {kind}"
    benchmark.extra_info["steps"] = len(ts)
    benchmark.pedantic(
        bare_loop, args=(setting, kind, inputs), rounds=3, iterations=1, warmup_rounds=1
    )


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_train_loop(benchmark, settings, sequences, case):
    """``lineardiff.train`` for the same steps (a whole call: set-up included)."""
    name, kind = case
    setting = settings[name]
    data, ts, _ = sequences[name, kind]
    benchmark.group = f"train loop {name} {kind}"
    benchmark.extra_info["baseline"] = f"test_bare_loop[{_case_id(case)}]"
    res = benchmark.pedantic(
        run_train, args=(setting, kind, len(ts), data), rounds=3, iterations=1, warmup_rounds=1
    )
    assert res.step == len(ts)


def test_route_weights_follow_the_sampler():
    """:func:`route_weights` against draws of ``lineardiff.sample_timesteps`` (shipped 16 px
    process, transition_fraction 0.1), each route within 4 standard errors."""
    setting = setting_16(batch=1)
    f, process, n = setting.transition_fraction, setting.ssd, 600
    weights = route_weights(process, f)
    assert math.isclose(sum(weights.values()), 1.0)
    g = torch.Generator().manual_seed(0)
    counts = dict.fromkeys(weights, 0)
    for _ in range(n):
        t = int(lineardiff.sample_timesteps(process, 1, generator=g, transition_fraction=f)[0])
        counts[process.shape_at(t)[-1], process.shape_at(t - 1)[-1]] += 1
    for route, w in weights.items():
        assert abs(counts[route] / n - w) <= 4 * math.sqrt(w * (1 - w) / n), (route, counts)


def test_route_cycle_keeps_the_proportions():
    w = route_weights(lineardiff.ScaleSpaceDiffusion((1, 64, 64), n_levels=4))
    assert route_cycle(w, 16).count((64, 64)) == 7  # 438 / 1000 of 16, as in bench_models.py
    assert len(route_cycle(w, 16)) == 16


def test_expected_flop_ratio_is_below_one(settings, flops):
    for name, setting in settings.items():
        fl = flops[name]
        w = route_weights(setting.ssd, setting.transition_fraction)
        top = max(r[1] for r in w)
        # at least the share of full-resolution steps, at most the full network
        assert w[top, top] < fl["ratio"] < 1
