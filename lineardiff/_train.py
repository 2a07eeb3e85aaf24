"""One training loop for every process x model pair, single- or multi-process."""

from __future__ import annotations

import inspect
import math
import numbers
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ._checkpoint import (
    Checkpoint,
    capture_rng,
    check_state_matches,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from ._distributed import init_distributed, step_seed
from ._process import DiffusionProcess
from ._training import default_prediction, loss_weight, sample_timesteps, training_target

__all__ = ["TrainConfig", "TrainResult", "as_denoiser", "train"]

# stream labels for step_seed: the per-rank data/noise stream and the shared resolution draw
_RANK_STREAM, _RESOLUTION_STREAM = 0, 1


def _takes_size(net: torch.nn.Module) -> bool:
    return "out_size" in inspect.signature(net.forward).parameters


def _denoiser(module, takes_size: bool) -> Callable:
    def model(x, t, out_shape):
        if takes_size:
            return module(x, t, out_size=tuple(out_shape[-2:]))
        return module(x, t)

    return model


def as_denoiser(net: torch.nn.Module) -> Callable:
    """Adapt a network to the ``model(x_t, t, out_shape)`` interface of samplers and training.

    Networks with an ``out_size`` argument (``models.FlexiUNet``) get the requested output
    size; the others are called as ``net(x_t, t)`` (their output has the input's size).

    Examples
    --------
    >>> import torch, models, lineardiff
    >>> net = models.UNet(1, base_channels=8, channel_mult=(1, 2), attention_levels=(),
    ...                   num_groups=4)
    >>> lineardiff.as_denoiser(net)(torch.zeros(2, 1, 8, 8), torch.tensor([1, 2]), (1, 8, 8)).shape
    torch.Size([2, 1, 8, 8])
    """
    model = _denoiser(net, _takes_size(net))
    model.net = net
    return model


def _size_key(size, where: str) -> int:
    # JSON and TOML keys are strings: accept "16" as well as 16, so that a config read back
    # from a checkpoint record builds the same TrainConfig
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size)
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"{where}: expected sizes as positive integers, got {size!r}")
    if size < 1:
        raise ValueError(f"{where}: expected sizes as positive integers, got {size!r}")
    return size


def _resolution_weights(value) -> dict[int, float]:
    where = "TrainConfig: resolution_weights"
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = []
        for pair in value:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"{where}: expected (size, weight) pairs, got the entry {pair!r}")
            items.append(tuple(pair))
    else:
        raise TypeError(
            f"{where}: expected a dict {{size: weight}} or a list of (size, weight) pairs, "
            f"got {type(value).__name__}"
        )
    if not items:
        raise ValueError(f"{where}: expected at least one size, got none")
    out: dict[int, float] = {}
    for size, weight in items:
        key = _size_key(size, where)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, numbers.Real)
            or not math.isfinite(weight)
            or weight <= 0
        ):
            raise ValueError(
                f"{where}: expected positive finite weights, got {weight!r} for size {key}"
            )
        if key in out:
            raise ValueError(f"{where}: expected each size once, got {key} twice")
        out[key] = float(weight)
    return dict(sorted(out.items()))


@dataclass
class TrainConfig:
    """Settings of :func:`train` (all JSON-able; stored in checkpoints).

    Attributes
    ----------
    steps : int
        Optimiser steps in total (a resumed run continues to this count).
    batch_size : int, default 32
        Samples per step *per process*: under ``torchrun`` with ``W`` processes a step
        averages gradients over ``W * batch_size`` samples.
    lr : float, default 2e-4
        AdamW learning rate.
    weight_decay : float, default 0.0
    ema_decay : float, default 0.999
        EMA decay, warmed up as ``min(decay, (1 + step) / (10 + step))``.
    grad_clip : float, default 1.0
        Global gradient-norm clip (``0`` disables).
    seed : int, default 0
    checkpoint_every : int, default 0
        Steps between checkpoints (``0``: only at the end).
    prediction : str or None
        ``"signal"`` or ``"eps"``; default per process (:func:`default_prediction`).
    resolution_weights : dict of int to float, list of (int, float), or None
        Mixed-resolution training (``process`` and ``data`` given as ``{size: ...}``
        mappings): the relative frequency of each size; ``None`` draws the sizes
        uniformly. Weights need not sum to one. Keys may be strings of digits (as JSON
        and TOML write them); the value is normalised to ``{int: float}`` sorted by size.
    transition_fraction : float, default 0.0
        For processes whose resolution changes (SSD): the fraction of batches drawn at a
        resolution-change step (:func:`sample_timesteps`). SSD's Algorithm 4 (``0``) visits
        each of the few change steps once per ~T batches, which leaves the network's
        resolution-increasing route - the one super-resolution enters by - untrained in a
        short run; ``0.1`` spends a tenth of the batches there.
    """

    steps: int
    batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 0
    prediction: str | None = None
    resolution_weights: dict | list | None = None
    transition_fraction: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            ("steps", self.steps >= 1),
            ("batch_size", self.batch_size >= 1),
            ("lr", self.lr > 0),
            ("weight_decay", self.weight_decay >= 0),
            ("ema_decay", 0 <= self.ema_decay < 1),
            ("grad_clip", self.grad_clip >= 0),
            ("checkpoint_every", self.checkpoint_every >= 0),
            ("transition_fraction", 0 <= self.transition_fraction <= 1),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(
                    f"TrainConfig: {name} has an impossible value {getattr(self, name)!r}"
                )
        if self.resolution_weights is not None:
            self.resolution_weights = _resolution_weights(self.resolution_weights)


@dataclass
class TrainResult:
    """Result of :func:`train`: per-step losses of this run, the final step and EMA weights.

    Under ``torchrun`` the losses are the means over all processes (the same on every rank).
    """

    losses: list[float]
    step: int
    ema: dict = field(repr=False, default_factory=dict)


def _check_data(process: DiffusionProcess, data, name: str, world_size: int) -> None:
    shape = tuple(process.shape_at(0))
    if not isinstance(data, torch.Tensor) or tuple(data.shape[1:]) != shape or data.shape[0] < 1:
        got = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise ValueError(f"train: expected {name} of shape (N, *{shape}), got {got}")
    if not bool(torch.isfinite(data).all()):
        raise ValueError(f"train: expected finite {name}, got NaN or inf values")
    if data.shape[0] < world_size:
        raise ValueError(
            f"train: expected at least one sample of {name} per process ({world_size}), "
            f"got {data.shape[0]}"
        )


def _resolutions(process, data, config: TrainConfig, world_size: int):
    """``({size: (process, data)}, probabilities or None, prediction)`` after validation."""
    if not isinstance(process, Mapping) and not isinstance(data, Mapping):
        if not isinstance(process, DiffusionProcess):
            raise TypeError(f"train: expected a diffusion process, got {type(process).__name__}")
        if config.resolution_weights is not None:
            raise ValueError(
                "train: expected process and data as {size: ...} mappings with "
                "TrainConfig.resolution_weights, got a single process"
            )
        _check_data(process, data, "data", world_size)
        entries = {int(process.shape_at(0)[-1]): (process, data)}
        return entries, None, config.prediction or default_prediction(process)
    if not (isinstance(process, Mapping) and isinstance(data, Mapping)):
        raise TypeError(
            "train: expected process and data both as {size: ...} mappings for mixed "
            f"resolutions, got {type(process).__name__} and {type(data).__name__}"
        )
    for name, mapping in (("process", process), ("data", data)):
        if not mapping:
            raise ValueError(f"train: expected at least one size in {name}, got none")
        for key in mapping:
            if isinstance(key, bool) or not isinstance(key, int) or key < 1:
                raise TypeError(
                    f"train: expected positive int sizes as keys of {name}, got {key!r}"
                )
    if set(process) != set(data):
        raise ValueError(
            f"train: expected the same sizes in process and data, got {sorted(process)} "
            f"and {sorted(data)}"
        )
    sizes = sorted(process)
    for size in sizes:
        if not isinstance(process[size], DiffusionProcess):
            raise TypeError(
                f"train: expected process[{size}] as a diffusion process, "
                f"got {type(process[size]).__name__}"
            )
        _check_data(process[size], data[size], f"data[{size}]", world_size)
    weights = config.resolution_weights or dict.fromkeys(sizes, 1.0)
    no_data = sorted(set(weights) - set(sizes))
    if no_data:
        raise ValueError(
            f"train: TrainConfig.resolution_weights has sizes {no_data} without data; "
            f"data has sizes {sizes}"
        )
    no_weight = sorted(set(sizes) - set(weights))
    if no_weight:
        raise ValueError(
            f"train: expected a resolution weight for every size in data, got none for {no_weight}"
        )
    predictions = {config.prediction or default_prediction(process[s]) for s in sizes}
    if len(predictions) > 1:
        raise ValueError(
            f"train: the processes default to different predictions {sorted(predictions)}; "
            "set TrainConfig.prediction"
        )
    probs = torch.tensor([weights[s] for s in sizes], dtype=torch.float64)
    return {s: (process[s], data[s]) for s in sizes}, probs / probs.sum(), predictions.pop()


_CSV_COLUMNS = ("step", "loss", "lr", "grad_norm", "seconds", "resolution")


class _CsvLog:
    """One row per step, flushed at once; an existing file is continued after ``start``."""

    def __init__(self, path, start: int) -> None:
        path = Path(path)
        if not path.parent.is_dir():
            raise ValueError(f"train: expected an existing folder for log_csv {path}, got none")
        header = ",".join(_CSV_COLUMNS)
        if path.is_file() and path.stat().st_size > 0:
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            if lines[0] != header:
                raise ValueError(
                    f"train: expected log_csv {path} with the columns {header!r}, got "
                    f"{lines[0][:80]!r}; log to another file"
                )
            kept = [header]
            for line in lines[1:]:
                # rows past the start (written after the last checkpoint of a crashed run)
                # are repeated by this run; a row cut short by the crash is dropped too
                fields = line.split(",")
                if len(fields) == len(_CSV_COLUMNS) and fields[0].isdigit():
                    if int(fields[0]) <= start:
                        kept.append(line)
            new = "\n".join(kept) + "\n"
            if new != text:
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(new, encoding="utf-8")
                os.replace(tmp, path)
        else:
            path.write_text(header + "\n", encoding="utf-8")
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, step, loss, lr, grad_norm, seconds, resolution) -> None:
        norm = "" if grad_norm is None else repr(grad_norm)
        self._file.write(f"{step},{loss!r},{lr!r},{norm},{seconds:.6f},{resolution}\n")
        # flushed every step: the rows of all steps up to a checkpoint are on disk (in the
        # OS cache, which survives a killed process) before that checkpoint is written
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _same_step_everywhere(step: int, device: torch.device) -> None:
    both = torch.tensor([step, -step], device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    high, low = int(both[0]), -int(both[1])
    if high != low:
        raise ValueError(
            f"train: the processes resumed from different steps ({low} to {high}); put the "
            "checkpoint on a file system that every process reads"
        )


def train(
    net: torch.nn.Module,
    process: DiffusionProcess | Mapping[int, DiffusionProcess],
    data: torch.Tensor | Mapping[int, torch.Tensor],
    config: TrainConfig,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    meta: dict | None = None,
    progress: bool = True,
    log_csv: str | Path | None = None,
    callback: Callable[[int, torch.nn.Module, dict], None] | None = None,
    callback_every: int = 0,
    find_unused_parameters: bool | None = None,
) -> TrainResult:
    """Train ``net`` on ``data`` for ``process``: AdamW, EMA, gradient clipping, exact resume.

    Each step draws a batch of data and timesteps (:func:`sample_timesteps`: SSD batches
    share one resolution), forms ``x_t`` with :meth:`q_sample`, and minimises the weighted
    squared error to :func:`training_target` (weights :func:`loss_weight`). All randomness
    comes from torch's global (CPU) generator, seeded with ``config.seed`` and saved in every
    checkpoint, so a resumed run repeats the uninterrupted one step for step.

    The same script runs single-process or under ``torchrun`` (see Notes).

    Parameters
    ----------
    net : torch.nn.Module
        Called through :func:`as_denoiser`; trained on the device of its parameters.
    process : DiffusionProcess, or dict of int to DiffusionProcess
        A mapping ``{size: process}`` trains on mixed resolutions (DFU): each step draws
        one size with the probabilities ``config.resolution_weights`` (default uniform)
        and trains on that size's process and data. ``net`` must accept every size
        (``models.DualFNOUNet`` does).
    data : Tensor, shape (N, \\\\*process.shape_at(0)), or dict of int to Tensor
        With a mapping ``process``: ``{size: Tensor (N_size, *process[size].shape_at(0))}``
        with the same sizes.
    config : TrainConfig
    checkpoint : str or Path, optional
        File to write every ``config.checkpoint_every`` steps and at the end; with
        ``resume`` an existing file is loaded first (its weights must match ``net``).
    resume : bool, default True
    meta : dict, optional
        JSON-able description stored with the checkpoint (model and process settings).
    progress : bool, default True
        A tqdm bar (steps/s, ETA, the loss).
    log_csv : str or Path, optional
        CSV file receiving one row per step, columns
        ``step`` (1-based), ``loss`` (mean over processes), ``lr``, ``grad_norm`` (global
        norm before clipping), ``seconds`` (wall time of the step) and ``resolution`` (the
        size drawn; the image width for one process). The header is written once and rows
        are flushed every step. An existing file is continued: rows after the step the run
        starts from are dropped first (after a crash, those after the last checkpoint), so
        each step appears once.
    callback : callable, optional
        ``callback(step, net, ema)`` after every ``callback_every``-th step (e.g. to write a
        grid of samples); ``net`` is the bare module, ``ema`` the live EMA ``state_dict``
        (copy what you keep, change nothing). It runs on a forked random state, so it does
        not change the training; ``net`` is put back in train mode afterwards.
    callback_every : int, default 0
        Required (``>= 1``) with ``callback``.
    find_unused_parameters : bool, optional
        Passed to ``DistributedDataParallel``; default True for networks whose path depends
        on the output size (an ``out_size`` argument: ``models.FlexiUNet``), else False.

    Returns
    -------
    TrainResult

    Notes
    -----
    **Multi-process training.** Under ``torchrun`` (``WORLD_SIZE > 1``; or after the caller
    initialised a process group) :func:`init_distributed` joins the group (gloo on CPU, NCCL
    on GPU, where a CPU ``net`` is moved to ``cuda:LOCAL_RANK``) and the network is wrapped
    in ``DistributedDataParallel``:

    * ``config.batch_size`` is per process; rank ``r`` of ``W`` draws its batch from its
      shard ``data[r::W]`` of every data tensor.
    * Random streams: every step, rank ``r`` reseeds the global generator from
      ``(config.seed, r, step)`` (:func:`numpy.random.SeedSequence` hashing). No per-rank
      state needs saving, a resumed run repeats the uninterrupted one on every rank, and a
      run resumed with another number of processes continues deterministically (with other
      batches). A single process keeps one continuous stream (saved in checkpoints), as
      before.
    * The resolution of a mixed-resolution step comes from a generator seeded with
      ``(config.seed, step)``, so all ranks train on the same size each step, in lock
      step, and a resume repeats the sequence.
    * DDP averages gradients, so weights, optimiser state and EMA stay identical on all
      ranks. Only rank 0 shows progress, writes the CSV log and checkpoints (the bare
      module's ``state_dict``: loadable by a single-process run) and calls ``callback``
      (the others wait for it in the next step's gradient exchange, so keep it shorter
      than the process group's timeout).
    * Every rank loads the checkpoint on resume; they must all see the same file.

    Launch (the script calls :func:`train` as for one process)::

        torchrun --standalone --nproc_per_node 4 train_script.py
        python -m torch.distributed.run --standalone --nproc_per_node 2 train_script.py

    Examples
    --------
    >>> import torch, models, lineardiff
    >>> net = models.UNet(1, base_channels=8, channel_mult=(1, 2), attention_levels=(),
    ...                   num_groups=4)
    >>> data = torch.randn(16, 1, 8, 8)
    >>> res = lineardiff.train(net, lineardiff.DDPM((1, 8, 8), T=50), data,
    ...                        lineardiff.TrainConfig(steps=2, batch_size=4), progress=False)
    >>> res.step, len(res.losses)
    (2, 2)
    """
    if log_csv is not None and not isinstance(log_csv, (str, Path)):
        raise TypeError(f"train: expected log_csv as a str or Path, got {type(log_csv).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"train: expected a callable callback, got {type(callback).__name__}")
    if (
        isinstance(callback_every, bool)
        or not isinstance(callback_every, int)
        or callback_every < 0
    ):
        raise ValueError(f"train: expected callback_every >= 0, got {callback_every!r}")
    if callback is not None and callback_every == 0:
        raise ValueError("train: expected callback_every >= 1 with a callback, got 0")
    if find_unused_parameters is not None and not isinstance(find_unused_parameters, bool):
        raise TypeError(
            "train: expected find_unused_parameters as a bool or None, "
            f"got {type(find_unused_parameters).__name__}"
        )
    info = init_distributed()
    world, rank = info.world_size, info.rank
    is_main = rank == 0
    entries, probs, prediction = _resolutions(process, data, config, world)
    sizes = list(entries)
    if info.backend == "nccl" and next(net.parameters()).device.type != "cuda":
        net.to(info.device)
    device = next(net.parameters()).device
    takes_size = _takes_size(net)
    dtype = next(net.parameters()).dtype
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = None
    step = 0
    torch.manual_seed(config.seed)
    record = {"train": asdict(config), "meta": meta or {}}
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        ck = load_checkpoint(checkpoint)
        check_state_matches(checkpoint, ck.model, net)
        net.load_state_dict(ck.model)
        opt.load_state_dict(ck.optimizer)
        if ck.ema is not None:
            ema = {k: v.to(device) for k, v in ck.ema.items()}
        step = ck.step
        restore_rng(ck.rng)
    comm_device = device if info.backend == "nccl" else torch.device("cpu")
    module = net
    if world > 1:
        _same_step_everywhere(step, comm_device)
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(
            net,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=takes_size
            if find_unused_parameters is None
            else find_unused_parameters,
        )
    if ema is None:  # after the DDP wrap, which gave every rank rank 0's weights
        ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
    model = _denoiser(module, takes_size)
    # rank r's shard of each data tensor is data[r::world]
    shard = {s: (x.shape[0] - rank + world - 1) // world for s, (_, x) in entries.items()}

    def save():
        if checkpoint is not None and is_main:
            state = Checkpoint(
                net.state_dict(),
                record,
                step,
                ema,
                opt.state_dict(),
                capture_rng(),
                extra={"world_size": world},
            )
            save_checkpoint(checkpoint, state)

    log = _CsvLog(log_csv, step) if log_csv is not None and is_main else None
    losses = []
    bar = tqdm(
        total=config.steps,
        initial=step,
        disable=not progress or not is_main,
        desc="training",
        unit="step",
    )
    module.train()
    try:
        while step < config.steps:
            started = time.perf_counter()
            if world > 1:
                torch.manual_seed(step_seed(config.seed, _RANK_STREAM, rank, step + 1))
            size = sizes[0]
            if probs is not None and len(sizes) > 1:
                draw = torch.Generator().manual_seed(
                    step_seed(config.seed, _RESOLUTION_STREAM, step + 1)
                )
                size = sizes[int(torch.multinomial(probs, 1, generator=draw))]
            proc, x_all = entries[size]
            idx = torch.randint(0, shard[size], (config.batch_size,))
            if world > 1:
                idx = idx * world + rank
            x0 = x_all[idx].to(device=device, dtype=dtype)
            t = sample_timesteps(
                proc, config.batch_size, transition_fraction=config.transition_fraction
            )
            noise = torch.randn((config.batch_size, *proc.shape_at(int(t[0]))), dtype=dtype)
            noise = noise.to(device)
            x_t = proc.q_sample(x0, t, noise)
            target = training_target(proc, x0, t, noise, prediction=prediction)
            weight = loss_weight(proc, t, prediction=prediction).to(device=device, dtype=dtype)
            out = model(x_t, t.to(device), tuple(target.shape[1:]))
            per_sample = (out - target).square().flatten(1).mean(1)
            loss = (weight * per_sample).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = None
            if config.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            elif log is not None:
                # what clip_grad_norm_ returns, without touching the gradients
                # (torch.nn.utils.get_total_norm needs torch >= 2.6)
                grads = [p.grad.detach() for p in net.parameters() if p.grad is not None]
                norms = [torch.linalg.vector_norm(g) for g in grads]
                norm = torch.linalg.vector_norm(torch.stack(norms)) if norms else 0.0
            opt.step()
            step += 1
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for k, v in net.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
                    else:
                        ema[k].copy_(v)
            reported = loss.detach()
            if world > 1:  # every rank sees (and checks) the same mean loss
                reported = reported.to(comm_device).clone()
                dist.all_reduce(reported)
                reported /= world
            value = float(reported)
            if not math.isfinite(value):
                raise FloatingPointError(f"train: the loss became {value} at step {step}; lower lr")
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}")
            if log is not None:
                lr = opt.param_groups[0]["lr"]
                seconds = time.perf_counter() - started
                log.write(step, value, lr, None if norm is None else float(norm), seconds, size)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save()
            if callback is not None and is_main and step % callback_every == 0:
                devices = [device.index] if device.type == "cuda" else []
                with torch.random.fork_rng(devices=devices):
                    callback(step, net, ema)
                module.train()
        save()
    finally:
        bar.close()
        if log is not None:
            log.close()
    if world > 1:  # the final checkpoint exists when train returns on any rank
        dist.barrier()
    return TrainResult(losses, step, ema)
