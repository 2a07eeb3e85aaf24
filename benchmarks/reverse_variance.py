"""Physics of generated samples against the sampler's step count and reverse variance (issue 13).

For a model file that records its denoiser error (``lineardiff calibrate``), evaluates
unconditional generation (``lineardiff.app.ising_eval.evaluate_generation``, fresh Monte
Carlo) at each step count with three reverse variances: the exact posterior's only
("posterior"), plus the white error of the recorded size ("white"), plus the recorded error
spectrum ("spectrum"). Prints one JSON line per run: the pass verdict, the worst scalar
``|z|``, the worst curve p and the sampling CPU-seconds per configuration.
docs/processes.rst ("Reverse variance from the denoiser's error") quotes its output.

Run::

    lineardiff calibrate --model ising32-ssd --to ssd.safetensors
    python benchmarks/reverse_variance.py --model ssd.safetensors --steps 30,200 \\
        --variants posterior,white,spectrum --n 200 --seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from lineardiff.app.ising_eval import evaluate_generation
from lineardiff.pretrained import load_model

VARIANTS = ("posterior", "white", "spectrum")


def variant(model, name: str):
    """The model with the reverse variance ``name`` (see the module docstring)."""
    if name == "posterior":
        return model.without_signal_mse()
    record = model.meta.get("signal_mse")
    if record is None:
        raise SystemExit(f"--model: {model.path} records no denoiser error; run lineardiff "
                         "calibrate first")
    if name == "white":
        record = {**record, "spectra": None}
    return dataclasses.replace(model, meta={**model.meta, "signal_mse": record})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a model file with a recorded error")
    ap.add_argument("--steps", default="30,200", help="comma-separated step counts")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seeds", default="3")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    names = args.variants.split(",")
    if any(v not in VARIANTS for v in names):
        ap.error(f"--variants: expected names from {VARIANTS}, got {names}")
    for steps in (int(v) for v in args.steps.split(",")):
        for seed in (int(v) for v in args.seeds.split(",")):
            for name in names:
                rep = evaluate_generation(variant(model, name), n=args.n, steps=steps,
                                          seed=seed, progress=False)
                c = rep["comparison"]
                z = {k: v["z"] for k, v in c["scalars"].items()}
                p = {k: v["pvalue"] for k, v in c["curves"].items()}
                worst = max(z, key=lambda k: abs(z[k]))
                low = min(p, key=p.get)
                print(json.dumps({
                    "model": args.model, "steps": steps, "seed": seed, "n": args.n,
                    "variance": name, "passes": c["passes"],
                    "worst_z": [worst, round(z[worst], 2)], "worst_p": [low, p[low]],
                    "z": {k: round(v, 2) for k, v in z.items()},
                    "cpu_seconds_per_sample": rep["seconds"]["sampling_cpu"] / args.n,
                }), flush=True)


if __name__ == "__main__":
    main()
