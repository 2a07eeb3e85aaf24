"""Checkpoints: safetensors weights plus JSON metadata, atomic writes, digests, clear errors."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from .._checks import check_int
from ._checkpoint_format import (
    _META,
    _META_SHA,
    FORMAT,
    Checkpoint,
    CheckpointError,
    _dtype_name,
    _json_rng,
    _sha256,
    capture_rng,
    check_path,
    check_rng,
    restore_rng,
)
from ._checkpoint_read import load_checkpoint

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "capture_rng",
    "check_optimizer_matches",
    "check_state_matches",
    "load_checkpoint",
    "remove_stale_temporaries",
    "restore_rng",
    "save_checkpoint",
]

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_SAVE = "save_checkpoint"


def _check_tensor_dict(state, name: str) -> None:
    """A dict of str to tensors holding data (``model``, ``ema``)."""
    if not isinstance(state, dict):
        raise TypeError(f"{_SAVE}: expected {name} as a dict of str to Tensor, got "
                        f"{type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str):
            raise TypeError(f"{_SAVE}: expected {name} with str keys, got {key!r}")
        _check_tensor(value, f"{name}[{key!r}]")


def _check_tensor(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{_SAVE}: expected {name} as a torch.Tensor, got {type(value).__name__}")
    if value.device.type == "meta":
        raise CheckpointError(f"{_SAVE}: expected {name} with data, got a tensor on the meta "
                              "device")


def _finite_copy(value: torch.Tensor, name: str) -> torch.Tensor:
    """The tensor as stored (a contiguous CPU copy), refused if it holds NaN or inf: the
    loader refuses such a file (one reduction per float tensor, on the copy)."""
    copy = value.detach().cpu().contiguous().clone()
    if (copy.is_floating_point() or copy.is_complex()) and not bool(torch.isfinite(copy).all()):
        raise CheckpointError(f"{_SAVE}: expected finite values in {name}, got NaN or inf")
    return copy


def _check_finite_numbers(value, name: str) -> None:
    """No NaN or inf among the numbers of an optimiser's groups and state (the loader's rule)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CheckpointError(f"{_SAVE}: expected a finite number in {name}, got {value}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite_numbers(v, f"{name}[{k!r}]")
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite_numbers(v, f"{name}[{i}]")


def _check_ema(model: dict, ema) -> None:
    if ema is None:
        return
    _check_tensor_dict(ema, "checkpoint.ema")
    for key in sorted(set(model) | set(ema)):
        if key not in ema or key not in model:
            only = "checkpoint.ema" if key in ema else "checkpoint.model"
            raise CheckpointError(f"{_SAVE}: expected checkpoint.ema with the keys of "
                                  f"checkpoint.model, got {key!r} only in {only}")
        if ema[key].shape != model[key].shape or ema[key].dtype != model[key].dtype:
            raise CheckpointError(
                f"{_SAVE}: expected checkpoint.ema[{key!r}] with shape "
                f"{tuple(model[key].shape)} and dtype {_dtype_name(model[key])} (those of the "
                f"model's), got {tuple(ema[key].shape)} and {_dtype_name(ema[key])}"
            )


def _check_optimizer(optimizer) -> None:
    """An optimiser ``state_dict`` as the loader accepts it: ``param_groups`` with distinct
    non-negative parameter ids, ``state`` keyed by those ids, finite numbers."""
    if optimizer is None:
        return
    name = "checkpoint.optimizer"
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict) \
            or not isinstance(optimizer.get("param_groups"), list):
        raise TypeError(f"{_SAVE}: expected {name} as an optimiser state_dict (a dict with a "
                        f"dict 'state' and a list 'param_groups'), got {type(optimizer).__name__}"
                        f"{'' if not isinstance(optimizer, dict) else ' without them'}")
    params: set[int] = set()
    for i, group in enumerate(optimizer["param_groups"]):
        where = f"{name}['param_groups'][{i}]"
        ids = group.get("params") if isinstance(group, dict) else None
        if not isinstance(ids, list):
            raise TypeError(f"{_SAVE}: expected {where} as a dict with a list 'params', got "
                            f"{type(group).__name__}")
        for j in ids:
            if isinstance(j, bool) or not isinstance(j, int) or j < 0 or j in params:
                raise CheckpointError(f"{_SAVE}: expected distinct non-negative int ids in "
                                      f"{where}['params'], got {ids!r}")
            params.add(j)
        _check_finite_numbers(group, where)
    for idx, entry in optimizer["state"].items():
        where = f"{name}['state'][{idx!r}]"
        if isinstance(idx, bool) or not str(idx).isdigit() or int(idx) not in params:
            raise CheckpointError(f"{_SAVE}: expected the keys of {name}['state'] to be ids "
                                  f"in its param_groups, got {idx!r}")
        if not isinstance(entry, dict):
            raise TypeError(f"{_SAVE}: expected {where} as a dict, got {type(entry).__name__}")
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                _check_tensor(value, f"{where}[{key!r}]")
            else:
                _check_finite_numbers(value, f"{where}[{key!r}]")


def _check_checkpoint(checkpoint) -> int:
    """The loader's rules, at save time: a writer that produces only files
    :func:`load_checkpoint` accepts (the finiteness of tensors is checked on their copies).
    Returns the step as an int."""
    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"{_SAVE}: expected a Checkpoint, got {type(checkpoint).__name__}")
    _check_tensor_dict(checkpoint.model, "checkpoint.model")
    _check_ema(checkpoint.model, checkpoint.ema)
    if not isinstance(checkpoint.config, dict):
        raise TypeError(f"{_SAVE}: expected checkpoint.config as a dict, got "
                        f"{type(checkpoint.config).__name__}")
    step = check_int(_SAVE, "checkpoint.step", checkpoint.step, minimum=0)
    train = checkpoint.config.get("train")
    steps = train.get("steps") if isinstance(train, dict) else None
    if isinstance(steps, int) and not isinstance(steps, bool) and step > steps:
        raise CheckpointError(f"{_SAVE}: expected checkpoint.step at most "
                              f"config['train']['steps'] = {steps}, got {step}")
    if not isinstance(checkpoint.extra, dict):
        raise TypeError(f"{_SAVE}: expected checkpoint.extra as a dict, got "
                        f"{type(checkpoint.extra).__name__}")
    _check_optimizer(checkpoint.optimizer)
    if checkpoint.rng is not None:
        check_rng(checkpoint.rng, _SAVE, "checkpoint.rng")
    return step


def save_checkpoint(path, checkpoint: Checkpoint) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then ``os.replace``).

    Tensors go into one safetensors file (``model.*``, ``ema.*``, ``optim.*``, ``rng.torch``);
    the rest is JSON in its metadata, with the dtype, shape and sha256 digest of every tensor.
    A second metadata field holds the sha256 of that JSON text, so :func:`load_checkpoint`
    detects a changed bit anywhere in the file. Loading never unpickles code.

    Parameters
    ----------
    path : str or Path
        Target file (conventionally ``*.safetensors``); its folder must exist.
    checkpoint : Checkpoint
        What :func:`load_checkpoint` accepts, checked before anything is written: ``step`` a
        non-negative int (at most ``config["train"]["steps"]`` when recorded), finite float
        tensors, an EMA with the model's keys, shapes and dtypes, an optimiser
        ``state_dict`` and a random state from :func:`capture_rng`.

    Returns
    -------
    Path

    Raises
    ------
    TypeError
        For a ``path`` that is not a ``str`` or ``os.PathLike``, a ``checkpoint`` that is
        not a :class:`Checkpoint`, or fields of the wrong kind.
    ValueError
        For a negative step; :class:`CheckpointError` (a ``ValueError``) for contents the
        loader would refuse (NaN or inf, a mismatched EMA, ...) and a missing folder.

    Notes
    -----
    The temporary file is ``.<name>.<pid>.<random>.tmp`` beside ``path``; a write killed
    midway leaves it behind, and :func:`remove_stale_temporaries` removes it on the next start.

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
    check_path(path, _SAVE)
    step = _check_checkpoint(checkpoint)
    path = Path(path)
    if not path.parent.is_dir():
        raise CheckpointError(f"save_checkpoint: expected an existing folder for {path}, got none")
    tensors: dict[str, torch.Tensor] = {}
    for field_name, state in (("model", checkpoint.model), ("ema", checkpoint.ema or {})):
        for key, value in state.items():
            tensors[f"{field_name}.{key}"] = _finite_copy(
                value, f"checkpoint.{field_name}[{key!r}]")
    meta = {
        "format": FORMAT,
        "config": checkpoint.config,
        "step": step,
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
                    tensors[f"optim.{idx}.{name}"] = _finite_copy(
                        value, f"checkpoint.optimizer['state'][{idx!r}][{name!r}]")
                    slots[str(idx)][name] = "tensor"
                else:
                    slots[str(idx)][name] = value
        meta["optimizer"] = {"param_groups": checkpoint.optimizer["param_groups"], "state": slots}
    if checkpoint.rng is not None:
        tensors["rng.torch"] = checkpoint.rng["torch"].clone()
        meta["rng"] = _json_rng(checkpoint.rng)
    meta["tensors"] = {
        name: {"dtype": _dtype_name(t), "shape": list(t.shape), "sha256": _sha256(t)}
        for name, t in tensors.items()
    }
    try:
        text = json.dumps(meta)
    except TypeError as err:
        raise CheckpointError(
            f"save_checkpoint: expected JSON-able config and state, got {err}"
        ) from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_META: text, _META_SHA: digest})
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal rights
        with open(tmp, "rb") as handle:  # on disk before it replaces the last good checkpoint
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _writer_is_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes nothing while it starts
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_temporaries(path) -> list[Path]:
    """Remove the temporary files that writes of ``path`` killed midway left behind.

    A temporary file ``.<name>.<pid>.<random>.tmp`` (:func:`save_checkpoint`) is stale when
    the process ``pid`` no longer runs, or is this one; one without a pid in its name was
    written before pids were recorded and is stale too.

    Parameters
    ----------
    path : str or Path
        The checkpoint file (it need not exist).

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    for tmp in sorted(path.parent.glob(f".{path.name}.*.tmp")):
        middle = tmp.name[len(prefix):-len(".tmp")]
        head = middle.split(".", 1)[0]
        if "." in middle and head.isdigit() and _writer_is_alive(int(head)):
            continue
        try:
            tmp.unlink()
        except FileNotFoundError:
            continue
        removed.append(tmp)
    return removed


def check_state_matches(path, state: dict, module: torch.nn.Module) -> None:
    """Raise :class:`CheckpointError` naming the first key, shape or dtype that differs.

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
        if state[key].dtype != value.dtype:
            raise CheckpointError(
                f"{path}: parameter {key!r} has dtype {_dtype_name(state[key])} in the "
                f"checkpoint, expected {_dtype_name(value)} by the model"
            )


def check_optimizer_matches(path, state: dict, optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`CheckpointError` unless an optimiser ``state_dict`` fits ``optimizer``.

    The groups must hold as many parameters as the optimiser's; a state tensor that is not a
    scalar (Adam's moments) must have its parameter's shape and dtype, a scalar one (Adam's
    step) must be a float.

    Parameters
    ----------
    path : str or Path
        For the message.
    state : dict
        A loaded optimiser ``state_dict`` (:attr:`Checkpoint.optimizer`).
    optimizer : torch.optim.Optimizer
        What it is to be loaded into.
    """
    groups = optimizer.param_groups
    saved = state["param_groups"]
    sizes = [len(g["params"]) for g in groups]
    saved_sizes = [len(g["params"]) for g in saved]
    if sizes != saved_sizes:
        raise CheckpointError(
            f"{path}: the optimiser state holds parameter groups of sizes {saved_sizes}, "
            f"expected {sizes} by the model (was it written for another configuration?)"
        )
    params = {
        idx: p
        for g_saved, g in zip(saved, groups, strict=True)
        for idx, p in zip(g_saved["params"], g["params"], strict=True)
    }
    for idx, entry in state["state"].items():
        param = params[idx]
        for name, value in entry.items():
            if not isinstance(value, torch.Tensor):
                continue
            where = f"{path}: optimiser state 'optim.{idx}.{name}'"
            if value.dim() == 0:
                if not value.dtype.is_floating_point:
                    raise CheckpointError(f"{where}: expected a float scalar, got "
                                          f"{_dtype_name(value)}")
            elif value.shape != param.shape or value.dtype != param.dtype:
                raise CheckpointError(
                    f"{where}: expected shape {tuple(param.shape)} and dtype "
                    f"{_dtype_name(param)} (its parameter's), got {tuple(value.shape)} and "
                    f"{_dtype_name(value)}"
                )
