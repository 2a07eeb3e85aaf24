"""Benchmark configuration: speed is reported as ratios against a baseline of the same run.

Each benchmark sets ``benchmark.extra_info["baseline"]`` to the name of the benchmark
in its group that it is compared with; the terminal summary prints
``baseline time / this time`` (a speed-up factor, from the medians) for each.
"""

import os

import torch

torch.set_num_threads(int(os.environ.get("LINEARDIFF_BENCH_THREADS", "2")))


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        default=None,
        help="device for the benchmarks that support one (cpu, cuda); sets LINEARDIFF_BENCH_DEVICE",
    )


def pytest_configure(config):
    device = config.getoption("--device", default=None)
    if device:
        os.environ["LINEARDIFF_BENCH_DEVICE"] = device


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled or not session.benchmarks:
        return
    by_name = {b.name: b for b in session.benchmarks}
    rows = []
    for bench in session.benchmarks:
        base_name = bench.extra_info.get("baseline")
        base = by_name.get(base_name) if base_name else None
        if base is None or base is bench:
            continue
        ratio = base.stats.median / bench.stats.median
        rows.append((bench.group or "", bench.name, base.name, bench.stats.median, ratio))
    if not rows:
        return
    tr = terminalreporter
    tr.section("speed-up against the baseline measured in this run (median times)")
    for group, name, base, median, ratio in rows:
        tr.write_line(f"{group:<28} {name:<48} {median * 1e3:9.3f} ms  {ratio:7.2f}x vs {base}")
