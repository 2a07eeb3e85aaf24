"""Band calibration of an Ising model's denoiser, and generation with the calibrated one.

Fits :func:`lineardiff.band_calibration` on held-out Monte Carlo (not the training data, not
the evaluator's reference) at the states a ``--steps`` sampler visits from ``--t-min`` up,
prints the slopes (1 for a posterior mean; below 1 the network predicts more of a band than
the state holds) and, with ``--evaluate``, scores ``n`` samples generated with the calibrated
denoiser against fresh Monte Carlo exactly as ``lineardiff evaluate`` does (one JSON line per
seed). docs/application.rst ("Calibrating the denoiser") quotes its output.

Run::

    python benchmarks/band_calibration.py --model ising32-ssd --t-min 500 --n-fit 2048 \
        --evaluate 31,41
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

import lineardiff
from lineardiff.app import ising_eval
from lineardiff.app.pretrained import TrainedModel
from lineardiff.data.ising import wolff_configurations
from lineardiff.pretrained import load_model


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="ising32-ssd")
    ap.add_argument("--t-min", type=int, default=500)
    ap.add_argument("--n-fit", type=int, default=2048)
    ap.add_argument("--pool", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--evaluate", default="", help="comma-separated seeds to evaluate (n = 400)")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--high", type=float, default=1.5,
                    help="clamp the slopes applied to [0, HIGH] (BandCalibration.wrap)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    p, L = model.process, model.size
    states = [t for t in lineardiff.respace(p, args.steps) if t >= args.t_min]
    x0 = torch.as_tensor(wolff_configurations(L, args.n_fit, seed=779),
                         dtype=torch.float32).reshape(args.n_fit, 1, L, L)
    cal = lineardiff.band_calibration(model.denoiser, p, x0, states, pool=args.pool,
                                      generator=torch.Generator().manual_seed(0))
    print(repr(cal), flush=True)
    for i, t in enumerate(cal.timesteps):
        print(json.dumps({"t": t, "size": p.shape_at(t)[-1],
                          "slopes": [round(float(v), 3) for v in cal.slopes[i]],
                          "se": [round(float(v), 3) for v in cal.standard_errors[i]]}),
              flush=True)
    calibrated = cal.wrap(model.denoiser, high=args.high)

    @dataclasses.dataclass
    class Calibrated(TrainedModel):
        @property
        def denoiser(self):
            return calibrated

    wrapped = Calibrated(**{f.name: getattr(model, f.name)
                            for f in dataclasses.fields(TrainedModel)})
    for seed in [int(s) for s in args.evaluate.split(",") if s]:
        report = ising_eval.evaluate_generation(wrapped, n=args.n, steps=args.steps, seed=seed,
                                                progress=False)
        c = report["comparison"]
        print(json.dumps({"seed": seed, "passes": c["passes"],
                          "z": {k: round(v["z"], 2) for k, v in c["scalars"].items()},
                          "curve_p": {k: float(f"{v['pvalue']:.2g}")
                                      for k, v in c["curves"].items()},
                          "failures": c["failures"]}), flush=True)


if __name__ == "__main__":
    main()
