"""``lineardiff results``: every evaluation of the shipped models, for the docs' Results page.

One command regenerates the page's numbers and figures::

    lineardiff results --out docs/_static/results --n 500 --steps 200

For each shipped Ising model it runs unconditional generation against fresh Monte Carlo; for
SSD models also super-resolution (every factor its pyramid allows: 16 -> 32 and 8 -> 32 at
L = 32); for SKILD models super-resolution by the same factors and by a non-integer one
(20 -> 32 at L = 32); for models that run at any size (DFU) zero-shot generation at 1.5x and
2x the training size. Each evaluation writes ``<model>/<task>/`` (report.json and figures); the
summary goes to ``results.json``, ``tables.rst.inc`` and ``training.rst.inc`` (the training
record of each model file), which ``docs/results.rst`` includes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .ising_eval import evaluate_generation, evaluate_upscaling
from .pretrained import load_model, shipped_models
from .report import write_json, write_text
from .runs import writable_folder

__all__ = ["run_results"]


def _tasks(model) -> list[tuple[str, dict]]:
    tasks = [("generation", {})]
    cfg = model.config
    if cfg["process"]["name"] == "ssd":
        levels = cfg["process"].get("n_levels", 4)
        for k in range(1, levels):
            tasks.append((f"upscale{2**k}x", {"factor": 2**k}))
    if cfg["process"]["name"] == "skild":  # the SSD tasks' factors, and a non-integer one
        L = model.size
        tasks += [(f"upscale{f}x", {"factor": f}) for f in (2, 4) if L % f == 0 and L >= 2 * f]
        h = round(5 * L / 8)
        if L % h:
            tasks.append((f"upscale{h}to{L}", {"factor": L / h}))
    if cfg["model"]["name"] in ("dfu", "unet") and cfg["data"].get("sizes"):
        for size in (3 * model.size // 2, 2 * model.size):
            tasks.append((f"zeroshot{size}", {"size": size}))
    return tasks


def _row(name: str, task: str, report: dict, folder: str) -> dict:
    comp = report["comparison"]
    s = comp["scalars"]
    row = {
        "model": name,
        "task": report["task"],
        "step": report["settings"]["model_step"],
        "n": report["settings"]["n"],
        "steps": report["settings"]["steps"],
        "e_z": s["e"]["z"],
        "U_z": s["U"]["z"],
        "C_z": s["C"]["z"],
        "abs_m_z": s["abs_m"]["z"],
        "worst_curve_p": min(c["pvalue"] for c in comp.get("curves", {}).values()),
        "passes": comp["passes"],
        "seconds": report["seconds"]["total"],
        "folder": folder,
    }
    if "block_consistency" in report:
        row["consistency"] = report["block_consistency"]["model"]["consistency"]
    return row


def _rst(rows: list[dict], command: str) -> str:
    head = ["model", "task", "steps trained", "samples", "z(e)", "z(U)", "z(C)", "z(abs m)",
            "worst curve p", "block consistency", "passes"]
    lines = [".. list-table::", "   :header-rows: 1", ""]
    lines.append("   * - " + "\n     - ".join(head))
    for r in rows:
        cells = [r["model"], r["task"], str(r["step"]), f"{r['n']} x {r['steps']} steps",
                 f"{r['e_z']:.2f}", f"{r['U_z']:.2f}", f"{r['C_z']:.2f}", f"{r['abs_m_z']:.2f}",
                 f"{r['worst_curve_p']:.2g}",
                 f"{r['consistency']:.3f}" if "consistency" in r else "",
                 "yes" if r["passes"] else "no"]
        lines.append("   * - " + "\n     - ".join(cells))
    commands = list(dict.fromkeys(r.get("command", command) for r in rows)) or [command]
    lines += ["", "Made by " + ", ".join(f"``{c}``" for c in commands) + ".", ""]
    return "\n".join(lines)


def _training_rst(models: list) -> str:
    """The training record of each model file (steps, wall time, commands, history)."""
    lines = ["Training records", "----------------", "",
             "As recorded in each model file's metadata (``lineardiff.pretrained.load_model"
             "(name).meta``); training time is CPU time of one thread on a shared 2-core "
             "machine (wall time for steps logged before the log recorded CPU time).", ""]
    for label, m in models:
        meta = m.meta
        hours = meta.get("train_seconds")
        params = sum(p.numel() for p in m.net.parameters())
        lines += [f"``{label}``", f"    {m.config['process']['name']} + "
                  f"{m.config['model']['name']}, {params:,} parameters, {m.step} steps"
                  + (f", {hours / 3600:.2f} h of training recorded in the logs" if hours else "")
                  + f". Last command: ``{meta.get('command', '?')}``."]
        init = meta.get("initialised_from")
        while init:
            lines[-1] += f" Continued from a model file at step {init.get('step')}."
            init = None
        lines.append("")
    return "\n".join(lines)


def run_results(out, *, models=None, n: int = 500, steps: int = 200, seed: int = 0,
                n_mc: int | None = None, command: str = "lineardiff results",
                progress: bool = True, update: bool = False) -> Path:
    """Evaluate shipped models; write reports, figures, ``results.json`` and ``tables.rst.inc``.

    Parameters
    ----------
    out : str or Path
        Output folder.
    models : sequence of str, optional
        Shipped model names or model files (default: every shipped Ising model).
    n, steps, seed, n_mc
        As for :func:`~lineardiff.app.ising_eval.evaluate_generation`.
    command : str
        The command line, recorded with the tables.
    progress : bool, default True
    update : bool, default False
        Keep the rows of an earlier ``results.json`` in ``out`` for the models not evaluated
        now (each row records its own command, sample count and steps), so that one model
        can be re-evaluated without re-running the others.

    Returns
    -------
    Path
        ``tables.rst.inc``.
    """
    folder = writable_folder(out)
    names = list(models) if models else list(shipped_models())
    rows = []
    loaded = []
    t0 = time.perf_counter()
    for name in names:
        model = load_model(name)
        if model.config["data"]["name"] != "ising":
            continue
        label = Path(str(name)).stem
        loaded.append((label, model))
        for task, kw in _tasks(model):
            sub = writable_folder(folder / label / task)
            common = dict(n=n, steps=steps, seed=seed, n_mc=n_mc, out=sub, progress=progress)
            if task.startswith("upscale"):
                report = evaluate_upscaling(model, **kw, **common)
            else:
                report = evaluate_generation(model, **kw, **common)
            report["command"] = command
            write_json(sub / "report.json", report)
            rows.append(_row(label, task, report, f"{label}/{task}") | {"command": command})
    labels = [label for label, _ in loaded]
    if update and (folder / "results.json").is_file():
        old = json.loads((folder / "results.json").read_text())
        kept = [r for r in old.get("rows", []) if r["model"] not in labels]
        for r in kept:
            r.setdefault("command", old.get("command", "?"))
        rows = kept + rows
        known = {label for label, _ in loaded}
        for r in kept:  # their training records too
            if r["model"] not in known and r["model"] in shipped_models():
                loaded.append((r["model"], load_model(r["model"])))
                known.add(r["model"])
    order = list(shipped_models())
    rank = {name: i for i, name in enumerate(order)}
    rows.sort(key=lambda r: rank.get(r["model"], len(order)))
    loaded.sort(key=lambda item: rank.get(item[0], len(order)))
    write_text(folder / "training.rst.inc", _training_rst(loaded))
    write_json(folder / "results.json", {"command": command, "torch": torch.__version__,
                                         "seconds": time.perf_counter() - t0, "rows": rows})
    return write_text(folder / "tables.rst.inc", _rst(rows, command))
