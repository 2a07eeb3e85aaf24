"""Physics error against training CPU-hours: SSD and its DDPM twin at equal quality (issue 13).

Two steps, so that the expensive one can run piecemeal across sessions and machines:

``evaluate``
    For each model file given (exported models, or a run's checkpoints - ``snap-N.safetensors``
    beside the run's ``log.csv``, exported on the fly so that the training time is recorded),
    run ``lineardiff evaluate --task generation`` at one thread and keep its report in
    ``--cache/<label>-<step>-n<n>-s<steps>-seed<seed>/`` with a ``cost.json`` beside it
    (label, step, training CPU-hours, model file). Reports already in the cache are kept.
    ``--calibrate`` first records the denoiser's error table (``lineardiff calibrate``,
    default settings) in a copy of each model file that has none, so that every checkpoint
    is sampled with the same reverse variance (posterior + error spectrum); such reports are
    cached under a ``-err`` suffix. ``--paused-hours H`` subtracts pauses that older run logs
    recorded as training time (wall-clock steps logged before ``cpu_seconds`` existed).
``report``
    Collect every ``cost.json`` + ``report.json`` of the cache and write, per label, the
    physics error (worst ``|z|`` of the scalars, smallest Hotelling p of the curves, the
    pass rule) against training CPU-hours, the CPU-hours to the first pass, and the sampling
    CPU-seconds per configuration (one thread; the process CPU time where the report records
    it, else the wall time, marked as such): a JSON file, an RST table for the Results page
    and a two-panel figure.

CPU-hours are what the model files record: the CPU time of one training thread (the sum of
the run logs' step times, across ``--init`` continuations; rows logged before the
``cpu_seconds`` column count their wall time, on a 2-core machine shared with another run,
which overstates the cost of a quiet machine by up to ~1.5x, alike for both).

Usage::

    python benchmarks/physics_vs_cost.py evaluate --label ssd --cache /work/pvc \\
        lineardiff/app/weights/ising32-ssd.safetensors runs/ssd32/snap-9500.safetensors
    python benchmarks/physics_vs_cost.py evaluate --label ddpm --cache /work/pvc --calibrate \\
        --paused-hours 1.63 milestones/ising32-ddpm-13000.safetensors
    python benchmarks/physics_vs_cost.py report --cache /work/pvc \\
        --out docs/_static/results/physics_vs_cost
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

LABEL_ORDER = ("ssd", "ddpm", "ssd + error", "ddpm + error")


def _meta(path: Path) -> dict:
    from lineardiff.app.pretrained import load_model

    m = load_model(path)
    return {
        "step": int(m.step),
        "train_seconds": m.meta.get("train_seconds"),
        "process": m.config["process"]["name"],
    }


def _exported(path: Path, tmp: Path) -> tuple[Path, dict]:
    """``path`` itself when it records its training time, else an export from its run folder;
    with its :func:`_meta`."""
    from lineardiff.app.pretrained import export_model

    meta = _meta(path)
    if meta["train_seconds"] is not None:
        return path, meta
    out = tmp / f"{path.stem}-exported.safetensors"
    export_model(path, out)
    meta = _meta(out)
    if meta["train_seconds"] is None:
        raise SystemExit(f"{path}: no training time recorded and no log.csv beside it")
    return out, meta


def _has_error_table(path: Path) -> bool:
    from lineardiff.app.pretrained import load_model

    return load_model(path).signal_mse is not None


def _calibrated(path: Path, tmp: Path) -> Path:
    """``path`` when it records an error table, else a copy with one (``lineardiff calibrate``
    at its defaults, one thread)."""
    if _has_error_table(path):
        return path
    out = tmp / f"{path.stem}-calibrated.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "lineardiff.app.cli",
        "calibrate",
        "--model",
        str(path),
        "--to",
        str(out),
    ]
    print(" ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out


def evaluate(args) -> None:
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for given in args.models:
            model, meta = _exported(Path(given), Path(tmp))
            suffix = "-err" if args.calibrate or _has_error_table(model) else ""
            folder = cache / (
                f"{args.label}-{meta['step']}-n{args.n}-s{args.steps}-seed{args.seed}{suffix}"
            )
            if (folder / "report.json").exists() and (folder / "cost.json").exists():
                print(f"kept {folder}")
                continue
            if args.calibrate:
                model = _calibrated(model, Path(tmp))
            cmd = [
                sys.executable,
                "-m",
                "lineardiff.app.cli",
                "evaluate",
                "--model",
                str(model),
                "--task",
                "generation",
                "--n",
                str(args.n),
                "--steps",
                str(args.steps),
                "--seed",
                str(args.seed),
                "--threads",
                "1",
                "--quiet",
                "--out",
                str(folder),
            ]
            print(" ".join(cmd[2:]), flush=True)
            subprocess.run(cmd, check=True)
            cost = {
                "label": args.label,
                "step": meta["step"],
                "process": meta["process"],
                "train_hours": meta["train_seconds"] / 3600 - args.paused_hours,
                "paused_hours_subtracted": args.paused_hours,
                "model": str(given),
            }
            (folder / "cost.json").write_text(json.dumps(cost, indent=1))


def _row(cost: dict, report: dict) -> dict:
    comp = report["comparison"]
    worst_z, worst_name = max(
        (abs(v["z"]), k)
        for k, v in comp["scalars"].items()
        if v["z"] is not None and not math.isnan(v["z"])
    )
    worst_p, worst_curve = min((v["pvalue"], k) for k, v in comp["curves"].items())
    s = report["settings"]
    variance = s.get("reverse_variance") or "posterior"
    return {
        # a curve per model and reverse variance: the error term changed the physics a lot
        "label": cost["label"] + (" + error" if "error" in variance else ""),
        "step": cost["step"],
        "train_hours": cost["train_hours"],
        "n": s["n"],
        "steps": s["steps"],
        "seed": s["seed"],
        "worst_abs_z": worst_z,
        "worst_scalar": worst_name,
        "worst_p": worst_p,
        "worst_curve": worst_curve,
        "passes": bool(comp["passes"]),
        "reverse_variance": variance,
        # process CPU time of one thread where the report has it; older reports have only
        # the wall time, which a busy machine inflates (marked "wall" in the table)
        "sampling_cpu_s_per_config": report["seconds"].get(
            "sampling_cpu", report["seconds"]["sampling"]
        )
        / s["n"],
        "sampling_time_is_wall": "sampling_cpu" not in report["seconds"],
    }


def collect(cache: Path) -> list[dict]:
    rows = []
    for cost_file in sorted(cache.glob("*/cost.json")):
        report_file = cost_file.parent / "report.json"
        if report_file.exists():
            rows.append(
                _row(json.loads(cost_file.read_text()), json.loads(report_file.read_text()))
            )
    rows.sort(
        key=lambda r: (
            LABEL_ORDER.index(r["label"]) if r["label"] in LABEL_ORDER else len(LABEL_ORDER),
            r["label"],
            r["train_hours"],
        )
    )
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        first = next((r for r in mine if r["passes"]), None)
        out[label] = {
            "checkpoints": len(mine),
            "max_train_hours": max(r["train_hours"] for r in mine),
            "first_pass_hours": first["train_hours"] if first else None,
            "first_pass_step": first["step"] if first else None,
            "sampling_cpu_s_per_config_at_pass": first["sampling_cpu_s_per_config"]
            if first
            else None,
        }
    return out


def _rst(rows: list[dict]) -> str:
    head = [
        "model",
        "step",
        "CPU-hours",
        "worst abs z",
        "worst curve p",
        "passes",
        "sampling CPU-s / config",
    ]
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for cells in [head] + [
        [
            r["label"],
            str(r["step"]),
            f"{r['train_hours']:.2f}",
            f"{r['worst_abs_z']:.1f} ({r['worst_scalar']})",
            f"{r['worst_p']:.0e} ({r['worst_curve']})",
            "yes" if r["passes"] else "no",
            f"{r['sampling_cpu_s_per_config']:.2f}"
            + (" (wall, machine shared)" if r["sampling_time_is_wall"] else ""),
        ]
        for r in rows
    ]:
        lines.append("   * - " + cells[0])
        lines.extend("     - " + c for c in cells[1:])
    return "\n".join(lines) + "\n"


def _figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (az, ap) = plt.subplots(1, 2, figsize=(10, 4))
    colours = {}
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        h = [r["train_hours"] for r in mine]
        # one colour per model, solid with the denoiser's error term, dashed without
        base = label.removesuffix(" + error")
        style = {
            "color": colours.setdefault(base, f"C{len(colours)}"),
            "ls": "-" if label.endswith(" + error") else "--",
            "marker": "o",
        }
        az.plot(h, [r["worst_abs_z"] for r in mine], label=label, **style)
        ap.semilogy(h, [max(r["worst_p"], 1e-300) for r in mine], label=label, **style)
        for r in mine:
            if r["passes"]:
                az.plot(r["train_hours"], r["worst_abs_z"], "k*", ms=12)
    az.axhline(3.5, color="gray", ls="--", lw=1)
    ap.axhline(1e-3, color="gray", ls="--", lw=1)
    az.set(
        xlabel="training CPU-hours",
        ylabel="worst |z| of the scalars",
        title="scalars (dashed: the rule's 3.5)",
    )
    ap.set(
        xlabel="training CPU-hours",
        ylabel="smallest curve p (Hotelling)",
        title="curves (dashed: the rule's 1e-3)",
    )
    az.legend()
    fig.suptitle("L = 32 generation against fresh Monte Carlo (star: passes the rule)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args) -> None:
    rows = collect(Path(args.cache))
    if not rows:
        raise SystemExit(f"no cost.json + report.json pairs under {args.cache}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "physics_vs_cost.json").write_text(
        json.dumps({"rows": rows, "summary": summary(rows)}, indent=1)
    )
    (out / "physics_vs_cost.rst.inc").write_text(_rst(rows))
    _figure(rows, out / "physics_vs_cost.png")
    print(_rst(rows))
    print(json.dumps(summary(rows), indent=1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="evaluate model files into the cache")
    ev.add_argument("models", nargs="+", help="model files or run checkpoints")
    ev.add_argument("--label", required=True, help="the curve they belong to, e.g. ssd")
    ev.add_argument("--cache", required=True, help="folder of the evaluations")
    ev.add_argument("--n", type=int, default=400, help="samples per evaluation (default 400)")
    ev.add_argument("--steps", type=int, default=200, help="sampling steps (default 200)")
    ev.add_argument("--seed", type=int, default=31, help="sampling seed (default 31)")
    ev.add_argument(
        "--calibrate",
        action="store_true",
        help="record the denoiser error table first where a file has none",
    )
    ev.add_argument(
        "--paused-hours",
        type=float,
        default=0.0,
        help="hours of pauses the files' training time includes (default 0)",
    )
    rp = sub.add_parser("report", help="table, JSON and figure from the cache")
    rp.add_argument("--cache", required=True)
    rp.add_argument("--out", default="docs/_static/results/physics_vs_cost")
    args = parser.parse_args(argv)
    (evaluate if args.command == "evaluate" else report)(args)


if __name__ == "__main__":
    main()
