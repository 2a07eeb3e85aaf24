"""Reading a checkpoint file: every tensor's digest, dtype and shape, every metadata field,
the EMA, optimiser and RNG states checked, each failure a :class:`CheckpointError` naming the
file and the field."""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes

from ._checkpoint_format import (
    _IMPLAUSIBLE,
    _META,
    _META_SHA,
    FORMAT,
    Checkpoint,
    CheckpointError,
    _dtype_name,
    _sha256,
    check_path,
)

__all__ = ["load_checkpoint"]


class _Reader:
    """Turns the fields of one file's metadata into values, or into a CheckpointError naming
    the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, what: str, expected: str, got) -> CheckpointError:
        return CheckpointError(f"load_checkpoint: {self.path}: {what}: expected {expected}, "
                               f"got {got}")

    def field(self, mapping, key: str, name: str, kinds, expected: str):
        if not isinstance(mapping, dict) or key not in mapping:
            raise self.error(f"field {name!r}", expected, "none")
        value = mapping[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and kinds is not bool):
            raise self.error(f"field {name!r}", expected, _short(value))
        return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_file(path: Path) -> tuple[dict, dict, str | None]:
    # One read of the whole file, parsed from memory: a training run may replace the file
    # (os.replace) at any moment, and two opens could pair one checkpoint's metadata with the
    # next one's tensors.
    try:
        data = path.read_bytes()
        size = int.from_bytes(data[:8], "little")
        if len(data) < 8 or size > len(data) - 8:
            raise ValueError(f"a header of {size} bytes in a file of {len(data)}")
        header = json.loads(data[8:8 + size])
        metadata = header.get("__metadata__") if isinstance(header, dict) else None
        metadata = metadata if isinstance(metadata, dict) else {}
        tensors = load_bytes(data)
    except (SafetensorError, OSError, ValueError, RuntimeError, OverflowError) as err:
        raise CheckpointError(
            f"load_checkpoint: {path} is corrupt or not a safetensors file ({err})"
        ) from None
    return metadata, tensors, metadata.get(_META)


def _parse_meta(read: _Reader, metadata: dict, raw: str | None) -> dict:
    path = read.path
    want = metadata.get(_META_SHA)
    if raw is not None and want is not None and hashlib.sha256(raw.encode()).hexdigest() != want:
        raise CheckpointError(
            f"load_checkpoint: {path}: field {_META!r} (the metadata) is corrupt: its sha256 "
            "differs from the one recorded when it was written"
        )
    try:
        meta = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"load_checkpoint: {path} is not a lineardiff checkpoint (format {FORMAT!r} expected)"
        )
    if ("tensors" in meta) != (want is not None):
        missing = "tensors" if want is not None else _META_SHA
        raise read.error(f"field {missing!r}", "it beside the other digest", "none")
    return meta


def _verify_tensors(read: _Reader, table, tensors: dict) -> None:
    """The digests, dtypes and shapes recorded at save time against what the file holds."""
    if not isinstance(table, dict):
        raise read.error("field 'tensors'", "a table of tensor digests", _short(table))
    unrecorded, absent = sorted(set(tensors) - set(table)), sorted(set(table) - set(tensors))
    if unrecorded:
        raise read.error(f"tensor {unrecorded[0]!r}", "only the recorded tensors",
                         "one not recorded")
    if absent:
        raise read.error(f"tensor {absent[0]!r}", "it in the file (it is recorded)", "none")
    for name, t in tensors.items():
        entry = table[name]
        if not isinstance(entry, dict):
            raise read.error(f"field 'tensors.{name}'", "dtype, shape and sha256", _short(entry))
        if entry.get("dtype") != _dtype_name(t):
            raise read.error(f"tensor {name!r}", f"dtype {entry.get('dtype')} (as recorded)",
                             _dtype_name(t))
        if entry.get("shape") != list(t.shape):
            raise read.error(f"tensor {name!r}", f"shape {entry.get('shape')} (as recorded)",
                             list(t.shape))
        if entry.get("sha256") != _sha256(t):
            raise CheckpointError(
                f"load_checkpoint: {read.path}: tensor {name!r} is corrupt: its sha256 differs "
                "from the one recorded when it was written"
            )


def _check_values(read: _Reader, tensors: dict, verified: bool) -> None:
    for name, t in tensors.items():
        if not (t.dtype.is_floating_point or t.is_complex()):
            continue
        if not bool(torch.isfinite(t).all()):
            raise read.error(f"tensor {name!r}", "finite values", "NaN or inf")
        if not verified and name.startswith(("model.", "ema.")) and t.numel():
            top = float(t.abs().max())
            if top > _IMPLAUSIBLE:
                raise read.error(f"tensor {name!r}", f"weights below {_IMPLAUSIBLE:.2g} in "
                                 "magnitude (a flipped exponent bit?)", f"{top:.3g}")


def _parse_ema(read: _Reader, meta: dict, model: dict, ema: dict) -> dict | None:
    if not read.field(meta, "has_ema", "has_ema", bool, "true or false"):
        if ema:
            raise read.error(f"tensor {'ema.' + sorted(ema)[0]!r}", "no EMA (has_ema is false)",
                             "an EMA tensor")
        return None
    for key in sorted(set(model) | set(ema)):
        if key not in ema or key not in model:
            where = "ema." + key if key in ema else "model." + key
            raise read.error(f"tensor {where!r}", "the same keys in model and EMA",
                             "a key only one of them has")
        if ema[key].shape != model[key].shape or ema[key].dtype != model[key].dtype:
            raise read.error(
                f"tensor {'ema.' + key!r}",
                f"shape {tuple(model[key].shape)} and dtype {_dtype_name(model[key])} "
                "(those of the model's)",
                f"{tuple(ema[key].shape)} and {_dtype_name(ema[key])}",
            )
    return ema


def _finite_numbers(read: _Reader, value, name: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise read.error(f"field {name!r}", "a finite number", value)
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_numbers(read, v, f"{name}.{k}")
    if isinstance(value, list):
        for i, v in enumerate(value):
            _finite_numbers(read, v, f"{name}[{i}]")


def _parse_optimizer(read: _Reader, meta: dict, optim: dict) -> dict | None:
    if "optimizer" not in meta:
        if optim:
            raise read.error(f"tensor {'optim.' + sorted(optim)[0]!r}",
                             "no optimiser state (none recorded)", "an optimiser tensor")
        return None
    opt = read.field(meta, "optimizer", "optimizer", dict, "a dict")
    groups = read.field(opt, "param_groups", "optimizer.param_groups", list, "a list")
    params = []
    for i, group in enumerate(groups):
        name = f"optimizer.param_groups[{i}]"
        ids = read.field(group if isinstance(group, dict) else None, "params", f"{name}.params",
                         list, "a list of parameter ids")
        for j in ids:
            if isinstance(j, bool) or not isinstance(j, int) or j < 0 or j in params:
                raise read.error(f"field '{name}.params'", "distinct non-negative ids",
                                 _short(ids))
            params.append(j)
        _finite_numbers(read, group, name)
    slots = read.field(opt, "state", "optimizer.state", dict, "a dict")
    state, used = {}, set()
    for idx, entry in slots.items():
        name = f"optimizer.state.{idx}"
        if not (idx.isdigit() and int(idx) in params):
            raise read.error(f"field {name!r}", f"the id of a parameter in param_groups "
                             f"(0 .. {len(params) - 1})", repr(idx))
        if not isinstance(entry, dict):
            raise read.error(f"field {name!r}", "a dict", _short(entry))
        _finite_numbers(read, entry, name)
        state[int(idx)] = {}
        for key, kind in entry.items():
            if kind != "tensor":
                state[int(idx)][key] = kind
                continue
            short = f"{idx}.{key}"
            if short not in optim:
                raise read.error(f"tensor 'optim.{short}'", f"it in the file (recorded in "
                                 f"{name})", "none")
            state[int(idx)][key] = optim[short]
            used.add(short)
    unnamed = sorted(set(optim) - used)
    if unnamed:
        raise read.error(f"tensor 'optim.{unnamed[0]}'", "only tensors optimizer.state names",
                         "one it does not")
    return {"state": state, "param_groups": groups}


def _parse_rng(read: _Reader, meta: dict, torch_state) -> dict | None:
    if "rng" not in meta:
        if torch_state is not None:
            raise read.error("tensor 'rng.torch'", "no random state (none recorded)", "one")
        return None
    rng = read.field(meta, "rng", "rng", dict, "a dict")
    if torch_state is None:
        raise read.error("tensor 'rng.torch'", "it in the file (field 'rng' is recorded)",
                         "none")
    want = torch.get_rng_state()
    if torch_state.dtype != want.dtype or torch_state.shape != want.shape:
        raise read.error("tensor 'rng.torch'", f"uint8 of shape {tuple(want.shape)}",
                         f"{_dtype_name(torch_state)} of shape {tuple(torch_state.shape)}")
    try:
        torch.Generator().set_state(torch_state)
    except RuntimeError as err:
        raise read.error("tensor 'rng.torch'", "a torch random state", str(err)) from None
    numpy = read.field(rng, "numpy", "rng.numpy", list, "[kind, keys, pos, has_gauss, cached]")
    python = read.field(rng, "python", "rng.python", list, "[version, state, gauss]")
    try:
        kind, keys, pos, has_gauss, cached = numpy
        if len(keys) != 624:  # MT19937's state words
            raise ValueError(f"{len(keys)} key words instead of 624")
        state_np = (kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached)
        np.random.RandomState().set_state(state_np)  # noqa: NPY002 - validates only
    except (TypeError, ValueError, OverflowError, IndexError) as err:
        raise read.error("field 'rng.numpy'", "a NumPy MT19937 state", err) from None
    try:
        version, state, gauss = python
        state_py = (version, tuple(state), gauss)
        random.Random().setstate(state_py)
    except (TypeError, ValueError, OverflowError, IndexError) as err:
        raise read.error("field 'rng.python'", "a Python random state", err) from None
    return {"torch": torch_state, "numpy": state_np, "python": state_py}


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`, verified and validated.

    Checks, each failing with a message naming the file and the field or tensor:

    * the file is a safetensors file with lineardiff metadata (not truncated, not a pickle);
    * the sha256 of the metadata and of every tensor, with each tensor's dtype and shape, as
      recorded when it was written (files written before digests existed skip this check,
      and their model and EMA weights must stay below ``2**64`` in magnitude instead);
    * every float tensor is finite; the EMA has the model's keys, shapes and dtypes; the
      optimiser state names exactly the ``optim.*`` tensors, with parameter ids its groups
      hold; the random states are ones torch, NumPy and Python accept;
    * ``step`` is a non-negative integer, at most ``config["train"]["steps"]`` when the
      configuration records one.

    Raises
    ------
    TypeError
        If ``path`` is not a ``str`` or ``os.PathLike``.
    CheckpointError
        If the file is missing, truncated or corrupt, or not a lineardiff checkpoint.
    """
    check_path(path, "load_checkpoint")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"load_checkpoint: expected a checkpoint file at {path}, found none")
    metadata, tensors, raw = _read_file(path)
    read = _Reader(path)
    meta = _parse_meta(read, metadata, raw)
    verified = "tensors" in meta
    if verified:
        _verify_tensors(read, meta["tensors"], tensors)
    parts: dict[str, dict] = {"model.": {}, "ema.": {}, "optim.": {}}
    torch_state = None
    for name, t in tensors.items():
        if name == "rng.torch":
            torch_state = t
            continue
        prefix = next((p for p in parts if name.startswith(p)), None)
        if prefix is None:
            raise read.error(f"tensor {name!r}", "names starting model., ema., optim. or "
                             "rng.torch", "another")
        parts[prefix][name[len(prefix):]] = t
    _check_values(read, tensors, verified)
    config = read.field(meta, "config", "config", dict, "a dict")
    step = read.field(meta, "step", "step", int, "a non-negative integer")
    if step < 0:
        raise read.error("field 'step'", "a non-negative integer", step)
    train = config.get("train")
    steps = train.get("steps") if isinstance(train, dict) else None
    if isinstance(steps, int) and not isinstance(steps, bool) and step > steps:
        raise read.error("field 'step'", f"at most config.train.steps = {steps}", step)
    extra = read.field(meta, "extra", "extra", dict, "a dict") if "extra" in meta else {}
    ema = _parse_ema(read, meta, parts["model."], parts["ema."])
    optimizer = _parse_optimizer(read, meta, parts["optim."])
    rng = _parse_rng(read, meta, torch_state)
    return Checkpoint(parts["model."], config, step, ema, optimizer, rng, extra)
