"""Checkpoints: safetensors weights plus JSON metadata, atomic writes, clear errors."""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "capture_rng",
    "check_state_matches",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

FORMAT = "lineardiff-checkpoint-1"


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


def _rng_from_json(meta: dict, torch_state: torch.Tensor) -> dict:
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    version, state, gauss = meta["python"]
    return {
        "torch": torch_state,
        "numpy": (kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached),
        "python": (version, tuple(state), gauss),
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path, checkpoint: Checkpoint) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then ``os.replace``).

    Tensors go into one safetensors file (``model.*``, ``ema.*``, ``optim.*``, ``rng.torch``);
    the rest is JSON in its metadata. Loading never unpickles code.

    Parameters
    ----------
    path : str or Path
        Target file (conventionally ``*.safetensors``); its folder must exist.
    checkpoint : Checkpoint

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, torch, os
    >>> from lineardiff import Checkpoint, save_checkpoint, load_checkpoint
    >>> net = torch.nn.Linear(2, 3)
    >>> folder = tempfile.mkdtemp()
    >>> path = save_checkpoint(os.path.join(folder, "c.safetensors"),
    ...                        Checkpoint(net.state_dict(), {"model": "linear"}, step=5))
    >>> load_checkpoint(path).step
    5
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise CheckpointError(f"save_checkpoint: expected an existing folder for {path}, got none")
    tensors: dict[str, torch.Tensor] = {}
    for prefix, state in (("model.", checkpoint.model), ("ema.", checkpoint.ema or {})):
        for key, value in state.items():
            tensors[prefix + key] = value.detach().cpu().contiguous().clone()
    meta = {
        "format": FORMAT,
        "config": checkpoint.config,
        "step": int(checkpoint.step),
        "has_ema": checkpoint.ema is not None,
        "extra": checkpoint.extra,
    }
    if checkpoint.optimizer is not None:
        state = checkpoint.optimizer["state"]
        slots = {}
        for idx, entry in state.items():
            slots[str(idx)] = {}
            for name, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous().clone()
                    slots[str(idx)][name] = "tensor"
                else:
                    slots[str(idx)][name] = value
        meta["optimizer"] = {"param_groups": checkpoint.optimizer["param_groups"], "state": slots}
    if checkpoint.rng is not None:
        tensors["rng.torch"] = checkpoint.rng["torch"].clone()
        meta["rng"] = _json_rng(checkpoint.rng)
    try:
        text = json.dumps(meta)
    except TypeError as err:
        raise CheckpointError(
            f"save_checkpoint: expected JSON-able config and state, got {err}"
        ) from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"lineardiff": text})
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal rights
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated or corrupt, or not a lineardiff checkpoint; the
        message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"load_checkpoint: expected a checkpoint file at {path}, found none")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get("lineardiff")
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"load_checkpoint: {path} is corrupt or not a safetensors file ({err})"
        ) from None
    try:
        meta = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"load_checkpoint: {path} is not a lineardiff checkpoint (format {FORMAT!r} expected)"
        )
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    ema = (
        {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")} if meta["has_ema"] else None
    )
    optimizer = None
    if "optimizer" in meta:
        state = {}
        for idx, slots in meta["optimizer"]["state"].items():
            state[int(idx)] = {
                name: tensors[f"optim.{idx}.{name}"] if kind == "tensor" else kind
                for name, kind in slots.items()
            }
        optimizer = {"state": state, "param_groups": meta["optimizer"]["param_groups"]}
    rng = _rng_from_json(meta["rng"], tensors["rng.torch"]) if "rng" in meta else None
    return Checkpoint(
        model, meta["config"], meta["step"], ema, optimizer, rng, meta.get("extra", {})
    )


def check_state_matches(path, state: dict, module: torch.nn.Module) -> None:
    """Raise :class:`CheckpointError` naming the first key or shape that differs.

    Parameters
    ----------
    path : str or Path
        For the message.
    state : dict of str to Tensor
        Loaded weights.
    module : torch.nn.Module
        What they are to be loaded into.
    """
    want = module.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: the checkpoint does not match the model: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]} (was it written for another configuration?)"
        )
    for key, value in want.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{path}: parameter {key!r} has shape {tuple(state[key].shape)} in the checkpoint, "
                f"expected {tuple(value.shape)} by the model"
            )
