"""Conditioning variants for SSD super-resolution of Ising block spins (issue 13 study).

Runs one variant of 16 -> 32 (or 8 -> 32) super-resolution with a shipped or exported SSD
model on held-out Monte Carlo, as ``lineardiff evaluate --task upscale`` does (majority
blocks with random tie-breaks, scaled by :func:`lineardiff.app.ising_eval.sr_input_scale`),
and prints one JSON line: block consistency, tied blocks, full agreement, the worst scalar
z and the worst curve p of ``metrics.compare`` against fresh Monte Carlo, and whether the
pass rule holds. The table in docs/processes.rst ("Super-resolution conditioning") was made
with it. Variants (``--variant``):

``entry``
    The entry state only (``upscale`` at its defaults).
``trace``
    As ``entry``, printing at every step how many blocks of the predicted signal agree with
    the input (where the input's information is lost).
``project``
    The predicted signal ``z`` projected, at every step with ``t >= --t-min``, onto the
    block constraint ``s_B * mean_B(z) >= delta`` (each violating block shifted uniformly:
    the Euclidean projection onto that half-space), the one constraint majority rule puts on
    a configuration.
``soft``
    ILVR (``upscale(..., ilvr=True)``) with the replacement of the seen part weighted by
    ``w = N / (N + a_s^2 r)``, ``N`` the view's noise variance at state ``s`` and ``r`` the
    proxy residual's variance (``E[(D x_0 - c s_B)^2]`` measured on Monte Carlo, times
    ``--r-scale``): full replacement where the state's noise hides the proxy's error, none
    where it does not. ``--noise keep`` leaves ``w sigma M xi`` of fresh noise (the seen part
    loses variance), ``--noise vp`` adds ``sqrt(1 - (1 - w)^2) sigma M xi`` (variance kept).
``guide``
    Posterior sampling with a soft majority-rule likelihood (in the style of DPS, Chung et al.
    2023): ``p(s_B | x_0) = sigmoid(beta s_B mean_B(x_0))`` (``beta = 8``: 0.98 for a 3-1
    block, 1/2 for a tie, so tied blocks of the truth are not penalised), evaluated on the
    predicted signal ``z(x_t)``; by Tweedie's formula the conditional signal is
    ``z + zeta (sigma_t^2 / a_t) grad_{x_t} log p(s_B | z(x_t))`` (``zeta = 1`` the plain
    approximation), applied at the full resolution, one backward pass of the network a step.
    ``--no-jacobian`` replaces the network's Jacobian by ``Cov[x_0 | x_t] ~ r_t^2 I``,
    ``r_t^2 = sigma_t^2 / (a_t^2 + sigma_t^2)``: the correction ``zeta r_t^2 grad_z log p(s | z)``
    is constant on each block and costs no backward pass. ``--marginal`` replaces ``beta`` by
    ``beta_t = beta / sqrt(1 + pi beta^2 v_t / 8)``, the probit approximation of
    ``E[sigmoid(beta s xbar) | x_t]`` for a block mean with posterior variance
    ``v_t = V sigma_t^2 / (sigma_t^2 + b^2 a_t^2 V)`` (``V`` the data's block-mean variance):
    weaker while the noise hides the block means, ``beta`` at the end; ``--var-scale k`` uses
    ``k v_t`` instead; ``--measured`` takes ``v_t`` as the denoiser's block-mean error
    ``E[(mean_B(x_0) - mean_B(z(x_t)))^2]`` on 128 held-out Monte Carlo configurations
    (:func:`lineardiff.block_mean_variance`: the average posterior variance when ``z`` is the
    posterior mean; no constant to choose); ``--local`` spreads ``v_t`` over the blocks in
    proportion to ``mean_B(1 - z^2)`` (``block_sign_likelihood(..., spins=True)``). With
    ``--measured --local --beta 1000`` (the exact majority rule, in effect) this is the
    library's route, ``super_resolve(..., guidance=1, block_variance=...)``.

Example (about 1-3 CPU-minutes at n = 64 on one thread)::

    python benchmarks/sr_conditioning.py ising32-ssd --variant soft --r-scale 4 --noise vp
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

import linops
from lineardiff import block_mean_variance, block_sign_likelihood, upscale
from lineardiff.app.ising_eval import MC_HELDOUT_SEED, MC_REFERENCE_SEED, sr_input_scale
from lineardiff.data import wolff_configurations
from lineardiff.metrics import binarize, block_consistency, compare, majority_blocks
from lineardiff.pretrained import load_model


def _projector(den, s_blocks, h, c, delta, t_min):
    def model(x, t, out_shape):
        z = den(x, t, out_shape)
        if int(t[0]) < t_min:
            return z
        b = out_shape[-1] // h
        mean = F.avg_pool2d(z, b) if b > 1 else z
        lim = delta if b > 1 else delta * c  # the coarse signal is the view, scale c
        short = (lim - s_blocks * mean).clamp(min=0) * s_blocks
        return z + short.repeat_interleave(b, -1).repeat_interleave(b, -2)

    return model


def _likelihood_guided(den, process, s_blocks, h, beta, zeta, min_nsr=0.0, jacobian=True,
                       block_var=None, var_scale=1.0, measured=None, local=False):
    spread = None if not local else block_sign_likelihood(  # the library's route (+-1 spins)
        s_blocks, beta=beta, variance=lambda t: var_scale * measured(t), spins=True)

    def model(x, t, out_shape):
        b = out_shape[-1] // h
        step = int(t[0])
        sigma, a = process.sigma(step), process.signal_scale(step)
        if b == 1 or x.shape[-1] != out_shape[-1] or sigma < min_nsr * a:
            return den(x, t, out_shape)
        beta_t = beta
        if measured is not None:  # the measured block-mean error (block_mean_variance)
            beta_t = (8 / np.pi) ** 0.5 / (var_scale * measured(step) + 8 / (np.pi * beta ** 2)) ** 0.5
        elif block_var is not None:  # p(s | x_t) = E[sigmoid(beta s xbar) | x_t], probit rule
            v = var_scale * block_var * sigma ** 2 / (sigma ** 2 + b * b * a * a * block_var)
            beta_t = beta / (1 + np.pi * beta ** 2 * v / 8) ** 0.5
        if not jacobian:  # Cov[x_0 | x_t] ~ r_t^2 I: the gradient taken at the prediction
            z = den(x, t, out_shape)
            with torch.enable_grad():
                zg = z.detach().requires_grad_(True)
                loglik = F.logsigmoid(beta_t * s_blocks * F.avg_pool2d(zg, b)).sum()
                (grad,) = torch.autograd.grad(loglik, zg)
            return z + zeta * sigma ** 2 / (a ** 2 + sigma ** 2) * grad
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            z = den(xg, t, out_shape)
            mean = F.avg_pool2d(z, b)
            if spread is not None:  # v_t spread by mean_B(1 - z^2)
                loglik = spread(z, step).sum()
            else:
                loglik = F.logsigmoid(beta_t * s_blocks * mean).sum()
            (grad,) = torch.autograd.grad(loglik, xg)
        scale = zeta * sigma ** 2 / a
        return z.detach() + scale * grad

    return model


def _soft_guide(process, y, start, r, noise, generator):
    target = process.signal_scale(start) * y
    cache: dict = {}

    def guide(s, x):
        sigma, a = process.sigma(s), process.signal_scale(s)
        if s not in cache:
            c, base = process.transition(s, start)
            if base is None:
                cache[s] = (c, None, None, 1.0)
            else:
                dense = base.to_dense().reshape(-1, int(np.prod(base.in_shape))).double()
                cache[s] = (c, base, linops.pinv(base), float((dense ** 2).sum(1).mean()))
        c, base, base_pinv, kappa = cache[s]
        view_noise = sigma ** 2 * c ** 2 * kappa  # variance of the view's noise per pixel
        w = view_noise / (view_noise + a ** 2 * r) if r > 0 else 1.0
        beta = (1 - (1 - w) ** 2) ** 0.5 if noise == "vp" else w
        xi = torch.randn(x.shape, dtype=x.dtype, generator=generator)
        if base is None:
            return x + w * (target / c - x) + beta * sigma * xi
        residual = w * (target - c * base.apply(x)) + beta * sigma * c * base.apply(xi)
        return x + base_pinv.apply(residual) / c

    return guide


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="shipped model name or model file (an SSD Ising model)")
    ap.add_argument("--variant", choices=["entry", "trace", "project", "soft", "guide"], default="entry")
    ap.add_argument("--factor", type=int, default=2)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--delta", type=float, default=0.25, help="project: the margin")
    ap.add_argument("--t-min", type=int, default=0, help="project: from this timestep up")
    ap.add_argument("--r-scale", type=float, default=1.0, help="soft: residual variance scale")
    ap.add_argument("--beta", type=float, default=8.0, help="guide: likelihood sharpness")
    ap.add_argument("--zeta", type=float, default=1.0, help="guide: guidance scale")
    ap.add_argument("--min-nsr", type=float, default=0.0,
                    help="guide: only states with sigma/a >= this")
    ap.add_argument("--no-jacobian", action="store_true",
                    help="guide: correct by r_t^2 grad log p(s | z), r_t^2 = sigma^2/(a^2+sigma^2) "
                    "(no backward pass through the network)")
    ap.add_argument("--marginal", action="store_true",
                    help="guide: soften beta by the block mean's posterior variance given x_t "
                    "(E[sigmoid(beta s xbar) | x_t] by the probit approximation)")
    ap.add_argument("--var-scale", type=float, default=1.0,
                    help="guide --marginal: multiply the posterior variance v_t by this")
    ap.add_argument("--measured", action="store_true",
                    help="guide --marginal: v_t measured as the denoiser's block-mean error on "
                    "held-out Monte Carlo (128 configurations) instead of the Gaussian formula")
    ap.add_argument("--local", action="store_true",
                    help="guide --measured: spread v_t over the blocks in proportion to "
                    "mean_B(1 - z^2) (the posterior variance of a +-1 spin is 1 - z^2)")
    ap.add_argument("--noise", choices=["keep", "vp"], default="vp", help="soft: fresh noise")
    args = ap.parse_args(argv)
    if args.var_scale != 1.0 and not (args.variant == "guide" and args.marginal):
        ap.error(f"--var-scale: expected with --variant guide --marginal, got --variant "
                 f"{args.variant}{' --marginal' if args.marginal else ''}")
    if args.measured and not (args.variant == "guide" and args.marginal):
        ap.error("--measured: expected with --variant guide --marginal")
    if args.local and args.no_jacobian:
        ap.error("--local: expected without --no-jacobian (it guides through the network)")
    if args.local and not args.measured:
        ap.error("--local: expected with --variant guide --marginal --measured")
    torch.set_num_threads(1)
    model = load_model(args.model)
    process, L = model.process, model.size
    h = L // args.factor
    truth = wolff_configurations(L, args.n, seed=MC_HELDOUT_SEED)
    calib = wolff_configurations(L, 2000, seed=MC_HELDOUT_SEED + 1)
    c = sr_input_scale(process, calib, args.factor)
    coarse = majority_blocks(truth, args.factor, seed=args.seed)
    s_blocks = torch.from_numpy(coarse.astype(np.float32)).unsqueeze(1)
    y = c * s_blocks
    gen = torch.Generator().manual_seed(args.seed)
    den, kwargs = model.denoiser, {}
    if args.variant == "project":
        den = _projector(den, s_blocks, h, c, args.delta, args.t_min)
    elif args.variant == "guide":
        block_var = float((F.avg_pool2d(torch.from_numpy(calib.astype(np.float64)).unsqueeze(1),
                                        args.factor) ** 2).mean())
        for p in model.net.parameters():
            p.requires_grad_(False)
        measured = None
        if args.measured:
            x_cal = torch.from_numpy(calib[:128].astype(np.float32)).unsqueeze(1)
            measured = block_mean_variance(model.denoiser, process, x_cal, args.factor,
                                           generator=torch.Generator().manual_seed(args.seed + 1))
        den = _likelihood_guided(den, process, s_blocks, h, args.beta, args.zeta,
                                 args.min_nsr, jacobian=not args.no_jacobian,
                                 block_var=block_var if args.marginal else None,
                                 var_scale=args.var_scale, measured=measured, local=args.local)
    elif args.variant == "soft":
        view = process.low_res(torch.from_numpy(calib.astype(np.float32)).unsqueeze(1), h)
        blocks = torch.from_numpy(majority_blocks(calib, args.factor, seed=1)).unsqueeze(1)
        r = float(((view.double() - c * blocks.double()) ** 2).mean()) * args.r_scale
        start, _ = process.super_resolution_entry(y[:1], generator=torch.Generator())
        kwargs["guide"] = _soft_guide(process, y, start, r, args.noise, gen)
    elif args.variant == "trace":
        def trace(t, s, x, signal):
            b = signal.shape[-1] // h
            mean = F.avg_pool2d(signal, b) if b > 1 else signal
            agree = (torch.sign(mean) == s_blocks).float().mean().item()
            print(f"t={t:4d} -> {s:4d} res {signal.shape[-1]}: predicted signal agrees with "
                  f"{agree:.3f} of the blocks (a_s={process.signal_scale(s):.3f}, "
                  f"sigma_s={process.sigma(s):.3f})")
        kwargs["callback"] = trace
    t0 = time.perf_counter()
    with torch.no_grad():
        x = upscale(den, process, y, num_steps=args.steps, generator=gen,
                    prediction=model.prediction, progress=False, **kwargs)
    spins, _ = binarize(x.numpy()[:, 0])
    mc = wolff_configurations(L, max(2000, args.n), seed=MC_REFERENCE_SEED)
    cmp = compare(spins, mc, seed=args.seed)
    bc = block_consistency(spins, coarse, args.factor)
    name, worst = max(cmp["scalars"].items(), key=lambda kv: abs(kv[1]["z"]))
    curve, low = min(cmp["curves"].items(), key=lambda kv: kv[1]["pvalue"])
    out = {**vars(args), "model_step": model.step, "consistency": round(bc["consistency"], 3),
           "tied": round(bc["tied"], 3), "full_agreement": round(bc["full_agreement"], 3),
           "worst_z": [name, round(worst["z"], 2)],
           "worst_curve": [curve, float(f"{low['pvalue']:.2g}")], "passes": cmp["passes"],
           "worst_curve_z": {f"{x:g}": round(d / e, 1) for x, d, e in
                             zip(low["x"], low["diff"], low["se"], strict=True)},
           "seconds": round(time.perf_counter() - t0)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
