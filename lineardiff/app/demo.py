"""``lineardiff demo``: the whole mission on the shipped SSD model in about a minute.

Generates critical Ising configurations at L = 32, super-resolves majority-rule 16x16 block
spins of held-out Monte Carlo to 32x32, scores both against freshly sampled Monte Carlo with
the observables of docs/ising.rst, and writes ``report.md``, ``report.json`` and figures.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

from .. import __version__
from .ising_eval import evaluate_generation, evaluate_upscaling
from .pretrained import load_model
from .report import comparison_table, write_json, write_text
from .runs import writable_folder

__all__ = ["run_demo"]


def _model_lines(model) -> list[str]:
    meta = model.meta
    lines = [f"- model file: `{model.path.name}` ({model.config['process']['name']} + "
             f"{model.config['model']['name']}, "
             f"{sum(p.numel() for p in model.net.parameters()):,} parameters), "
             f"trained {model.step} steps"]
    if "train_seconds" in meta:
        lines[-1] += f" in {meta['train_seconds'] / 3600:.2f} CPU-hours"
    if "command" in meta:
        lines.append(f"- trained with: `{meta['command']}`")
    return lines


def run_demo(out="demo-output", *, model="ising32-ssd", n: int = 100, steps: int = 30,
             sr_steps: int = 50, seed: int = 0, n_mc: int = 2000, threads: int | None = None,
             progress: bool = True, plain_variance: bool = False) -> Path:
    """Run the demo and write its report into ``out``.

    Parameters
    ----------
    out : str or Path, default "demo-output"
        Output folder (created).
    model : str or Path, default "ising32-ssd"
        A shipped model's name or a model file / run folder.
    n : int, default 100
        Generated samples and super-resolved inputs each (at 32 the scalar tests' bootstrap
        errors of a handful of configurations are unreliable: U and C swing by several
        standard errors between seeds).
    steps : int, default 30
        Respaced reverse steps of generation.
    sr_steps : int, default 50
        Respaced reverse steps of the whole chain for super-resolution, which runs those below
        its entry state (29 of 50; at 30, 18 of them, the calibrated entry's outputs come
        out measurably too ordered at n = 400, at 50 they pass: docs/results.rst).
    seed : int, default 0
    n_mc : int, default 2000
        Fresh Monte-Carlo reference configurations.
    threads : int, optional
        torch threads (default: torch's choice).
    progress : bool, default True
    plain_variance : bool, default False
        Ignore the denoiser error the model file records
        (:meth:`~lineardiff.pretrained.TrainedModel.without_signal_mse`).

    Returns
    -------
    Path
        The Markdown report.
    """
    t0 = time.perf_counter()
    folder = writable_folder(out)
    if threads:
        torch.set_num_threads(int(threads))
    m = load_model(model)
    if plain_variance:
        m = m.without_signal_mse()
    gen = evaluate_generation(m, n=n, steps=steps, seed=seed, n_mc=n_mc, out=folder,
                              progress=progress)
    sr = evaluate_upscaling(m, factor=2, n=n, steps=sr_steps, seed=seed, n_mc=n_mc, out=folder,
                            progress=progress)
    total = time.perf_counter() - t0
    report = {
        "lineardiff": __version__,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "threads": torch.get_num_threads(),
        "model": {"path": str(m.path), "step": m.step, "config": m.config,
                  "meta": {k: v for k, v in m.meta.items() if k != "config"}},
        "generation": gen,
        "super_resolution": sr,
        "seconds": total,
    }
    write_json(folder / "report.json", report)
    L = m.size
    bc = sr["block_consistency"]
    md = [
        "# lineardiff demo: Scale Space Diffusion on critical Ising",
        "",
        *_model_lines(m),
        f"- settings: {n} samples, {steps} respaced steps ({sr_steps} for super-resolution), "
        f"seed {seed}, {n_mc} fresh Monte-Carlo "
        f"configurations (seed {gen['settings']['mc_seed']}); {torch.get_num_threads()} "
        f"torch thread(s); wall time {total:.1f} s",
        f"- reverse variance: {gen['settings']['reverse_variance']} "
        "(docs/processes.rst, \"Reverse variance from the denoiser's error\")",
        "",
        f"## Generation at L = {L}",
        "",
        "![samples](generation_samples.png) ![Monte Carlo](generation_monte_carlo.png)",
        "",
        comparison_table(gen["comparison"]),
        "",
        f"Sharpness: {gen['sharpness']['fraction_soft']:.3f} of output values have |x| < 0.5.",
        "",
        "![G(r)](generation_G.png) ![G4c(l)](generation_G4c.png)",
        "![energy](generation_energy.png) ![|m|](generation_abs_m.png)",
        "",
        f"## Super-resolution {L // 2} -> {L}",
        "",
        f"Inputs: majority-rule 2x2 block spins of held-out Monte Carlo, scaled by "
        f"{sr['input_scale']:.3f}"
        + (", entering through the calibrated per-mode estimate of SSD's coarse image "
           "(docs/processes.rst)." if sr["settings"]["calibrated"]
           else " (the best linear predictor of SSD's coarse image)."),
        "",
        "![SR panels](sr2x_panels.png)",
        "",
        "| block consistency | model | Monte-Carlo truth |",
        "|---|---|---|",
        f"| majority matches input (non-tied blocks) | {bc['model']['consistency']:.3f} | "
        f"{bc['truth']['consistency']:.3f} |",
        f"| tied blocks | {bc['model']['tied']:.3f} | {bc['truth']['tied']:.3f} |",
        f"| all 4 spins equal the input | {bc['model']['full_agreement']:.3f} | "
        f"{bc['truth']['full_agreement']:.3f} |",
        "",
        comparison_table(sr["comparison"]),
        "",
        "![G(r)](sr2x_G.png) ![G4c(l)](sr2x_G4c.png)",
        "![energy](sr2x_energy.png) ![|m|](sr2x_abs_m.png)",
        "",
        "With a hundred samples the pass rule's thresholds are wide; run "
        "`lineardiff demo --n 1000 --steps 100 --sr-steps 100` (or `lineardiff evaluate`) for "
        "a decisive test.",
        "",
    ]
    return write_text(folder / "report.md", "\n".join(md))
