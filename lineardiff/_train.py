"""One training loop for every process x model pair."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ._checkpoint import (
    Checkpoint,
    capture_rng,
    check_state_matches,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from ._process import DiffusionProcess
from ._training import default_prediction, loss_weight, sample_timesteps, training_target

__all__ = ["TrainConfig", "TrainResult", "as_denoiser", "train"]


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
    import inspect

    takes_size = "out_size" in inspect.signature(net.forward).parameters

    def model(x, t, out_shape):
        if takes_size:
            return net(x, t, out_size=tuple(out_shape[-2:]))
        return net(x, t)

    model.net = net
    return model


@dataclass
class TrainConfig:
    """Settings of :func:`train` (all JSON-able; stored in checkpoints).

    Attributes
    ----------
    steps : int
        Optimiser steps in total (a resumed run continues to this count).
    batch_size : int, default 32
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

    def __post_init__(self) -> None:
        checks = [
            ("steps", self.steps >= 1),
            ("batch_size", self.batch_size >= 1),
            ("lr", self.lr > 0),
            ("weight_decay", self.weight_decay >= 0),
            ("ema_decay", 0 <= self.ema_decay < 1),
            ("grad_clip", self.grad_clip >= 0),
            ("checkpoint_every", self.checkpoint_every >= 0),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(
                    f"TrainConfig: {name} has an impossible value {getattr(self, name)!r}"
                )


@dataclass
class TrainResult:
    """Result of :func:`train`: per-step losses of this run, the final step and EMA weights."""

    losses: list[float]
    step: int
    ema: dict = field(repr=False, default_factory=dict)


def train(
    net: torch.nn.Module,
    process: DiffusionProcess,
    data: torch.Tensor,
    config: TrainConfig,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    meta: dict | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``net`` on ``data`` for ``process``: AdamW, EMA, gradient clipping, exact resume.

    Each step draws a batch of data and timesteps (:func:`sample_timesteps`: SSD batches
    share one resolution), forms ``x_t`` with :meth:`q_sample`, and minimises the weighted
    squared error to :func:`training_target` (weights :func:`loss_weight`). All randomness
    comes from torch's global generator, seeded with ``config.seed`` and saved in every
    checkpoint, so a resumed run repeats the uninterrupted one step for step.

    Parameters
    ----------
    net : torch.nn.Module
        Called through :func:`as_denoiser`.
    process : DiffusionProcess
    data : Tensor, shape (N, \\\\*process.shape_at(0))
    config : TrainConfig
    checkpoint : str or Path, optional
        File to write every ``config.checkpoint_every`` steps and at the end; with
        ``resume`` an existing file is loaded first (its weights must match ``net``).
    resume : bool, default True
    meta : dict, optional
        JSON-able description stored with the checkpoint (model and process settings).
    progress : bool, default True

    Returns
    -------
    TrainResult
    """
    if not isinstance(process, DiffusionProcess):
        raise TypeError(f"train: expected a diffusion process, got {type(process).__name__}")
    shape = tuple(process.shape_at(0))
    if not isinstance(data, torch.Tensor) or tuple(data.shape[1:]) != shape or data.shape[0] < 1:
        got = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise ValueError(f"train: expected data of shape (N, *{shape}), got {got}")
    if not bool(torch.isfinite(data).all()):
        raise ValueError("train: expected finite data, got NaN or inf values")
    prediction = config.prediction or default_prediction(process)
    model = as_denoiser(net)
    dtype = next(net.parameters()).dtype
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
    step = 0
    torch.manual_seed(config.seed)
    record = {"train": asdict(config), "meta": meta or {}}
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        ck = load_checkpoint(checkpoint)
        check_state_matches(checkpoint, ck.model, net)
        net.load_state_dict(ck.model)
        opt.load_state_dict(ck.optimizer)
        ema = ck.ema
        step = ck.step
        restore_rng(ck.rng)

    def save():
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                Checkpoint(net.state_dict(), record, step, ema, opt.state_dict(), capture_rng()),
            )

    losses = []
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc="training")
    net.train()
    while step < config.steps:
        idx = torch.randint(0, data.shape[0], (config.batch_size,))
        x0 = data[idx].to(dtype)
        t = sample_timesteps(process, config.batch_size)
        noise = torch.randn((config.batch_size, *process.shape_at(int(t[0]))), dtype=dtype)
        x_t = process.q_sample(x0, t, noise)
        target = training_target(process, x0, t, noise, prediction=prediction)
        weight = loss_weight(process, t, prediction=prediction).to(dtype)
        out = model(x_t, t, tuple(target.shape[1:]))
        per_sample = (out - target).square().flatten(1).mean(1)
        loss = (weight * per_sample).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        opt.step()
        step += 1
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if v.dtype.is_floating_point:
                    ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
                else:
                    ema[k].copy_(v)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"train: the loss became {value} at step {step}; lower lr")
        losses.append(value)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4g}")
        if config.checkpoint_every and step % config.checkpoint_every == 0:
            save()
    bar.close()
    save()
    return TrainResult(losses, step, ema)
