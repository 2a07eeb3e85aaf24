"""How often does fresh Monte Carlo fail the Ising pass rule against the 2,000 reference?

The rule of docs/ising.rst judges a model's n samples against 2,000 Monte-Carlo reference
configurations (seed 10000, what ``lineardiff evaluate`` uses). Run on n configurations of
*Monte Carlo itself* (seeds 50000 + draw, apart from training, reference, held-out and
calibration seeds) it should pass almost always: a perfect model fails only at that rate.
Prints one line per draw (passes, worst scalar |z|, smallest curve p and its curve, reasons)
and a summary. docs/results.rst quotes it for n = 100 (the demo's default) and n = 1000 (the
decisive demo).

Run::

    python benchmarks/rule_calibration.py --n 1000 --draws 16
"""

from __future__ import annotations

import argparse

from lineardiff.data import wolff_configurations
from lineardiff.metrics.ising import compare

REFERENCE_SEED = 10_000  # the evaluations' Monte-Carlo reference
DRAW_SEED = 50_000


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--L", type=int, default=32, help="lattice size (default 32)")
    parser.add_argument("--n", type=int, default=400, help="configurations per draw")
    parser.add_argument("--draws", type=int, default=20, help="independent draws")
    parser.add_argument("--n-ref", type=int, default=2000, help="reference size (default 2000)")
    args = parser.parse_args(argv)
    ref = wolff_configurations(args.L, args.n_ref, seed=REFERENCE_SEED)
    fails, smallest = 0, 1.0
    for d in range(args.draws):
        sample = wolff_configurations(args.L, args.n, seed=DRAW_SEED + d)
        r = compare(sample, ref, seed=d)
        z = max(abs(v["z"]) for v in r["scalars"].values() if v["z"] is not None)
        curve, p = min(((k, v["pvalue"]) for k, v in r["curves"].items()), key=lambda t: t[1])
        fails += not r["passes"]
        smallest = min(smallest, p)
        print(f"draw {d}: passes {r['passes']}, worst |z| {z:.2f}, smallest p {p:.2g} ({curve})"
              + (f"; {'; '.join(r['failures'])}" if r["failures"] else ""), flush=True)
    print(f"L = {args.L}, n = {args.n} against {args.n_ref}: {fails} of {args.draws} draws fail "
          f"the rule; smallest curve p {smallest:.2g}")


if __name__ == "__main__":
    main()
