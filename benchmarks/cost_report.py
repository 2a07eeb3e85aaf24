"""Cost of Scale Space Diffusion against DDPM at equal network width: training, sampling, loop.

The standalone report (the pytest-benchmark version of the same quantities is
``bench_costs.py``); the two settings - ``64px`` (4 levels, the network of ``bench_models.py``
at reduced width) and ``16px`` (the shipped ``ising16-ssd`` and its DDPM twin) - are described
in ``cost_setup.py``.

What is measured, always as a ratio SSD / DDPM (or loop / bare) from the same run, the two
sides interleaved call by call (training steps: each SSD call next to a DDPM call; sampling
runs: ABBA order), since on a shared machine the load of other processes comes in bursts
of seconds that would otherwise fall on one side only:

- **training step** (forward, MSE, backward, AdamW step on pre-made inputs): per
  route ``(input size, output size)``, then averaged with the route weights of SSD's timestep
  sampler (:func:`route_weights`, the exact law of :func:`lineardiff.sample_timesteps`: level
  fractions of ConvexDecay_0.5 and the resolution-increasing routes); the same average of the
  FLOPs (``models.count_flops``, forward + backward);
- **a real sequence of training steps**: :func:`lineardiff.train` for ``K`` steps (its own
  sampler draws the routes), each step followed (in ``train``'s callback) by the bare step of
  the same shapes on a copy of the network and, for SSD, a bare DDPM step (:func:`paired_train`);
  with ``K`` = 10 the route mix of one sequence is far from the average, so these ratios
  check the per-route average rather than replace it;
- **sampling time per image** at equal step counts: SSD with ``respace(ssd, k)`` (which keeps
  every resolution change and the step before it), DDPM with the same number of steps; the
  share of it spent in the posterior of the resolution-change steps (the only steps whose
  posterior noise is not a scaled identity: ``linops.sqrtm`` of ``I - rho c^2 R^T R``), timed
  from the denoiser's return to the end of the step (``cost_setup.StepTimer``);
- **training-loop overhead**: ``lineardiff.train`` (data indexing, timestep draws, ``q_sample``,
  targets, loss weights, gradient clipping, EMA, the per-step loss read-back) against the bare
  step on the same shapes, in per cent; and what its parts cost alone (data and
  :func:`lineardiff.denoising_loss` without the network, EMA, gradient clipping).

Targets (the evaluation issue): training time ratio <= 0.6 (paper: 0.74), sampling time ratio
<= 0.5, posterior-noise share <= 2 %, loop overhead <= 10 %.

Run
---
``python benchmarks/cost_report.py`` measures everything (one thread; 11 to 16 minutes on a
two-core machine shared with two training jobs), prints the table and writes
``benchmarks/results/costs.json``; ``--help`` lists the options (``--quick``: two minutes,
too few steps for the loop overhead; ``--only 16px``; ``--smoke``: a check that it runs,
80 s here, numbers meaningless).

Measured (one CPU thread, the machine shared with two training jobs; SSD / DDPM): training
step 0.72 at 64 px / 4 levels and 0.75 at the shipped 16 px configuration (FLOPs 0.70 and
0.73), sampling per image 0.69 and 0.79 (FLOPs 0.68 and 0.74); posterior noise at the
resolution changes 0.09 % and 0.03 % of sampling (then timed as ``Posterior.sample`` alone; the
StepTimer adds the posterior mean); loop overhead 1 % (DDPM) and -1 % (SSD,
noise) at 64 px, 2 % and 4 % at 16 px. The training and sampling targets are missed for a
structural reason: with ADM's channel_mult (1, 2, 3, 4) the width doubles as the resolution
halves, so the 32 px route still costs 0.63 of the full network (7.38 of 11.70 GFLOP), and
ConvexDecay_0.5 keeps 44 % of the steps at full resolution; the weighted average cannot fall
far below 0.7 (the paper's 0.74). Sampling visits the timesteps in the same proportions.
"""

from __future__ import annotations

import argparse
import copy
import csv
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from cost_setup import (
    WIDTH_64,
    Setting,
    StepTimer,
    bare_sequence_inputs,
    bare_step,
    expected_flops,
    fake_data,
    make_bare,
    route_inputs,
    route_weights,
    sample,
    sampling_steps,
    setting_16,
    setting_64,
    train_config,
    train_sequence,
)

import lineardiff
from models import count_flops, count_parameters

TARGETS = dict(train_time_ratio=0.6, sample_time_ratio=0.5, noise_share=0.02, loop_overhead=0.10)
PAPER_TRAIN_TIME_RATIO = 0.74  # 52.38 vs 70.71 GPU hours, CelebA-64, SSD 4L vs DDPM
RESULTS = Path(__file__).parent / "results" / "costs.json"


def sampling_flops(setting: Setting, kind: str, timesteps) -> int:
    """Forward FLOPs per image of a sampling run (one network call per step)."""
    process, net = setting.pair(kind)
    prediction = lineardiff.default_prediction(process)
    cache: dict = {}
    total = 0
    for t, s in zip(timesteps, [*timesteps[1:], 0], strict=True):
        route = (process.shape_at(t)[-1], process.shape_at(s if prediction == "signal" else t)[-1])
        if route not in cache:
            x = torch.zeros(1, *process.shape_at(t))
            out_shape = process.shape_at(s) if prediction == "signal" else process.shape_at(t)
            fn = functools.partial(lineardiff.as_denoiser(net), out_shape=out_shape)
            cache[route] = count_flops(fn, x, torch.full((1,), t))
        total += cache[route]
    return total


def _median_times(calls: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each call, the calls interleaved round by round, after one warm-up each."""
    times = {name: [] for name in calls}
    for fn in calls.values():
        fn()
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def _spread(values) -> dict:
    return dict(median=statistics.median(values), min=min(values), max=max(values))


def measure_train_steps(setting: Setting, repeats: int) -> dict:
    """Bare step time of each SSD route over a DDPM step timed next to it, weighted.

    Every SSD route call is paired with a DDPM call just before or after it (the order
    alternates by round); the ratio of a route is the median of its pairs, and the expected
    ratio the route weights' average of those medians (per round: the spread).
    """
    weights = route_weights(setting.ssd, setting.transition_fraction)
    (ddpm_route,) = route_weights(setting.ddpm)
    ddpm_model, ddpm_opt = make_bare(setting.unet, setting.lr)
    ddpm_call = functools.partial(
        bare_step, ddpm_model, ddpm_opt, *route_inputs(setting.ddpm, ddpm_route, setting.batch)
    )
    model, opt = make_bare(setting.flexi, setting.lr)
    calls = {
        r: functools.partial(bare_step, model, opt, *route_inputs(setting.ssd, r, setting.batch))
        for r in weights
    }
    ddpm_call()
    for fn in calls.values():
        fn()  # warm-up (and the optimiser's state)
    ratios: dict = {r: [] for r in weights}
    seconds: dict = {r: [] for r in weights}
    ddpm_seconds = []
    for i in range(repeats):
        for r, fn in calls.items():
            pair = {}
            for name, call in (("ddpm", ddpm_call), ("ssd", fn))[:: 1 if i % 2 else -1]:
                start = time.perf_counter()
                call()
                pair[name] = time.perf_counter() - start
            ratios[r].append(pair["ssd"] / pair["ddpm"])
            seconds[r].append(pair["ssd"])
            ddpm_seconds.append(pair["ddpm"])
    ratio = {r: statistics.median(v) for r, v in ratios.items()}
    per_round = [sum(w * ratios[r][i] for r, w in weights.items()) for i in range(repeats)]
    fl = expected_flops(setting)
    fwd = expected_flops(setting, backward=False)
    return dict(
        routes={
            f"{r[0]}->{r[1]}": dict(
                weight=w,
                seconds=statistics.median(seconds[r]),
                vs_ddpm=ratio[r],
                train_gflop_per_image=fl["per_route"][r] / 1e9,
                fwd_gflop_per_image=fwd["per_route"][r] / 1e9,
            )
            for r, w in weights.items()
        },
        ddpm_seconds=statistics.median(ddpm_seconds),
        time_ratio=sum(w * ratio[r] for r, w in weights.items()),
        time_ratio_per_round=_spread(per_round),
        train_flop_ratio=fl["ratio"],
        fwd_flop_ratio=fwd["ratio"],
        ddpm_train_gflop_per_image=fl["ddpm"] / 1e9,
        ssd_train_gflop_per_image=fl["ssd"] / 1e9,
    )


def paired_train(setting: Setting, kind: str, prepared: dict) -> dict[str, list[float]]:
    """One ``lineardiff.train`` run, each of its steps paired with bare steps on twins.

    ``train``'s callback (after every step; not part of the step's logged seconds) runs the
    bare step on a copy of the network for the same shapes, and for SSD also a DDPM bare step,
    so that each step is compared with its neighbours in time: bursts of load from other
    processes last seconds and would otherwise land on one side of the comparison.
    """
    data, ts, inputs = prepared[kind]
    twins = {k: make_bare(copy.deepcopy(setting.pair(k)[1]), setting.lr) for k in prepared}
    others = ["ddpm"] if kind == "ssd" else []
    bare: dict[str, list[float]] = {k: [] for k in [kind, *others]}

    def callback(step, net, ema):
        # alternate the order, so that the train step follows each kind of bare step as often
        for k in list(bare)[:: 1 if step % 2 else -1]:
            start = time.perf_counter()
            bare_step(*twins[k], *prepared[k][2][step - 1])
            bare[k].append(time.perf_counter() - start)

    process, net = setting.pair(kind)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.csv"
        lineardiff.train(
            net,
            process,
            data,
            train_config(setting, kind, len(ts)),
            progress=False,
            log_csv=path,
            callback=callback,
            callback_every=1,
        )
        with open(path, encoding="utf-8") as f:
            train = [float(row["seconds"]) for row in csv.DictReader(f)]
    return {"train": train, **{f"bare_{k}": v for k, v in bare.items()}}


def measure_loops(setting: Setting, steps: int, rounds: int) -> dict:
    """``lineardiff.train`` against the bare step on the same shapes, step by step (SSD, DDPM)."""
    prepared = {}
    for kind in ("ssd", "ddpm"):
        process, _ = setting.pair(kind)
        data = fake_data(process)
        ts = train_sequence(setting, kind, steps, data)  # also warms both code paths up
        prepared[kind] = (data, ts, bare_sequence_inputs(setting, kind, ts))
    runs = {kind: [] for kind in prepared}
    for _ in range(rounds):
        for kind in prepared:
            runs[kind].append(paired_train(setting, kind, prepared))
    out = {}
    for kind, rs in runs.items():
        _, ts, _ = prepared[kind]
        process, _ = setting.pair(kind)
        mix: dict[str, int] = {}
        for t in ts:
            v = int(t[0])
            key = f"{process.shape_at(v)[-1]}->{process.shape_at(v - 1)[-1]}"
            mix[key] = mix.get(key, 0) + 1
        out[kind] = dict(
            steps=steps,
            route_mix=mix,
            train_seconds_per_step=statistics.median(sum(r["train"]) for r in rs) / steps,
            bare_seconds_per_step=statistics.median(sum(r[f"bare_{kind}"]) for r in rs) / steps,
            # per run: total train time over total bare time of the paired steps
            overhead=_spread([sum(r["train"]) / sum(r[f"bare_{kind}"]) - 1 for r in rs]),
        )
    ssd, ddpm = runs["ssd"], runs["ddpm"]
    # the sampler's sequence against DDPM steps interleaved with it, bare steps on both sides
    out["bare_time_ratio"] = _spread([sum(r["bare_ssd"]) / sum(r["bare_ddpm"]) for r in ssd])
    # whole train() steps: SSD's run against the DDPM run of the same round
    out["train_time_ratio"] = _spread(
        [sum(a["train"]) / sum(b["train"]) for a, b in zip(ssd, ddpm, strict=True)]
    )
    return out


def measure_overhead_parts(setting: Setting, kind: str, repeats: int = 20) -> dict:
    """Milliseconds per step of what ``lineardiff.train`` adds, each part alone."""
    process, net = setting.pair(kind)
    prediction = lineardiff.default_prediction(process)
    data = fake_data(process)
    f = setting.transition_fraction if kind == "ssd" else 0.0
    b = setting.batch

    def no_network(x, t, out_shape):
        return torch.zeros((x.shape[0], *out_shape))

    def data_and_loss():
        # the batch, the timesteps and the whole loss of a step but the network's call
        x0 = data[torch.randint(0, data.shape[0], (b,))]
        t = lineardiff.sample_timesteps(process, b, transition_fraction=f)
        lineardiff.denoising_loss(no_network, process, x0, t, prediction=prediction)

    ema = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def ema_update():
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if v.dtype.is_floating_point:
                    ema[k].mul_(0.999).add_(v.detach(), alpha=0.001)
                else:
                    ema[k].copy_(v)

    model, opt = make_bare(net, setting.lr)
    top = max(route_weights(process))  # the largest route: every parameter has a gradient
    bare_step(model, opt, *route_inputs(process, top, b))

    def clip():
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)

    times = _median_times(dict(data_and_loss=data_and_loss, ema=ema_update, clip=clip), repeats)
    return {name: statistics.median(v) * 1e3 for name, v in times.items()}


def measure_sampling(setting: Setting, rounds: int) -> dict:
    """Sampling per image at equal step counts, interleaved; the posterior-noise share."""
    steps = sampling_steps(setting)
    n = setting.sample_count
    cold = StepTimer(setting.ssd)
    # the first run here: the sqrt's 1-D eigendecompositions not cached
    start = time.perf_counter()
    sample(setting, "ssd", steps["ssd"], n, timer=cold)
    cold_wall = time.perf_counter() - start
    sample(setting, "ddpm", steps["ddpm"], n)
    wall = {"ssd": [], "ddpm": []}
    shares, all_shares = [], []
    for i in range(rounds):
        for kind in ("ssd", "ddpm")[:: 1 if i % 2 == 0 else -1]:  # ABBA: drifts cancel
            timer = StepTimer(setting.pair(kind)[0])
            start = time.perf_counter()
            sample(setting, kind, steps[kind], n, seed=i, timer=timer)
            elapsed = time.perf_counter() - start
            wall[kind].append(elapsed)
            if kind == "ssd":
                shares.append(timer.change / elapsed)
                all_shares.append((timer.change + timer.other) / elapsed)
    ratios = [a / b for a, b in zip(wall["ssd"], wall["ddpm"], strict=True)]
    fl = {kind: sampling_flops(setting, kind, steps[kind]) for kind in steps}
    return dict(
        images=n,
        steps={kind: len(v) for kind, v in steps.items()},
        ssd_seconds_per_image=statistics.median(wall["ssd"]) / n,
        ddpm_seconds_per_image=statistics.median(wall["ddpm"]) / n,
        time_ratio=_spread(ratios),
        flop_ratio=fl["ssd"] / fl["ddpm"],
        noise_share_at_changes=_spread(shares),
        noise_share_all_steps=_spread(all_shares),
        noise_share_cold_first_run=cold.change / cold_wall,
        changes_per_run=len(setting.ssd.resolution_changes()),
    )


def _verdict(value, target) -> str:
    return "yes" if value <= target else "NO"


def print_table(results: dict) -> None:
    rows = []
    for name, r in results["settings"].items():
        tr, lp, sm = r["train_steps"], r["loops"], r["sampling"]
        rows += [
            (
                name,
                "train time ratio SSD/DDPM, expected bare step",
                tr["time_ratio"],
                tr["time_ratio_per_round"],
                TARGETS["train_time_ratio"],
            ),
            (
                name,
                "train time ratio, lineardiff.train sequence",
                lp["train_time_ratio"]["median"],
                lp["train_time_ratio"],
                TARGETS["train_time_ratio"],
            ),
            (
                name,
                "train time ratio, bare replay of that sequence",
                lp["bare_time_ratio"]["median"],
                lp["bare_time_ratio"],
                TARGETS["train_time_ratio"],
            ),
            (name, "train FLOP ratio (fwd+bwd, expected)", tr["train_flop_ratio"], None, None),
            (
                name,
                "sampling time ratio per image",
                sm["time_ratio"]["median"],
                sm["time_ratio"],
                TARGETS["sample_time_ratio"],
            ),
            (name, "sampling FLOP ratio", sm["flop_ratio"], None, None),
            (
                name,
                "posterior-noise share at changes",
                sm["noise_share_at_changes"]["median"],
                sm["noise_share_at_changes"],
                TARGETS["noise_share"],
            ),
            (
                name,
                "loop overhead DDPM",
                lp["ddpm"]["overhead"]["median"],
                lp["ddpm"]["overhead"],
                TARGETS["loop_overhead"],
            ),
            (
                name,
                "loop overhead SSD",
                lp["ssd"]["overhead"]["median"],
                lp["ssd"]["overhead"],
                TARGETS["loop_overhead"],
            ),
        ]
    header = f"{'setting':<7} {'quantity':<48} {'value':>8} {'range':>19} {'target':>8} {'met':>4}"
    print(header)
    print("-" * len(header))
    for name, label, value, spread, target in rows:
        rng = "" if spread is None else f"[{spread['min']:.4f}, {spread['max']:.4f}]"
        tgt = "" if target is None else f"<= {target:g}"
        met = "" if target is None else _verdict(value, target)
        print(f"{name:<7} {label:<48} {value:>8.4f} {rng:>19} {tgt:>8} {met:>4}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=WIDTH_64, help="base channels at 64 px")
    parser.add_argument("--batch64", type=int, default=8)
    parser.add_argument("--batch16", type=int, default=None, help="default: the config's (64)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the per-route steps")
    parser.add_argument("--loop-steps", type=int, default=10, help="steps per train() call")
    parser.add_argument("--loop-rounds", type=int, default=3)
    parser.add_argument("--sample-rounds", type=int, default=4)
    parser.add_argument("--sample64", type=int, default=4, help="images per sampling run, 64 px")
    parser.add_argument("--sample16", type=int, default=None, help="default: the config's (16)")
    parser.add_argument("--only", choices=["64px", "16px"], default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round each")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the smallest run: checks that it works (about a minute)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch64, args.batch16, args.repeats = 2, 16, 2
        args.loop_steps, args.loop_rounds, args.sample_rounds = 4, 1, 1
        args.sample64, args.sample16 = 2, 8
    if args.smoke:
        args.batch64, args.batch16, args.repeats = 1, 2, 1
        args.loop_steps, args.loop_rounds, args.sample_rounds = 2, 1, 1
        args.sample64, args.sample16 = 1, 2
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load = [os.getloadavg()[0]]
    builders = {
        "64px": lambda: setting_64(args.width, args.batch64, args.sample64),
        "16px": lambda: setting_16(args.batch16, args.sample16),
    }
    results = dict(
        targets=TARGETS,
        paper_train_time_ratio=PAPER_TRAIN_TIME_RATIO,
        threads=args.threads,
        torch=torch.__version__,
        machine=platform.processor() or platform.machine(),
        settings={},
    )
    for name, build in builders.items():
        if args.only and name != args.only:
            continue
        setting = build()
        print(
            f"[{name}] SSD {setting.ssd!r}, Flexi-UNet {count_parameters(setting.flexi):,} "
            f"parameters; DDPM twin UNet {count_parameters(setting.unet):,}; batch "
            f"{setting.batch}",
            flush=True,
        )
        r = dict(batch=setting.batch, transition_fraction=setting.transition_fraction)
        r["train_steps"] = measure_train_steps(setting, args.repeats)
        print(f"[{name}] per-route steps done ({time.perf_counter() - started:.0f} s)", flush=True)
        r["loops"] = measure_loops(setting, args.loop_steps, args.loop_rounds)
        r["overhead_parts_ms"] = {k: measure_overhead_parts(setting, k) for k in ("ssd", "ddpm")}
        print(f"[{name}] loops done ({time.perf_counter() - started:.0f} s)", flush=True)
        r["sampling"] = measure_sampling(setting, args.sample_rounds)
        print(f"[{name}] sampling done ({time.perf_counter() - started:.0f} s)", flush=True)
        results["settings"][name] = r
        load.append(os.getloadavg()[0])
    results["seconds"] = time.perf_counter() - started
    results["load_average_1min"] = load

    for name, r in results["settings"].items():
        tr = r["train_steps"]
        print(
            f"\n{name}: bare training step per route (batch {r['batch']}), DDPM "
            f"{tr['ddpm_seconds'] * 1e3:.0f} ms, "
            f"{tr['ddpm_train_gflop_per_image']:.2f} GFLOP/image (fwd+bwd)"
        )
        print(f"  {'route':<9}{'weight':>8}{'ms':>9}{'vs DDPM':>9}{'GFLOP/img':>11}")
        for route, v in tr["routes"].items():
            print(
                f"  {route:<9}{v['weight']:>8.4f}{v['seconds'] * 1e3:>9.0f}"
                f"{v['vs_ddpm']:>9.3f}{v['train_gflop_per_image']:>11.3f}"
            )
        sm, lp = r["sampling"], r["loops"]
        print(
            f"  sampling: {sm['steps']} steps, {sm['images']} images; per image SSD "
            f"{sm['ssd_seconds_per_image']:.3f} s, DDPM {sm['ddpm_seconds_per_image']:.3f} s; "
            f"noise share all steps {100 * sm['noise_share_all_steps']['median']:.2f} %, "
            f"first (cold) run at changes {100 * sm['noise_share_cold_first_run']:.2f} %"
        )
        for kind in ("ssd", "ddpm"):
            parts = r["overhead_parts_ms"][kind]
            print(
                f"  train loop {kind}: {lp[kind]['train_seconds_per_step'] * 1e3:.0f} vs bare "
                f"{lp[kind]['bare_seconds_per_step'] * 1e3:.0f} ms/step, routes "
                f"{lp[kind]['route_mix']}; parts (ms): "
                + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
            )
    print()
    print_table(results)
    print(
        f"paper (CelebA-64, width 128, GPU): training time ratio {PAPER_TRAIN_TIME_RATIO}; "
        f"{args.threads} CPU thread(s) here, load average {load}; "
        f"{results['seconds']:.0f} s in all"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
