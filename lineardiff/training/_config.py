"""Settings and result of :func:`~lineardiff.train`."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._checks import check_int, check_real
from ..data.augment import check_symmetries

__all__ = ["TrainConfig", "TrainResult"]


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
    lr_decay_steps : int, default 0
        Decay the learning rate linearly to zero over the last ``lr_decay_steps`` steps:
        step ``s`` (1-based) takes ``lr * min(1, (steps - s + 1) / lr_decay_steps)``
        (``0``: constant). A function of the step alone, so a resumed run continues it
        exactly; raising ``steps`` to continue a decayed run restarts the decay from the
        rate that step gets.
    symmetries : list of str, default ()
        Exact symmetries of the data's law, applied to every training sample as an
        independent uniformly random group element (:func:`lineardiff.data.random_symmetries`):
        any of ``"sign"``, ``"dihedral"`` (square images), ``"translate"`` (periodic
        shifts). Critical Ising on a periodic lattice has all three; photographs none.
    loss_floor : float, default 0.0
        Smallest loss weight of a signal target (:func:`lineardiff.loss_weight`'s ``floor``,
        in ``[0, 5]``): min-SNR-5 gives the high-noise states a weight ``SNR_t`` that
        vanishes (SSD's coarsest level at L = 32: below 1e-3 against 5), so the states
        where the global structure is decided barely train; ``1`` weighs them like
        ``SNR = 1``. Ignored for eps targets.
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
    lr_decay_steps: int = 0
    symmetries: tuple = ()
    loss_floor: float = 0.0

    def __post_init__(self) -> None:
        where = "TrainConfig"
        self.steps = check_int(where, "steps", self.steps, 1)
        self.batch_size = check_int(where, "batch_size", self.batch_size, 1)
        self.seed = check_int(where, "seed", self.seed, 0, 2**63 - 1)
        self.checkpoint_every = check_int(where, "checkpoint_every", self.checkpoint_every, 0)
        self.lr = check_real(where, "lr", self.lr, low=0)
        self.weight_decay = check_real(where, "weight_decay", self.weight_decay, low=0,
                                       open_low=False)
        self.ema_decay = check_real(where, "ema_decay", self.ema_decay, low=0, high=1,
                                    open_low=False)
        self.grad_clip = check_real(where, "grad_clip", self.grad_clip, low=0, open_low=False)
        self.transition_fraction = check_real(where, "transition_fraction",
                                              self.transition_fraction, low=0, high=1,
                                              open_low=False, open_high=False)
        if self.prediction is not None and self.prediction not in ("signal", "eps"):
            raise ValueError(
                f"{where}: expected prediction 'signal', 'eps' or None, got {self.prediction!r}"
            )
        self.lr_decay_steps = check_int(where, "lr_decay_steps", self.lr_decay_steps, 0)
        self.symmetries = check_symmetries(where, "symmetries", self.symmetries)
        self.loss_floor = check_real(where, "loss_floor", self.loss_floor, low=0.0, high=5.0,
                                     open_low=False, open_high=False)
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
