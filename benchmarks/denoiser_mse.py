"""Denoising error of Ising models at chosen states, compared on common random numbers.

For each state ``t``: held-out Monte Carlo configurations ``x_0`` (not the training data, not
the evaluator's reference), one forward draw ``x_t = q_sample(x_0, t)`` shared by every model,
and each model's mean squared error against the training target (``signal_target``: SSD's
clean image at the next resolution). Prints one line per state: the first model's MSE and
every other model's difference from it with its standard error over configurations. Shared
draws make the differences far more precise than the MSEs themselves. The MSE of a perfect
denoiser is the posterior variance, unknown here, so only differences are verdicts.
docs/application.rst ("Loss weight of the high-noise states") quotes its output.

Run::

    python benchmarks/denoiser_mse.py --models ising32-ssd,runs/ssd32f \
        --states 300,450,555,556,650,750,850,888,889,940,1000 --n 1024
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lineardiff.data.ising import wolff_configurations
from lineardiff.pretrained import load_model


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated models (same process)")
    ap.add_argument("--states", default="300,450,555,556,650,750,850,888,889,940,1000")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=777, help="Monte-Carlo seed of the held-out set")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = [load_model(m) for m in args.models.split(",")]
    p, L = models[0].process, models[0].size
    if any(repr(m.process) != repr(p) or m.size != L for m in models[1:]):
        ap.error("--models: expected models of one process and size")
    states = [int(v) for v in args.states.split(",")]
    if any(not 1 <= t <= p.T for t in states):
        ap.error(f"--states: expected states in [1, {p.T}], got {states}")
    x0 = torch.as_tensor(wolff_configurations(L, args.n, seed=args.seed),
                         dtype=torch.float32).reshape(args.n, 1, L, L)
    for t in states:
        gen = torch.Generator().manual_seed(t)
        with torch.no_grad():
            xt = p.q_sample(x0, t, generator=gen)
            target = p.signal_target(x0, t)
            shape = tuple(target.shape[1:])
            errors = []
            for m in models:
                z = torch.cat([m.denoiser(chunk, torch.full((len(chunk),), t), shape)
                               for chunk in xt.split(256)])
                errors.append((z - target).square().flatten(1).mean(1).double().numpy())
        line = f"t={t} size={p.shape_at(t)[-1]} nsr={p.sigma(t) / p.signal_scale(t):.3g} " \
               f"mse={errors[0].mean():.4f}"
        for e in errors[1:]:
            d = e - errors[0]
            line += f" diff={d.mean():+.5f}+-{d.std(ddof=1) / np.sqrt(args.n):.5f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
