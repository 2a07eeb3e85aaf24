"""Training runs and model files on disk: run folders (configuration, checkpoint, log, samples),
the shipped model files, and where a model named on the command line is found."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from .. import __version__
from ..training import TrainConfig, train
from ..training._checkpoint import CheckpointError, load_checkpoint
from .config import ConfigError, build_model, build_process, load_data

__all__ = [
    "RunPaths",
    "resolve_model_file",
    "run_training",
    "shipped_models",
    "train_seconds",
    "writable_folder",
]

_WEIGHTS = Path(__file__).parent / "weights"


def shipped_models() -> dict[str, Path]:
    """The models shipped inside the package, by name (``lineardiff/app/weights/*.safetensors``)."""
    return {f.stem: f for f in sorted(_WEIGHTS.glob("*.safetensors"))}


def resolve_model_file(source) -> Path:
    """The model file that ``source`` names: a shipped model's name, a file, or a run folder
    (its checkpoint)."""
    shipped = shipped_models()
    if isinstance(source, str) and source in shipped and not Path(source).exists():
        return shipped[source]
    p = Path(source)
    if p.is_dir():
        p = p / "checkpoint.safetensors"
    if not p.is_file():
        raise CheckpointError(
            f"load_model: no model file {str(source)!r}; expected a .safetensors file, a run "
            f"folder, or a shipped model ({', '.join(shipped) or 'none shipped'})"
        )
    return p


class RunPaths:
    """The files of a run folder."""

    def __init__(self, folder) -> None:
        self.folder = Path(folder)
        self.checkpoint = self.folder / "checkpoint.safetensors"
        self.config = self.folder / "config.json"
        self.log = self.folder / "log.csv"
        self.samples = self.folder / "samples"


def writable_folder(path, what: str = "output folder") -> Path:
    """Create ``path`` (and parents) and check that files can be written there."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"{what} {str(p)!r} is not writable ({err.strerror}); choose another with --out"
        ) from None
    return p


def _train_config(cfg: dict) -> TrainConfig:
    fields = {f for f in TrainConfig.__dataclass_fields__}
    kwargs = {k: v for k, v in cfg["train"].items() if k in fields}
    if kwargs.get("prediction") == "":
        kwargs["prediction"] = None
    try:
        return TrainConfig(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"config [train]: {err}") from None


def _comparable(cfg: dict) -> dict:
    """The parts of a configuration that must not change when a run resumes."""
    free = ("steps", "out", "threads", "checkpoint_every", "sample_every", "sample_steps",
            "sample_count")
    keep = {k: v for k, v in cfg["train"].items() if k not in free}
    return {"data": cfg["data"], "process": cfg["process"], "model": cfg["model"], "train": keep}


def _sample_grid_callback(cfg: dict, process, net, paths: RunPaths):
    """A :func:`train` callback writing a grid of EMA samples to ``samples/step_XXXXXXX.png``."""
    import copy

    from .._denoiser import as_denoiser
    from .._objectives import default_prediction
    from .._sampling import ancestral_sample, respace
    from . import figures

    count = int(cfg["train"].get("sample_count", 16))
    steps = min(int(cfg["train"].get("sample_steps", 50)), process.T)
    pred = cfg["train"].get("prediction") or default_prediction(process)

    def callback(step: int, live, ema: dict) -> None:
        shadow = copy.deepcopy(live)
        shadow.load_state_dict(ema)
        shadow.eval()
        with torch.no_grad():
            x = ancestral_sample(as_denoiser(shadow), process, count,
                                 timesteps=respace(process, steps), prediction=pred, clip=1.0,
                                 progress=False, generator=torch.Generator().manual_seed(0))
        paths.samples.mkdir(exist_ok=True)
        figures.sample_grid(x, paths.samples / f"step_{step:07d}.png", title=f"step {step}")

    return callback


def train_seconds(log_csv) -> tuple[float, int]:
    """Total wall time and number of steps recorded in a run's ``log.csv`` (0, 0 if none)."""
    import csv

    p = Path(log_csv)
    if not p.is_file():
        return 0.0, 0
    total, rows = 0.0, 0
    with p.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                total += float(row["seconds"])
                rows += 1
            except (KeyError, TypeError, ValueError):
                continue
    return total, rows


def _init_from(model_file, paths: RunPaths, net, tc: TrainConfig, record: dict) -> None:
    """Start a run folder from a model file's weights (EMA = weights), continuing its steps.

    ``record`` (the run's metadata) gains ``initialised_from``: the file, its step, training
    time and command.
    """
    from ..training._checkpoint import Checkpoint, capture_rng, check_state_matches, save_checkpoint

    ck = load_checkpoint(model_file)
    weights = ck.ema if ck.ema else ck.model
    check_state_matches(model_file, weights, net)
    net.load_state_dict(weights)
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    torch.manual_seed(tc.seed + ck.step)
    record["initialised_from"] = {
        "file": str(model_file), "step": ck.step,
        "train_seconds": ck.config.get("meta", {}).get("train_seconds"),
        "command": ck.config.get("meta", {}).get("command"),
    }
    save_checkpoint(paths.checkpoint, Checkpoint(
        net.state_dict(), {"train": dataclasses.asdict(tc), "meta": record}, ck.step,
        {k: v.clone() for k, v in weights.items()}, opt.state_dict(), capture_rng()))


def run_training(cfg: dict, *, argv=None, resume: bool = True, progress: bool = True,
                 init=None) -> Path:
    """Train as configured; write everything into ``cfg["train"]["out"]``.

    The folder receives ``config.json`` (the validated configuration), ``checkpoint.safetensors``
    (weights, EMA, optimiser and RNG state; exact resume), ``log.csv`` (one row per step) and
    ``samples/step_*.png`` (every ``[train] sample_every`` steps). An existing checkpoint is
    resumed when its configuration matches (``steps`` may grow). Under ``torchrun``
    (``torchrun --standalone --nproc_per_node 2 -m lineardiff train --config ...``) every
    process trains its shard and rank 0 writes the files (see :func:`~lineardiff.train`).

    Parameters
    ----------
    cfg : dict
        A validated configuration (:func:`~lineardiff.app.config.load_config`).
    argv : list of str, optional
        The command line, recorded in the checkpoint.
    resume : bool, default True
    progress : bool, default True
    init : str or Path, optional
        A model file (e.g. a shipped model) to start from when the folder has no checkpoint:
        its weights become the weights and the EMA, and its step count continues (the
        optimiser starts afresh). This is how training continues across machines.

    Returns
    -------
    Path
        The checkpoint file.
    """
    from ..training._distributed import init_distributed

    info = init_distributed()  # under torchrun: join the group; rank 0 alone writes files
    paths = RunPaths(writable_folder(cfg["train"]["out"]))
    torch.set_num_threads(int(cfg["train"].get("threads", 1)))
    if not resume and paths.checkpoint.is_file() and info.rank == 0:
        paths.checkpoint.unlink()
        paths.log.unlink(missing_ok=True)
    history = None
    if paths.checkpoint.is_file():
        old_meta = load_checkpoint(paths.checkpoint).config.get("meta", {})
        history = old_meta.get("initialised_from")
        old = old_meta.get("config")
        if old is not None and _comparable(old) != _comparable(cfg):
            a, b = _comparable(old), _comparable(cfg)
            diff = [f"[{t}] {k}" for t in a for k in sorted(set(a[t]) | set(b[t]))
                    if a[t].get(k) != b[t].get(k)]
            raise ConfigError(
                f"{paths.checkpoint}: was trained with another configuration (differs in "
                f"{', '.join(diff)}); use another --out or --no-resume"
            )
    data = load_data(cfg)
    sizes = cfg["data"].get("sizes") or []
    spectrum = None
    if cfg["process"]["name"] == "skild":
        from .._spectrum import fit_power_spectrum

        spectrum = fit_power_spectrum(data[max(sizes)] if sizes else data)
    if sizes:
        process = {L: build_process(_at_size(cfg, L), spectrum=spectrum) for L in sizes}
        main_process = process[max(sizes)]
    else:
        process = main_process = build_process(cfg, spectrum=spectrum)
    net = build_model(cfg)
    tc = _train_config(cfg)
    command = "lineardiff " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    meta = {
        "config": cfg,
        "command": command,
        "version": __version__,
        "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if history is not None:
        meta["initialised_from"] = history  # a resumed run keeps where it started from
    if spectrum is not None:
        meta["spectrum"] = {"C": spectrum.C, "k0": spectrum.k0, "alpha": spectrum.alpha}
        if spectrum.mean_square is not None:  # absent in files written before this field
            meta["spectrum"]["mean_square"] = spectrum.mean_square
    if info.rank == 0:
        if init is not None and not paths.checkpoint.is_file():
            _init_from(resolve_model_file(init), paths, net, tc, meta)
        paths.config.write_text(json.dumps(cfg, indent=2))
    if info.is_distributed:
        torch.distributed.barrier()  # the others read the checkpoint rank 0 may have written
    every = int(cfg["train"].get("sample_every", 0))
    train(
        net,
        process,
        data,
        tc,
        checkpoint=paths.checkpoint,
        resume=True,
        meta=meta,
        progress=progress,
        log_csv=paths.log,
        callback=_sample_grid_callback(cfg, main_process, net, paths) if every else None,
        callback_every=every,
    )
    return paths.checkpoint


def _at_size(cfg: dict, L: int) -> dict:
    out = {**cfg, "data": {**cfg["data"], "L": L}}
    return out
