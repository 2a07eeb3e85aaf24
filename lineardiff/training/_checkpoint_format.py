"""The checkpoint format: what a checkpoint holds, its error type, random states and digests."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Checkpoint", "CheckpointError", "capture_rng", "restore_rng"]

FORMAT = "lineardiff-checkpoint-1"
# safetensors metadata keys: the JSON text, and the sha256 of that text. Files written before
# digests existed have neither the digest nor the JSON field "tensors"; they still load.
_META, _META_SHA = "lineardiff", "lineardiff.sha256"
# A float whose square overflows float32 is no trained weight: it is what flipping the top
# exponent bit of an ordinary one gives (0.01 -> 2.6e36). Only checked where no digest is.
_IMPLAUSIBLE = 2.0**64


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not match what it is loaded into."""


@dataclass
class Checkpoint:
    """Everything a training run needs to resume exactly.

    Attributes
    ----------
    model : dict of str to Tensor
        The network's ``state_dict``.
    config : dict
        JSON-able description (model, process, data, training settings).
    step : int
        Optimiser steps taken.
    ema : dict of str to Tensor, optional
        EMA weights.
    optimizer : dict, optional
        An optimiser ``state_dict`` (tensors restored from the safetensors file).
    rng : dict, optional
        ``{"torch": ByteTensor, "numpy": state, "python": state}``.
    extra : dict
        Other JSON-able training state (e.g. the data order position).
    """

    model: dict
    config: dict
    step: int = 0
    ema: dict | None = None
    optimizer: dict | None = None
    rng: dict | None = None
    extra: dict = field(default_factory=dict)


def capture_rng() -> dict:
    """The torch, numpy and Python global random states."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the global state is what resumes need
        "python": random.getstate(),
    }


def restore_rng(rng: dict) -> None:
    """Restore states captured by :func:`capture_rng`."""
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])  # noqa: NPY002 - restores the global state
    random.setstate(rng["python"])


def _json_rng(rng: dict) -> dict:
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    return {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [rng["python"][0], list(rng["python"][1]), rng["python"][2]],
    }


def _sha256(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's bytes as safetensors stores them (C order, little-endian)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy()).hexdigest()


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
