"""Ising evaluations of a trained model against fresh Monte Carlo (docs/ising.rst).

Each evaluation returns a JSON-able report (settings, seeds, wall time, observables, the
comparison of :func:`lineardiff.metrics.compare` and its pass/fail verdict) and can draw its
figures into a folder. Used by ``lineardiff evaluate`` and ``lineardiff demo``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .._generate import generate, super_resolve
from ..data import T_C, energy_per_site, magnetization, wolff_configurations
from ..metrics import binarize, block_consistency, compare, curve_estimates, majority_blocks
from . import figures

__all__ = ["block_calibration", "evaluate_generation", "evaluate_upscaling", "sr_input_scale"]

# Seeds of the Monte-Carlo sets used for evaluation: far from the training seeds (0..), so that
# the reference and the held-out truth are independent of the training data.
MC_REFERENCE_SEED = 10_000
MC_HELDOUT_SEED = 20_000


def _spins(x) -> np.ndarray:
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return a[:, 0] if a.ndim == 4 else a


def _curves(configs: np.ndarray, ls) -> dict:
    """G(r) and G4c(l) with influence-function standard errors (:func:`curve_estimates`)."""
    est = curve_estimates(configs, curves=("G", "G4c"), ls=ls)
    g, g4 = est["G"], est["G4c"]
    return {"r": g.x.tolist(), "G": g.value.tolist(), "G_se": g.se.tolist(), "l": list(ls),
            "G4c": g4.value.tolist(), "G4c_se": g4.se.tolist()}


def _side_by_side(model_spins, mc_spins, out: Path | None, prefix: str, title: str) -> dict:
    L = mc_spins.shape[-1]
    ls = [2**i for i in range(int(np.log2(L // 2)) + 1)]
    cm, cr = _curves(model_spins, ls), _curves(mc_spins, ls)
    if out is not None:
        figures.curve_figure(cm["r"], {"model": (cm["G"], cm["G_se"]),
                                       "Monte Carlo": (cr["G"], cr["G_se"])},
                             out / f"{prefix}_G.png", xlabel="r", ylabel="G(r)", log=True,
                             title=f"{title}: two-point function")
        figures.curve_figure(ls, {"model": (cm["G4c"], cm["G4c_se"]),
                                  "Monte Carlo": (cr["G4c"], cr["G4c_se"])},
                             out / f"{prefix}_G4c.png", xlabel="l", ylabel="G4c(l)",
                             title=f"{title}: connected four-point function")
        figures.histogram_figure({"model": energy_per_site(model_spins),
                                  "Monte Carlo": energy_per_site(mc_spins)},
                                 out / f"{prefix}_energy.png", xlabel="energy per site")
        figures.histogram_figure({"model": np.abs(magnetization(model_spins)),
                                  "Monte Carlo": np.abs(magnetization(mc_spins))},
                                 out / f"{prefix}_abs_m.png", xlabel="|m|")
    return {"model": cm, "monte_carlo": cr}


def reverse_variance(model) -> str:
    """What the walk's reverse variance is: the exact posterior's, or with the denoiser's
    error the model file records (:attr:`TrainedModel.signal_mse`)."""
    table = model.signal_mse
    if table is None:
        return "posterior"
    kind = "error" if table.spectra is None else "error spectrum"
    return f"posterior + denoiser {kind} ({len(table.timesteps)} states, n = {table.n})"


def evaluate_generation(model, *, n: int = 64, steps: int = 200, seed: int = 0,
                        n_mc: int | None = None, size: int | None = None, out=None,
                        progress: bool = True) -> dict:
    """Unconditional samples against fresh Monte Carlo at the training size or another one.

    Parameters
    ----------
    model : TrainedModel
        Trained on Ising data (``[data] name = "ising"``).
    n : int, default 64
        Model samples.
    steps : int, default 200
        Respaced reverse steps.
    seed : int, default 0
        Sampling seed.
    n_mc : int, optional
        Monte-Carlo configurations (default ``max(n, 2000)``: the reference is cheap).
    size : int, optional
        Sample at this lattice size instead of the training size (zero-shot; networks that
        run at any size, e.g. a DFU, see :meth:`TrainedModel.at_size`). Critical Ising is
        scale invariant, so a good model passes against Monte Carlo at that size.
    out : str or Path, optional
        Folder for figures (``generation_*.png``) - none when omitted.
    progress : bool, default True

    Returns
    -------
    dict
        ``settings``, ``sharpness`` (fraction of outputs with ``|x| < 0.5``), ``comparison``
        (:func:`lineardiff.metrics.compare`, model = ``a``, Monte Carlo = ``b``), ``curves``
        and ``seconds``.
    """
    _check_ising(model, "evaluate_generation")
    trained = model.size
    if size is not None:
        model = model.at_size(size)
    L = model.size
    n_mc = n_mc or max(n, 2000)
    t0, c0 = time.perf_counter(), time.process_time()
    x = generate(model, n, steps=steps, seed=seed, spin_flip=True, progress=progress)
    t_model, c_model = time.perf_counter() - t0, time.process_time() - c0
    spins, soft = binarize(_spins(x))
    mc = wolff_configurations(L, n_mc, seed=MC_REFERENCE_SEED)
    out = None if out is None else Path(out)
    if out is not None:
        figures.sample_grid(spins[:16], out / "generation_samples.png",
                            title=f"generated L = {L}")
        figures.sample_grid(mc[:16], out / "generation_monte_carlo.png",
                            title=f"Monte Carlo L = {L}")
    report = {
        "task": "generation" if L == trained else f"zero-shot generation at L = {L}",
        "settings": {"L": L, "trained_L": trained, "n": n, "n_mc": n_mc, "steps": steps,
                     "seed": seed, "mc_seed": MC_REFERENCE_SEED, "T": T_C,
                     "model_step": model.step, "reverse_variance": reverse_variance(model)},
        "sharpness": {"fraction_soft": soft},
        "comparison": compare(spins, mc, seed=seed),
        "curves": _side_by_side(spins, mc, out, "generation", f"generation L = {L}"),
        "seconds": {"sampling": t_model, "sampling_cpu": c_model,
                    "total": time.perf_counter() - t0},
    }
    return report


def sr_input_scale(process, fine: np.ndarray, b: int) -> float:
    """Scale ``c`` that maps majority block spins to the process's view of the coarse image.

    SSD enters its chain at the coarse level with ``D x_0`` (``D`` the chain of antialiased
    resizes), a smooth field, not the +-1 block spins of the SR protocol; SKILD with the
    lowest DCT modes of ``x_0`` (:meth:`~lineardiff.SKILD.low_res`). The best linear
    predictor of that view ``v`` from the block spin ``s_B`` is ``c s_B`` with
    ``c = E[v s_B] / E[s_B^2] = E[v s_B]``, estimated on Monte-Carlo data.
    """
    x0 = torch.from_numpy(fine.astype(np.float32)).unsqueeze(1)
    view = process.low_res(x0, fine.shape[-1] // b).double().numpy()[:, 0]
    blocks = majority_blocks(fine, b, seed=1)
    return float(np.mean(view * blocks))


def calibrated_by_default(process, blocks: bool) -> bool:
    """Whether super-resolution enters through :func:`block_calibration` by default: for a
    process on a resolution pyramid (SSD) given majority blocks (measured better at n = 400,
    docs/processes.rst); SKILD keeps its plain entry."""
    return blocks and bool(process.sr_sizes)


def block_calibration(process, fine: np.ndarray, b: int, scale: float):
    """:class:`~lineardiff.EntryCalibration` of an SSD or SKILD process for ``b x b``
    majority-block inputs scaled by ``scale``, fitted on the configurations ``fine`` (N, L, L)."""
    from .._entry import fit_entry_calibration

    x0 = torch.from_numpy(fine.astype(np.float64)).unsqueeze(1)
    y = torch.from_numpy(scale * majority_blocks(fine, b, seed=1).astype(np.float64)).unsqueeze(1)
    return fit_entry_calibration(process, x0, y)


def measured_block_variance(model, fine: np.ndarray, b: int, n: int = 128):
    """:func:`~lineardiff.block_mean_variance` of ``model`` for ``b x b`` blocks, measured on
    the first ``n`` configurations of ``fine`` (N, L, L) (seeded: the same every call)."""
    from .._guidance import block_mean_variance

    x0 = torch.from_numpy(fine[:n].astype(np.float32)).unsqueeze(1)
    return block_mean_variance(model.denoiser, model.process, x0, b,
                               prediction=model.prediction,
                               generator=torch.Generator().manual_seed(0))


def _low_size(process, L: int, factor) -> tuple[int, bool]:
    """The input size ``L / factor`` and whether the factor gives majority blocks."""
    where = "evaluate_upscaling"
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise TypeError(f"{where}: expected a number for factor, got {type(factor).__name__}")
    h = L / factor if factor > 1 else 0.0
    if factor <= 1 or abs(h - round(h)) > 1e-6 * L:
        raise ValueError(
            f"{where}: expected a factor > 1 with L / factor an integer (L = {L}), got {factor}"
        )
    h = round(h)
    blocks = L % h == 0
    sizes = process.sr_sizes
    if sizes is not None and (not blocks or h not in sizes):
        raise ValueError(
            f"{where}: expected an integer factor giving one of the model's resolutions "
            f"{sorted(sizes)} (only SKILD takes non-integer factors), got {factor}"
        )
    return h, blocks


def evaluate_upscaling(model, *, factor: float = 2, n: int = 64, steps: int = 200,
                       seed: int = 0, n_mc: int | None = None, out=None,
                       progress: bool = True, ilvr: bool = False,
                       ilvr_nsr: float = 1.5, guidance: float = 0.0,
                       particles: int = 1, tau: float | None = None,
                       calibrated: bool | None = None,
                       plain_likelihood: bool = False) -> dict:
    """Super-resolution of held-out Monte Carlo reduced by ``factor`` (docs/ising.rst protocol).

    For integer factors dividing ``L`` the inputs are ``factor x factor`` majority blocks
    (random tie-breaks) of held-out L = size configurations, scaled by
    :func:`sr_input_scale`, and the report includes block consistency with the input. SKILD
    models also take factors with ``L / factor`` an integer that does not divide ``L`` (e.g.
    1.6: 20 -> 32); there majority blocks do not exist and the inputs are the process's own
    low-resolution view of the held-out configurations (:meth:`~lineardiff.SKILD.low_res`,
    their lowest DCT modes). Outputs are scored against native Monte Carlo at L = size.

    Parameters
    ----------
    model : TrainedModel
        An SSD or SKILD model trained on Ising data.
    factor : float, default 2
        ``L / h`` for an ``h x h`` input.
    n, steps, seed, n_mc, out, progress
        As for :func:`evaluate_generation`.
    ilvr, ilvr_nsr, guidance, particles, tau
        The conditioning of :func:`~lineardiff.super_resolve` (default: the entry state only).
    calibrated : bool, optional
        Majority blocks: draw the entry from the calibrated ``q(x_start | y)``
        (:func:`block_calibration` on the 2,000 calibration configurations). Default: on for
        SSD models (measured better at n = 400, docs/processes.rst), off for SKILD.
    plain_likelihood : bool, default False
        With ``guidance``: the plain ``sigmoid(8 s mean)`` of the predicted signal. By default
        the exact majority rule marginalised over the block mean's posterior variance,
        measured on 128 of the calibration configurations (:func:`measured_block_variance`).

    Returns
    -------
    dict
        ``settings`` (with ``input``: ``"majority blocks"`` or ``"lowest DCT modes"``),
        ``input_scale``, ``block_consistency`` (model and Monte-Carlo truth; majority blocks
        only), ``sharpness``, ``comparison``, ``curves``, ``seconds``.
    """
    _check_ising(model, "evaluate_upscaling")
    L = model.size
    h, blocks = _low_size(model.process, L, factor)
    factor = L // h if blocks else L / h
    if plain_likelihood and guidance == 0:
        raise ValueError("evaluate_upscaling: expected plain_likelihood only with guidance > 0, "
                         "got guidance 0")
    n_mc = n_mc or max(n, 2000)
    t0 = time.perf_counter()
    truth = wolff_configurations(L, n, seed=MC_HELDOUT_SEED)
    calibration = block_variance = None
    if calibrated is None:
        calibrated = calibrated_by_default(model.process, blocks)
    if calibrated and not blocks:
        raise ValueError("evaluate_upscaling: expected calibrated=False unless the inputs are "
                         f"majority blocks (a factor dividing {L}), got factor {factor}")
    if blocks:
        calib = wolff_configurations(L, 2000, seed=MC_HELDOUT_SEED + 1)
        c = sr_input_scale(model.process, calib, factor)
        coarse = majority_blocks(truth, factor, seed=seed)
        y = torch.from_numpy(c * coarse.astype(np.float32)).unsqueeze(1)
        if calibrated:
            calibration = block_calibration(model.process, calib, factor, c)
        if guidance > 0 and not plain_likelihood:
            block_variance = measured_block_variance(model, calib, factor)
    else:
        c = 1.0
        x0 = torch.from_numpy(truth.astype(np.float64)).unsqueeze(1)
        y = model.process.low_res(x0, h).to(torch.float32)
        coarse = y.numpy()[:, 0]
    if tau is None and model.process.sr_sizes is None:
        tau = model.sr_tau  # what super_resolve falls back to: recorded in the report
    t1, c1 = time.perf_counter(), time.process_time()
    x = super_resolve(model, y, steps=steps, seed=seed, progress=progress, ilvr=ilvr,
                      ilvr_nsr=ilvr_nsr, guidance=guidance, particles=particles, tau=tau,
                      calibration=calibration,
                      block_variance=block_variance)
    t_model, c_model = time.perf_counter() - t1, time.process_time() - c1
    spins, soft = binarize(_spins(x))
    mc = wolff_configurations(L, n_mc, seed=MC_REFERENCE_SEED)
    out = None if out is None else Path(out)
    tag = f"sr{factor}x" if blocks else f"sr{h}to{L}"
    if out is not None:
        figures.sr_figure(coarse, spins, truth, out / f"{tag}_panels.png")
    report = {
        "task": f"super-resolution {h} -> {L}",
        "settings": {"L": L, "factor": factor, "input_size": h,
                     "input": "majority blocks" if blocks else "lowest DCT modes",
                     "n": n, "n_mc": n_mc, "steps": steps,
                     "seed": seed, "heldout_seed": MC_HELDOUT_SEED,
                     "mc_seed": MC_REFERENCE_SEED, "model_step": model.step,
                     "reverse_variance": reverse_variance(model), "ilvr": ilvr,
                     "ilvr_nsr": ilvr_nsr, "guidance": guidance, "particles": particles,
                     "tau": tau, "calibrated": calibrated,
                     "likelihood": None if guidance == 0 else
                     "measured" if block_variance is not None else "plain"},
        "input_scale": c,
    }
    if blocks:
        report["block_consistency"] = {"model": block_consistency(spins, coarse, factor),
                                       "truth": block_consistency(truth, coarse, factor)}
    report |= {
        "sharpness": {"fraction_soft": soft},
        "comparison": compare(spins, mc, seed=seed),
        "curves": _side_by_side(spins, mc, out, tag, f"SR {h} -> {L}"),
        "seconds": {"sampling": t_model, "sampling_cpu": c_model,
                    "total": time.perf_counter() - t0},
    }
    return report


def _check_ising(model, where: str) -> None:
    if model.config["data"]["name"] != "ising":
        raise ValueError(
            f"{where}: expected a model trained on Ising data, got data "
            f"{model.config['data']['name']!r}"
        )
