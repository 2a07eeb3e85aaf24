"""The checkpoint format: what a checkpoint holds, its error type, random states and digests."""

from __future__ import annotations

import hashlib
import os
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


def check_path(path, where: str) -> None:
    """A file path: a ``str`` or an ``os.PathLike`` (a :class:`TypeError` otherwise)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: expected a path, got {type(path).__name__}")


_RNG_KEYS = ("torch", "numpy", "python")
_RNG_EXPECTED = "the dict capture_rng() returns, with keys 'torch', 'numpy' and 'python'"


def check_rng(rng, where: str, name: str = "rng") -> None:
    """Raise unless ``rng`` is a random state as :func:`capture_rng` returns it.

    Each of the three states is tried on a fresh generator (the global ones are not
    touched): a :class:`TypeError` for a ``rng`` that is not a dict or a torch state that
    is not a tensor, a :class:`ValueError` for missing or unknown keys and states the
    generators refuse.
    """
    if not isinstance(rng, dict):
        raise TypeError(f"{where}: expected {name} as {_RNG_EXPECTED}, got {type(rng).__name__}")
    if set(rng) != set(_RNG_KEYS):
        got = "keys " + ", ".join(repr(k) for k in rng) if rng else "an empty dict"
        raise ValueError(f"{where}: expected {name} as {_RNG_EXPECTED}, got {got}")
    state, want = rng["torch"], torch.get_rng_state()
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"{where}: expected {name}['torch'] as a torch.Tensor "
                        f"(torch.get_rng_state()), got {type(state).__name__}")
    if state.dtype != want.dtype or state.shape != want.shape or state.device.type != "cpu":
        raise ValueError(
            f"{where}: expected {name}['torch'] as a uint8 CPU tensor of shape "
            f"{tuple(want.shape)} (torch.get_rng_state()), got {_dtype_name(state)} of shape "
            f"{tuple(state.shape)} on {state.device.type}"
        )
    try:
        torch.Generator().set_state(state)
    except RuntimeError as err:
        raise ValueError(f"{where}: expected {name}['torch'] as a torch random state, got "
                         f"an invalid one ({err})") from None
    numpy = rng["numpy"]
    try:
        if not isinstance(numpy, (tuple, list)) or len(numpy) != 5:
            raise TypeError("not a tuple (kind, keys, pos, has_gauss, cached)")
        if len(numpy[1]) != 624:  # MT19937's state words
            raise ValueError(f"{len(numpy[1])} key words instead of 624")
        np.random.RandomState().set_state(numpy)  # noqa: NPY002 - validates only
    except (TypeError, ValueError, OverflowError, IndexError, KeyError) as err:
        raise ValueError(f"{where}: expected {name}['numpy'] as a NumPy MT19937 state "
                         f"(np.random.get_state()), got an invalid one ({err})") from None
    try:
        random.Random().setstate(rng["python"])
    except (TypeError, ValueError, OverflowError, IndexError) as err:
        raise ValueError(f"{where}: expected {name}['python'] as a Python random state "
                         f"(random.getstate()), got an invalid one ({err})") from None


def restore_rng(rng: dict) -> None:
    """Restore states captured by :func:`capture_rng`.

    Raises
    ------
    TypeError, ValueError
        If ``rng`` is not such a state (checked before any global state changes).
    """
    check_rng(rng, "restore_rng")
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])  # noqa: NPY002 - restores the global state
    random.setstate(rng["python"])


def _json_rng(rng: dict) -> dict:
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    return {
        "numpy": [kind, np.asarray(keys, dtype=np.uint32).tolist(), int(pos), int(has_gauss),
                  float(cached)],
        "python": [rng["python"][0], list(rng["python"][1]), rng["python"][2]],
    }


def _sha256(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's bytes as safetensors stores them (C order, little-endian)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy()).hexdigest()


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
