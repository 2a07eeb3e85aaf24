"""One training loop for every process x model pair, single- or multi-process."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .._denoiser import denoiser_of, takes_size
from .._objectives import denoising_loss, sample_timesteps
from .._process import DiffusionProcess
from ..data.augment import random_symmetries
from ._checkpoint import (
    Checkpoint,
    CheckpointError,
    capture_rng,
    check_optimizer_matches,
    check_state_matches,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng,
    save_checkpoint,
)
from ._config import TrainConfig, TrainResult
from ._distributed import DistributedInfo, init_distributed, step_seed
from ._interrupt import StopRequests
from ._log import CsvLog

__all__ = ["train"]

# stream labels for step_seed: the per-rank data/noise stream and the shared resolution draw
_RANK_STREAM, _RESOLUTION_STREAM = 0, 1


def _check_data(process: DiffusionProcess, data, name: str, world_size: int) -> None:
    shape = tuple(process.shape_at(0))
    if not isinstance(data, torch.Tensor) or tuple(data.shape[1:]) != shape or data.shape[0] < 1:
        got = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise ValueError(f"train: expected {name} of shape (N, *{shape}), got {got}")
    if data.device.type == "meta":
        raise ValueError(f"train: expected {name} holding values, got a meta tensor")
    if data.is_complex():
        raise TypeError(f"train: expected real {name}, got {data.dtype}")
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
        return entries, None, config.prediction or process.default_prediction
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
    predictions = {config.prediction or process[s].default_prediction for s in sizes}
    if len(predictions) > 1:
        raise ValueError(
            f"train: the processes default to different predictions {sorted(predictions)}; "
            "set TrainConfig.prediction"
        )
    probs = torch.tensor([weights[s] for s in sizes], dtype=torch.float64)
    return {s: (process[s], data[s]) for s in sizes}, probs / probs.sum(), predictions.pop()


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
    squared error to :func:`training_target` (weights :func:`loss_weight`; the whole loss is
    :func:`denoising_loss`). All randomness
    comes from random states private to the run (torch's global generator forked at entry and
    seeded with ``config.seed``; NumPy's and Python's states put back on return), saved in
    every checkpoint, so a resumed run repeats the uninterrupted one step for step and the
    caller's random states are left as they were.

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
        ``resume`` an existing file is loaded first (:func:`load_checkpoint` verifies it; its
        weights, EMA and optimiser state must match ``net``, its step must not exceed
        ``config.steps``). Temporary files that killed writes of it left behind are removed
        first (:func:`remove_stale_temporaries`). On SIGINT (Ctrl-C) or SIGTERM a
        single-process run finishes the step in progress, writes the checkpoint and raises
        :class:`KeyboardInterrupt` naming the step; a second signal stops it at once.
    resume : bool, default True
    meta : dict, optional
        JSON-able description stored with the checkpoint (model and process settings). When
        it holds ``"resume_key"``, a checkpoint whose recorded meta holds another value is
        refused instead of resumed (the command line stores the settings that must not change
        there).
    progress : bool, default True
        A tqdm bar (steps/s, ETA, the loss).
    log_csv : str or Path, optional
        CSV file receiving one row per step, columns
        ``step`` (1-based), ``loss`` (mean over processes), ``lr``, ``grad_norm`` (global
        norm before clipping), ``seconds`` (wall time of the step), ``resolution`` (the
        size drawn; the image width for one process) and ``cpu_seconds`` (CPU time of this
        process in the step, all its threads: a paused or starved process does not
        accumulate it, where its wall time does). The header is written once and rows
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
    * Random streams: every step, rank ``r`` reseeds the run's generator from
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
    if not isinstance(net, torch.nn.Module) or next(net.parameters(), None) is None:
        got = "a module without parameters" if isinstance(net, torch.nn.Module) else \
            type(net).__name__
        raise TypeError(f"train: expected net as a torch.nn.Module with parameters, got {got}")
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"train: expected config as a TrainConfig (lineardiff.TrainConfig(steps=...)), got "
            f"{type(config).__name__}"
        )
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(
            f"train: expected checkpoint as a str, Path or None, got {type(checkpoint).__name__}"
        )
    for name, value in (("resume", resume), ("progress", progress)):
        if not isinstance(value, bool):
            raise TypeError(f"train: expected {name} as True or False, got {value!r}")
    _check_train_args(log_csv, callback, callback_every, find_unused_parameters)
    info = init_distributed()
    entries, probs, prediction = _resolutions(process, data, config, info.world_size)
    if info.backend == "nccl" and next(net.parameters()).device.type != "cuda":
        net.to(info.device)
    device = next(net.parameters()).device
    devices = [device.index] if device.type == "cuda" else []
    with _private_rng(devices):
        return _run(net, entries, probs, prediction, config, info, checkpoint=checkpoint,
                    resume=resume, meta=meta, progress=progress, log_csv=log_csv,
                    callback=callback, callback_every=callback_every,
                    find_unused_parameters=find_unused_parameters)


def _check_train_args(log_csv, callback, callback_every, find_unused_parameters) -> None:
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


@contextlib.contextmanager
def _private_rng(devices):
    """Run the body on forked torch states; put NumPy's and Python's global states back."""
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002 - the caller's state, untouched
        random.setstate(py_state)


class _State:
    """Optimiser, EMA weights and step of a run: fresh, or loaded from its checkpoint."""

    def __init__(self, net, config: TrainConfig, checkpoint, resume: bool, device,
                 meta: dict | None) -> None:
        self.opt = torch.optim.AdamW(
            net.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.ema = None
        self.step = 0
        torch.manual_seed(config.seed)
        if checkpoint is not None and resume and Path(checkpoint).is_file():
            ck = load_checkpoint(checkpoint)
            _check_resumable(checkpoint, ck, config, meta)
            check_state_matches(checkpoint, ck.model, net)
            check_optimizer_matches(checkpoint, ck.optimizer, self.opt)
            net.load_state_dict(ck.model)
            self.opt.load_state_dict(ck.optimizer)
            if ck.ema is not None:  # load_checkpoint checked it against ck.model
                self.ema = {k: v.to(device) for k, v in ck.ema.items()}
            self.step = ck.step
            restore_rng(ck.rng)

    def update_ema(self, net, decay: float) -> None:
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if v.dtype.is_floating_point:
                    self.ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
                else:
                    self.ema[k].copy_(v)


def _differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))]
    return [] if a == b else [where or "the whole value"]


def _check_resumable(path, ck: Checkpoint, config: TrainConfig, meta: dict | None) -> None:
    """Refuse a checkpoint that is no training state, is past ``config.steps``, or was
    written with another ``meta["resume_key"]`` (compared here, at the moment it is loaded)."""
    if ck.optimizer is None or ck.rng is None:
        raise CheckpointError(
            f"train: {path} holds no optimiser or random state (a model file?); start a new "
            "checkpoint from its weights instead"
        )
    if ck.step > config.steps:
        raise CheckpointError(
            f"train: {path} is at step {ck.step}, expected at most TrainConfig.steps = "
            f"{config.steps}; raise steps to continue it"
        )
    recorded = ck.config.get("meta") if isinstance(ck.config.get("meta"), dict) else {}
    if meta is None or "resume_key" not in meta or "resume_key" not in recorded:
        return  # checkpoints written before resume keys existed were compared by the caller
    diff = _differences(recorded["resume_key"], json.loads(json.dumps(meta["resume_key"])))
    if diff:
        raise CheckpointError(
            f"train: {path} was trained with another configuration (differs in "
            f"{', '.join(diff)}); use another checkpoint, or resume=False to start afresh"
        )


def _wrap(net, info: DistributedInfo, device, find_unused_parameters):
    """``net`` itself, or wrapped in DistributedDataParallel under torchrun."""
    if info.world_size == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        net,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=takes_size(net)
        if find_unused_parameters is None
        else find_unused_parameters,
    )


def _grad_norm(net, clip: float, logging: bool):
    """Clip the gradients (``clip > 0``) and return their global norm before clipping."""
    if clip > 0:
        return torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    if not logging:
        return None
    # what clip_grad_norm_ returns, without touching the gradients
    # (torch.nn.utils.get_total_norm needs torch >= 2.6)
    norms = [torch.linalg.vector_norm(p.grad.detach()) for p in net.parameters()
             if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else 0.0


def lr_at(config: TrainConfig, step: int) -> float:
    """The learning rate of (1-based) ``step``: ``config.lr``, decayed linearly to zero over
    the last ``config.lr_decay_steps`` steps."""
    if not config.lr_decay_steps:
        return config.lr
    return config.lr * min(1.0, max(0, config.steps - step + 1) / config.lr_decay_steps)


def _run(net, entries, probs, prediction, config, info, *, checkpoint, resume, meta, progress,
         log_csv, callback, callback_every, find_unused_parameters) -> TrainResult:
    world, rank = info.world_size, info.rank
    is_main = rank == 0
    sizes = list(entries)
    device = next(net.parameters()).device
    dtype = next(net.parameters()).dtype
    if checkpoint is not None and is_main:
        remove_stale_temporaries(checkpoint)
    state = _State(net, config, checkpoint, resume, device, meta)
    record = {"train": asdict(config), "meta": meta or {}}
    comm_device = device if info.backend == "nccl" else torch.device("cpu")
    if world > 1:
        _same_step_everywhere(state.step, comm_device)
    module = _wrap(net, info, device, find_unused_parameters)
    if state.ema is None:  # after the DDP wrap, which gave every rank rank 0's weights
        state.ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
    model = denoiser_of(module, takes_size(net))
    # rank r's shard of each data tensor is data[r::world]
    shard = {s: (x.shape[0] - rank + world - 1) // world for s, (_, x) in entries.items()}
    if "dihedral" in config.symmetries:
        for _, x in entries.values():
            if x.shape[-1] != x.shape[-2]:
                raise ValueError(
                    "train: TrainConfig.symmetries 'dihedral' needs square images, got data of "
                    f"shape {tuple(x.shape)}"
                )

    def save():
        if checkpoint is not None and is_main:
            ck = Checkpoint(net.state_dict(), record, state.step, state.ema,
                            state.opt.state_dict(), capture_rng(), extra={"world_size": world})
            save_checkpoint(checkpoint, ck)

    log = CsvLog(log_csv, state.step) if log_csv is not None and is_main else None
    losses = []
    bar = tqdm(total=config.steps, initial=state.step, disable=not progress or not is_main,
               desc="training", unit="step")
    module.train()
    with StopRequests(enabled=world == 1 and checkpoint is not None) as stop:
        try:
            while state.step < config.steps:
                started, started_cpu = time.perf_counter(), time.process_time()
                step = state.step
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
                if config.symmetries:
                    x0 = random_symmetries(x0, config.symmetries)
                t = sample_timesteps(
                    proc, config.batch_size, transition_fraction=config.transition_fraction
                )
                noise = torch.randn((config.batch_size, *proc.shape_at(int(t[0]))), dtype=dtype)
                loss = denoising_loss(model, proc, x0, t, prediction=prediction,
                                      noise=noise.to(device), weight_floor=config.loss_floor)
                for group in state.opt.param_groups:  # a function of the step: resumes exactly
                    group["lr"] = lr_at(config, step + 1)
                state.opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = _grad_norm(net, config.grad_clip, log is not None)
                state.opt.step()
                state.step = step = step + 1
                state.update_ema(net, min(config.ema_decay, (1 + step) / (10 + step)))
                reported = loss.detach()
                if world > 1:  # every rank sees (and checks) the same mean loss
                    reported = reported.to(comm_device).clone()
                    dist.all_reduce(reported)
                    reported /= world
                value = float(reported)
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"train: the loss became {value} at step {step}; lower lr"
                    )
                losses.append(value)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4g}")
                if log is not None:
                    lr = state.opt.param_groups[0]["lr"]
                    seconds = time.perf_counter() - started
                    log.write(step, value, lr, None if norm is None else float(norm), seconds,
                              size, time.process_time() - started_cpu)
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    save()
                if callback is not None and is_main and step % callback_every == 0:
                    devices = [device.index] if device.type == "cuda" else []
                    with torch.random.fork_rng(devices=devices):
                        callback(step, net, state.ema)
                    module.train()
                if stop.signal is not None:  # SIGINT / SIGTERM: stop with a current checkpoint
                    save()
                    raise KeyboardInterrupt(
                        f"train: stopped by signal {stop.signal} after step {step}; checkpoint "
                        f"{checkpoint} saved at that step (run again to resume)"
                    )
            save()
        finally:
            bar.close()
            if log is not None:
                log.close()
    if world > 1:  # the final checkpoint exists when train returns on any rank
        dist.barrier()
    return TrainResult(losses, state.step, state.ema)
