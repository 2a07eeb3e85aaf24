"""Where along its chain does an Ising model's large-scale bias arise? (issue 13 study)

Forward-noises held-out Monte Carlo configurations to a state ``t`` with the model's own
process (``q_sample``), walks the model's chain from there to 0 (``ancestral_sample``, the
respaced steps below ``t``, x0-clipping as ``lineardiff.generate``) and prints one JSON line
per entry state: the mean ``|m|`` and energy per spin of the signs of the outputs, and their
mean differences from the configurations each walk started from, with standard errors.
Paired differences are far more sensitive than two independent samples: at small ``t`` the
output stays close to its own configuration. An unbiased model gives differences within
about 3 standard errors at every ``t``; how the difference grows with ``t`` locates the
noise levels that make a bias. docs/results.rst ("Training in progress: ising32-ssd") quotes
its output.

Run::

    python benchmarks/chain_bias.py --model ising32-ssd --n 400 --seed 5 \
        --entries 880,750,556,400,250
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import lineardiff
from lineardiff.data.ising import energy_per_site, magnetization, wolff_configurations
from lineardiff.pretrained import load_model


def _order(spins: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray]:
    """``|m|`` and the energy per spin of the signs of each configuration."""
    s = np.where(spins.reshape(len(spins), L, L) >= 0, 1.0, -1.0)
    return np.abs(magnetization(s)), energy_per_site(s)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="ising32-ssd")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--entries", default="880,750,556,400,250",
                    help="comma-separated entry states t")
    ap.add_argument("--steps", type=int, default=200, help="respaced steps of the whole chain")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    p, L = model.process, model.size
    entries = [int(v) for v in args.entries.split(",")]
    if any(not 1 <= t <= p.T for t in entries):
        ap.error(f"--entries: expected states in [1, {p.T}], got {entries}")
    mc = wolff_configurations(L, args.n, seed=1000 + args.seed)  # not the reference seed
    x0 = torch.as_tensor(mc, dtype=torch.float32).reshape(args.n, 1, L, L)
    m0, e0 = _order(mc, L)
    steps = lineardiff.respace(p, args.steps)
    for t in entries:
        gen = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        with torch.no_grad():
            xt = p.q_sample(x0, t, generator=gen)
            walk = [t] + [u for u in steps if u < t]
            out = torch.cat([
                lineardiff.ancestral_sample(
                    model.denoiser, p, len(chunk), timesteps=walk, x_T=chunk,
                    prediction=model.prediction, clip=1.0, progress=False, generator=gen)
                for chunk in xt.split(args.batch)
            ])
        m, e = _order(out.numpy(), L)
        dm, de = m - m0, e - e0
        print(json.dumps({
            "model": args.model, "t": t, "size_at_t": p.shape_at(t)[-1],
            "nsr": p.sigma(t) / p.signal_scale(t), "abs_m": float(m.mean()),
            "abs_m_start": float(m0.mean()), "d_abs_m": float(dm.mean()),
            "d_abs_m_se": float(dm.std(ddof=1) / np.sqrt(args.n)), "d_energy": float(de.mean()),
            "d_energy_se": float(de.std(ddof=1) / np.sqrt(args.n)),
            "seconds": time.perf_counter() - start,
        }), flush=True)


if __name__ == "__main__":
    main()
