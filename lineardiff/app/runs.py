"""Training runs and model files on disk: run folders (configuration, checkpoint, log, samples),
the shipped model files, and where a model named on the command line is found."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import socket
import sys
import time
import warnings
from pathlib import Path

import torch

from .. import __version__
from ..training import TrainConfig, train
from ..training._checkpoint import CheckpointError, load_checkpoint, remove_stale_temporaries
from .config import ConfigError, build_model, build_process, load_data

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: run folders are not locked
    fcntl = None

__all__ = [
    "RunInUseError",
    "RunLock",
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
        self.models = self.folder / "models"
        self.lock = self.folder / "train.lock"


class RunInUseError(ConfigError):
    """Another process holds the run folder's lock (:class:`RunLock`)."""


class RunLock:
    """An exclusive lock on a run folder: one writer at a time.

    ``fcntl.flock`` on ``<folder>/train.lock``, which records the holder (pid, host, start
    time) while it is held. The operating system releases the lock when the holder exits,
    however it exits, so a killed run never leaves its folder locked; the file stays, empty.
    Where ``fcntl`` is missing (Windows) or the file system refuses locks, the folder is
    used unlocked (with a warning in the second case).

    Parameters
    ----------
    folder : str or Path
        The run folder (it must exist).

    Raises
    ------
    RunInUseError
        On entering, when another process holds the lock; the message names its pid.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with RunLock(folder):
    ...     RunLock(folder).acquire()
    Traceback (most recent call last):
    ...
    lineardiff.app.runs.RunInUseError: run folder ... is in use by another process (pid ...
    """

    def __init__(self, folder) -> None:
        self.path = RunPaths(folder).lock
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunInUseError` naming the holder."""
        if fcntl is None or self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise RunInUseError(
                f"run folder {str(self.path.parent)!r} is in use by another process "
                f"({holder}); wait for it to finish, or choose another --out"
            ) from None
        except OSError as err:  # e.g. ENOLCK: a network file system without locks
            os.close(fd)
            warnings.warn(f"RunLock: cannot lock {self.path} ({err.strerror}); two runs in "
                          "this folder would not be stopped", RuntimeWarning, stacklevel=2)
            return
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (the file stays, emptied)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing releases the flock

    @staticmethod
    def _holder(fd: int) -> str:
        for _ in range(20):  # the holder writes its record just after it takes the lock
            try:
                record = json.loads(os.pread(fd, 4096, 0) or b"null")
            except (OSError, ValueError):
                record = None
            if isinstance(record, dict) and "pid" in record:
                return (f"pid {record['pid']} on host {record.get('host', '?')}, since "
                        f"{record.get('since', '?')}")
            time.sleep(0.05)
        return "pid unknown"

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


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
            "sample_count", "lr_decay_steps", "keep_every")
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


def train_seconds(log_csv, up_to_step: int | None = None) -> tuple[float, int]:
    """Total training time and number of steps recorded in a run's ``log.csv`` (0, 0 if
    none), counting only the rows of steps ``<= up_to_step`` when given (a snapshot of a run
    that went on).

    A row counts its CPU time (``cpu_seconds``, which a paused process does not accumulate)
    where the log records it, else its wall time (``seconds``: logs written before the
    column existed).
    """
    import csv

    p = Path(log_csv)
    if not p.is_file():
        return 0.0, 0
    total, rows = 0.0, 0
    with p.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                if up_to_step is not None and int(row["step"]) > up_to_step:
                    continue
                cpu = row.get("cpu_seconds")
                total += float(cpu if cpu else row["seconds"])
                rows += 1
            except (KeyError, TypeError, ValueError):
                continue
    return total, rows


def run_train_seconds(path, ck, meta: dict) -> float | None:
    """Training wall time behind checkpoint ``path`` (loaded as ``ck``, record ``meta``).

    The rows of the folder's ``log.csv`` up to its step plus what the model the run was
    initialised from had recorded; without log rows, what the file itself records
    (``train_seconds``: a model file). ``None`` when neither exists.
    """
    seconds, rows = train_seconds(Path(path).parent / "log.csv", up_to_step=ck.step)
    if not rows:
        return meta.get("train_seconds")
    before = (meta.get("initialised_from") or {}).get("train_seconds") or 0.0
    return before + seconds


def recorded_meta(path, ck) -> dict:
    """The run record (``config["meta"]``) of a loaded checkpoint; ``{}`` when it has none.

    Raises
    ------
    CheckpointError
        When the record, or the run configuration in it, is not a dict.
    """
    meta = ck.config.get("meta", {})
    if not isinstance(meta, dict):
        raise CheckpointError(f"load_checkpoint: {path}: field 'config.meta': expected a dict, "
                              f"got {type(meta).__name__}")
    if meta.get("config") is not None and not isinstance(meta["config"], dict):
        raise CheckpointError(f"load_checkpoint: {path}: field 'config.meta.config': expected "
                              f"a dict, got {type(meta['config']).__name__}")
    return meta


def _init_from(model_file, paths: RunPaths, net, tc: TrainConfig, record: dict) -> None:
    """Start a run folder from a model file's weights (EMA = weights), continuing its steps.

    ``record`` (the run's metadata) gains ``initialised_from``: the file, its step, training
    time and command.
    """
    from ..training._checkpoint import Checkpoint, capture_rng, check_state_matches, save_checkpoint

    ck = load_checkpoint(model_file)
    if ck.step > tc.steps:
        raise ConfigError(
            f"--init: {model_file} is at step {ck.step}, beyond [train] steps = {tc.steps}; "
            f"set train.steps above {ck.step}"
        )
    weights = ck.ema if ck.ema else ck.model
    check_state_matches(model_file, weights, net)
    net.load_state_dict(weights)
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    torch.manual_seed(tc.seed + ck.step)
    meta = recorded_meta(model_file, ck)
    record["initialised_from"] = {
        "file": str(model_file), "step": ck.step,
        "train_seconds": run_train_seconds(model_file, ck, meta),
        "command": meta.get("command"),
    }
    save_checkpoint(paths.checkpoint, Checkpoint(
        net.state_dict(), {"train": dataclasses.asdict(tc), "meta": record}, ck.step,
        {k: v.clone() for k, v in weights.items()}, opt.state_dict(), capture_rng()))


def run_training(cfg: dict, *, argv=None, resume: bool = True, progress: bool = True,
                 init=None) -> Path:
    """Train as configured; write everything into ``cfg["train"]["out"]``.

    The folder receives ``config.json`` (the validated configuration), ``checkpoint.safetensors``
    (weights, EMA, optimiser and RNG state; exact resume), ``log.csv`` (one row per step) and
    ``samples/step_*.png`` (every ``[train] sample_every`` steps) and
    ``models/step_*.safetensors`` (every ``[train] keep_every`` steps: the EMA model file of
    that step with its training time, as ``lineardiff export`` writes it, so that the run's
    checkpoints can be judged by the physics afterwards). An existing checkpoint is
    resumed when its configuration matches (``steps`` may grow); the configuration is compared
    again when the training loop loads it. Under ``torchrun``
    (``torchrun --standalone --nproc_per_node 2 -m lineardiff train --config ...``) every
    process trains its shard and rank 0 writes the files (see :func:`~lineardiff.train`).

    The writing process (rank 0) holds the folder's :class:`RunLock` for the whole run, so a
    second ``lineardiff train`` on the same folder fails at once naming the first one's pid,
    and removes the temporary checkpoint files a killed write left behind
    (:func:`~lineardiff.training._checkpoint.remove_stale_temporaries`).

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

    Raises
    ------
    RunInUseError
        When another process trains in the same folder.
    """
    from ..training._distributed import init_distributed

    info = init_distributed()  # under torchrun: join the group; rank 0 alone writes files
    paths = RunPaths(writable_folder(cfg["train"]["out"]))
    lock = RunLock(paths.folder)
    if info.rank == 0:  # the one writer; the other ranks only read
        lock.acquire()
    try:
        return _train_in(paths, cfg, info, argv=argv, resume=resume, progress=progress,
                         init=init)
    finally:
        lock.release()


def _train_in(paths: RunPaths, cfg: dict, info, *, argv, resume, progress, init) -> Path:
    """:func:`run_training` once rank 0 holds the folder's lock."""
    torch.set_num_threads(int(cfg["train"].get("threads", 1)))
    if info.rank == 0:
        remove_stale_temporaries(paths.checkpoint)
    if not resume and paths.checkpoint.is_file() and info.rank == 0:
        paths.checkpoint.unlink()
        paths.log.unlink(missing_ok=True)
    history = None
    if paths.checkpoint.is_file():
        old_meta = recorded_meta(paths.checkpoint, load_checkpoint(paths.checkpoint))
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
        # what train compares again when it loads the checkpoint (with the lock held this
        # is the file checked above; without a lock, e.g. Windows, it may not be)
        "resume_key": _comparable(cfg),
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
    keep = int(cfg["train"].get("keep_every", 0))
    grid = _sample_grid_callback(cfg, main_process, net, paths) if every else None

    def callback(step: int, live, ema: dict) -> None:
        if every and step % every == 0:
            grid(step, live, ema)
        if keep and step % keep == 0:  # the checkpoint of this step was written just before
            from .pretrained import export_model

            paths.models.mkdir(exist_ok=True)
            export_model(paths.checkpoint, paths.models / f"step_{step:07d}.safetensors")

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
        callback=callback if every or keep else None,
        callback_every=math.gcd(every, keep) or 1,
    )
    return paths.checkpoint


def _at_size(cfg: dict, L: int) -> dict:
    out = {**cfg, "data": {**cfg["data"], "L": L}}
    return out
