"""Damaged checkpoints fail loudly: every kind of damage is a CheckpointError naming the file
and the field or tensor, never a silent resume, a NaN sample or a bare AttributeError."""

import hashlib
import json
import os
import re
import shutil
import struct
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

from lineardiff import (
    Checkpoint,
    CheckpointError,
    capture_rng,
    load_checkpoint,
    save_checkpoint,
)
from lineardiff.app.cli import main
from lineardiff.app.runs import shipped_models
from lineardiff.pretrained import load_model
from lineardiff.training._checkpoint import check_optimizer_matches


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def _full_checkpoint(path, **changes):
    """Model, EMA, AdamW state and random state after three steps, at step 3 of 10."""
    net = _net()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 3)).square().sum().backward()
        opt.step()
    fields = dict(model=net.state_dict(), config={"train": {"steps": 10}}, step=3,
                  ema={k: 0.5 * v for k, v in net.state_dict().items()},
                  optimizer=opt.state_dict(), rng=capture_rng())
    fields.update(changes)
    return save_checkpoint(path, Checkpoint(**fields))


def _layout(path):
    """(header length, {tensor: (start, end) byte range in the file})."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    return n, {k: (8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1])
               for k, v in header.items() if k != "__metadata__"}


def _flip(path, position, mask=0x01):
    data = bytearray(path.read_bytes())
    data[position] ^= mask
    path.write_bytes(bytes(data))


def _rewrite(path, *, meta=None, tensors=None, digests=True):
    """Rewrite a checkpoint with edited metadata or tensors and *consistent* digests, so that
    only the content checks can object (``digests=False``: a file without any digest, as
    written before they existed)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        record = json.loads(handle.metadata()["lineardiff"])
    stored = load_file(str(path))
    if tensors is not None:
        tensors(stored)
    if meta is not None:
        meta(record)
    record.pop("tensors", None)
    metadata = {}
    if digests:
        record["tensors"] = {
            k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape),
                "sha256": hashlib.sha256(v.reshape(-1).view(torch.uint8).numpy()).hexdigest()}
            for k, v in stored.items()}
    text = json.dumps(record)
    metadata["lineardiff"] = text
    if digests:
        metadata["lineardiff.sha256"] = hashlib.sha256(text.encode()).hexdigest()
    save_file(stored, str(path), metadata=metadata)
    return path


def _fails(path, *pieces):
    """load_checkpoint raises a CheckpointError naming the file and every piece."""
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message, message
    for piece in pieces:
        assert re.search(piece, message), (piece, message)
    return message


# ---------------------------------------------------------------------------------------------
# damage to the bytes


def test_an_intact_checkpoint_loads(tmp_path):
    ck = load_checkpoint(_full_checkpoint(tmp_path / "c.safetensors"))
    assert ck.step == 3 and ck.ema is not None and ck.optimizer is not None and ck.rng


def test_a_file_replaced_while_it_is_read_loads_whole(tmp_path):
    # A training run replaces its checkpoint (os.replace) every few seconds while `watch`
    # scripts, `evaluate` or `export` read it. The reader must see one file: the metadata of
    # one checkpoint with the tensors of the next would fail its digests (CI caught this once).
    # The race is probabilistic: with a reader that opens the file twice, 400 loads under a
    # replacing thread failed every time we tried; a reader that reads once never fails.
    first = _full_checkpoint(tmp_path / "a.safetensors")
    net = _net()
    second = _full_checkpoint(tmp_path / "b.safetensors", step=5,
                              model={k: v + 1 for k, v in net.state_dict().items()},
                              ema={k: v - 1 for k, v in net.state_dict().items()})
    target, stop = tmp_path / "live.safetensors", threading.Event()
    shutil.copy(first, target)

    def replace_forever():
        k = 0
        while not stop.is_set():
            tmp = tmp_path / f"tmp{k % 2}"
            shutil.copy(second if k % 2 else first, tmp)
            os.replace(tmp, target)
            k += 1

    writer = threading.Thread(target=replace_forever)
    writer.start()
    try:
        steps = {load_checkpoint(target).step for _ in range(400)}
    finally:
        stop.set()
        writer.join()
    assert steps <= {3, 5}


@pytest.mark.parametrize("cut", ["half", "last byte", "header only", "empty"])
def test_truncated_or_empty(tmp_path, cut):
    path = _full_checkpoint(tmp_path / "c.safetensors")
    data = path.read_bytes()
    n, _ = _layout(path)
    keep = {"half": len(data) // 2, "last byte": len(data) - 1, "header only": 8 + n,
            "empty": 0}[cut]
    path.write_bytes(data[:keep])
    _fails(path, "corrupt or not a safetensors file")


def test_a_pickle_file(tmp_path):
    path = tmp_path / "c.safetensors"
    torch.save(_net().state_dict(), path)
    _fails(path, "corrupt or not a safetensors file")


@pytest.mark.parametrize("tensor", ["model.0.weight", "ema.2.bias", "optim.0.exp_avg",
                                    "optim.1.exp_avg_sq", "optim.2.step", "rng.torch"])
@pytest.mark.parametrize("where", ["first", "last"])
def test_a_flipped_bit_in_any_tensor_is_named(tmp_path, tensor, where):
    path = _full_checkpoint(tmp_path / "c.safetensors")
    start, end = _layout(path)[1][tensor]
    _flip(path, start if where == "first" else end - 1)
    _fails(path, f"tensor '{re.escape(tensor)}' is corrupt")


@pytest.mark.parametrize("mask", [0x01, 0x40], ids=["mantissa", "exponent"])
def test_weight_flips_that_used_to_resume_silently(tmp_path, mask):
    # byte 0 of a little-endian float32 is mantissa; 0x40 in byte 3 is the top exponent bit,
    # which turned a weight into ~1e38 (and the samples into NaN)
    path = _full_checkpoint(tmp_path / "c.safetensors")
    start, _ = _layout(path)[1]["model.2.weight"]
    _flip(path, start + (3 if mask == 0x40 else 0), mask)
    _fails(path, "tensor 'model.2.weight' is corrupt")


def test_flipped_bits_across_the_header(tmp_path):
    path = _full_checkpoint(tmp_path / "c.safetensors")
    data = path.read_bytes()
    n, _ = _layout(path)
    # a stride through the whole header (the full sweep, every byte, passes too but takes a
    # minute), plus the length prefix
    positions = sorted({*range(8), *range(8, 8 + n, 41)})
    for position in positions:
        path.write_bytes(data)
        _flip(path, position)
        _fails(path)


def test_a_changed_step_in_the_metadata(tmp_path):
    path = _full_checkpoint(tmp_path / "c.safetensors")
    data = path.read_bytes()
    path.write_bytes(data.replace(b'\\"step\\": 3', b'\\"step\\": 4', 1))
    assert path.read_bytes() != data
    _fails(path, r"field 'lineardiff' \(the metadata\) is corrupt")


def test_a_dtype_changed_in_the_header(tmp_path):
    # F32 -> I32 keeps every byte count: once this loaded weights of 1e9
    path = _full_checkpoint(tmp_path / "c.safetensors")
    data = path.read_bytes()
    n, _ = _layout(path)
    header = data[8:8 + n]
    at = header.index(b'"model.0.weight":{"dtype":"F32"') + len('"model.0.weight":{"dtype":"')
    path.write_bytes(data[:8 + at] + b"I" + data[8 + at + 1:])
    _fails(path, r"tensor 'model.0.weight': expected dtype float32 \(as recorded\), got int32")


def test_the_digest_record_cannot_be_dropped_alone(tmp_path):
    path = _full_checkpoint(tmp_path / "c.safetensors")
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"lineardiff.sha256"', b'"lineardiff.sha257"', 1))
    _fails(path, "field 'lineardiff.sha256'")


# ---------------------------------------------------------------------------------------------
# contents that are consistent with their digests but wrong


@pytest.mark.parametrize(
    ("edit", "pieces"),
    [
        (lambda m: m.update(step=-1), [r"field 'step': expected a non-negative integer, got -1"]),
        (lambda m: m.update(step=11), [r"field 'step': expected at most config.train.steps = 10"]),
        (lambda m: m.update(step="3"), [r"field 'step': expected a non-negative integer"]),
        (lambda m: m.update(step=True), [r"field 'step'"]),
        (lambda m: m.pop("step"), [r"field 'step': expected .*, got none"]),
        (lambda m: m.update(config=[1]), [r"field 'config': expected a dict"]),
        (lambda m: m.update(has_ema="yes"), [r"field 'has_ema': expected true or false"]),
        (lambda m: m.update(extra=[]), [r"field 'extra': expected a dict"]),
        (lambda m: m.update(optimizer=[]), [r"field 'optimizer': expected a dict"]),
        (lambda m: m["optimizer"].update(param_groups={}),
         [r"field 'optimizer.param_groups': expected a list"]),
        (lambda m: m["optimizer"]["param_groups"][0].update(lr=float("nan")),
         [r"field 'optimizer.param_groups\[0\].lr': expected a finite number"]),
        (lambda m: m["optimizer"]["param_groups"][0].update(params=[0, 0, 1, 2]),
         [r"field 'optimizer.param_groups\[0\].params': expected distinct"]),
        (lambda m: m["optimizer"]["state"].update({"7": {}}),
         [r"field 'optimizer.state.7': expected the id of a parameter"]),
        (lambda m: m["optimizer"]["state"]["0"].update(extra_moment="tensor"),
         [r"tensor 'optim.0.extra_moment': expected it in the file"]),
        (lambda m: m["rng"].update(numpy=["MT19937", [1, 2], 0, 0, 0.0]),
         [r"field 'rng.numpy': expected a NumPy MT19937 state"]),
        (lambda m: m["rng"].update(numpy="MT19937"), [r"field 'rng.numpy': expected \[kind"]),
        (lambda m: m["rng"].update(python=[3, [1, 2, 3], None]),
         [r"field 'rng.python': expected a Python random state"]),
        (lambda m: m.update(rng=None), [r"field 'rng': expected a dict"]),
        (lambda m: m.update(format="something-else"), ["is not a lineardiff checkpoint"]),
    ],
    ids=lambda v: "" if callable(v) else re.sub(r"\W+", "-", v[0])[:40],
)
def test_metadata_fields_are_named(tmp_path, edit, pieces):
    path = _rewrite(_full_checkpoint(tmp_path / "c.safetensors"), meta=edit)
    _fails(path, *pieces)


@pytest.mark.parametrize(
    ("edit", "pieces"),
    [
        (lambda t: t.update({"ema.0.weight": torch.zeros(4, 4)}),
         [r"tensor 'ema.0.weight': expected shape \(4, 3\) and dtype float32"]),
        (lambda t: t.update({"ema.0.weight": torch.zeros(4, 3, dtype=torch.float64)}),
         [r"tensor 'ema.0.weight': expected .* dtype float32 .*, got \(4, 3\) and float64"]),
        (lambda t: t.pop("ema.2.bias"), [r"tensor 'model.2.bias': expected the same keys"]),
        (lambda t: t.pop("optim.0.exp_avg"), [r"tensor 'optim.0.exp_avg': expected it in"]),
        (lambda t: t.update({"optim.9.exp_avg": torch.zeros(2)}),
         [r"tensor 'optim.9.exp_avg': expected only tensors optimizer.state names"]),
        (lambda t: t.update({"rng.torch": t["rng.torch"][:100].clone()}),
         [r"tensor 'rng.torch': expected uint8 of shape \(5056,\)"]),
        (lambda t: t.pop("rng.torch"), [r"tensor 'rng.torch': expected it in the file"]),
        (lambda t: t.update({"weights.x": torch.zeros(1)}), [r"tensor 'weights.x'"]),
        (lambda t: t["model.0.bias"].__setitem__(0, float("nan")),
         [r"tensor 'model.0.bias': expected finite values, got NaN or inf"]),
        (lambda t: t["optim.1.exp_avg_sq"].__setitem__(0, float("inf")),
         [r"tensor 'optim.1.exp_avg_sq': expected finite values"]),
    ],
    ids=["ema-shape", "ema-dtype", "ema-key", "optim-missing", "optim-extra", "rng-shape",
         "rng-missing", "unknown-prefix", "nan-weight", "inf-moment"],
)
def test_tensor_contents_are_named(tmp_path, edit, pieces):
    path = _rewrite(_full_checkpoint(tmp_path / "c.safetensors"), tensors=edit)
    _fails(path, *pieces)


def _opt_state(edit):
    """The AdamW state_dict of _full_checkpoint's run, edited."""
    net = _net()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    net(torch.randn(5, 3)).square().sum().backward()
    opt.step()
    state = opt.state_dict()
    edit(state)
    return state


def _model(edit):
    state = {k: v.clone() for k, v in _net().state_dict().items()}
    edit(state)
    return state


# what load_checkpoint refuses above, save_checkpoint refuses to write (before any file
# exists); each row: (the Checkpoint fields to change, built lazily, exception, regex)
WRITER_REFUSES = [
    (lambda: dict(model=_model(lambda m: m["0.bias"].__setitem__(0, float("nan")))), CheckpointError,
     r"save_checkpoint: expected finite values in checkpoint.model\['0.bias'\], got NaN or inf"),
    (lambda: dict(ema=_model(lambda m: m["2.weight"].__setitem__((0, 0), float("inf")))), CheckpointError,
     r"save_checkpoint: expected finite values in checkpoint.ema\['2.weight'\]"),
    (lambda: dict(optimizer=_opt_state(lambda s: s["state"][1]["exp_avg_sq"].__setitem__(0, float("inf")))),
     CheckpointError, r"save_checkpoint: expected finite values in checkpoint.optimizer\['state'\]\[1\]\['exp_avg_sq'\]"),
    (lambda: dict(step=-1), ValueError, r"save_checkpoint: expected checkpoint.step >= 0, got -1"),
    (lambda: dict(step=11), CheckpointError, r"save_checkpoint: expected checkpoint.step at most config\['train'\]\['steps'\] = 10, got 11"),
    (lambda: dict(step="3"), TypeError, r"save_checkpoint: expected checkpoint.step as an int, got '3'"),
    (lambda: dict(config=[1]), TypeError, r"save_checkpoint: expected checkpoint.config as a dict, got list"),
    (lambda: dict(extra=[]), TypeError, r"save_checkpoint: expected checkpoint.extra as a dict, got list"),
    (lambda: dict(ema=_model(lambda m: m.pop("2.bias"))), CheckpointError,
     r"save_checkpoint: expected checkpoint.ema with the keys of checkpoint.model, got '2.bias' only in checkpoint.model"),
    (lambda: dict(ema=_model(lambda m: m.update({"0.weight": torch.zeros(4, 3, dtype=torch.float64)}))), CheckpointError,
     r"save_checkpoint: expected checkpoint.ema\['0.weight'\] with shape \(4, 3\) and dtype float32 \(those of the model's\), got \(4, 3\) and float64"),
    (lambda: dict(optimizer=_opt_state(lambda s: s["param_groups"][0].update(lr=float("nan")))), CheckpointError,
     r"save_checkpoint: expected a finite number in checkpoint.optimizer\['param_groups'\]\[0\]\['lr'\], got nan"),
    (lambda: dict(optimizer=_opt_state(lambda s: s["param_groups"][0].update(params=[0, 0, 1, 2]))), CheckpointError,
     r"save_checkpoint: expected distinct non-negative int ids in checkpoint.optimizer\['param_groups'\]\[0\]\['params'\]"),
    (lambda: dict(optimizer=_opt_state(lambda s: s["state"].update({7: {}}))), CheckpointError,
     r"save_checkpoint: expected the keys of checkpoint.optimizer\['state'\] to be ids in its param_groups, got 7"),
    (lambda: dict(optimizer={"state": {}}), TypeError, r"save_checkpoint: expected checkpoint.optimizer as an optimiser state_dict"),
    (lambda: dict(rng={"torch": torch.get_rng_state()}), ValueError, r"save_checkpoint: expected checkpoint.rng as the dict capture_rng\(\) returns"),
]


@pytest.mark.parametrize(
    ("changes", "exc", "match"), WRITER_REFUSES,
    ids=["nan-weight", "inf-ema", "inf-moment", "negative-step", "step-past-steps", "str-step",
         "config-list", "extra-list", "ema-key", "ema-dtype", "nan-lr", "duplicate-ids",
         "unknown-state-id", "optimizer-without-groups", "rng-without-keys"],
)
def test_the_writer_refuses_what_the_loader_refuses(tmp_path, changes, exc, match):
    fields = changes()
    with pytest.raises(exc, match=match):
        _full_checkpoint(tmp_path / "c.safetensors", **fields)
    assert os.listdir(tmp_path) == []  # no file, no temporary file


def test_optimizer_state_of_the_wrong_shape_is_refused_before_loading(tmp_path):
    path = _full_checkpoint(tmp_path / "c.safetensors")
    wide = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    opt = torch.optim.AdamW(wide.parameters())
    with pytest.raises(CheckpointError, match=r"optimiser state 'optim.0.exp_avg': expected "
                       r"shape \(5, 3\) and dtype float32 \(its parameter's\), got \(4, 3\)"):
        check_optimizer_matches(path, load_checkpoint(path).optimizer, opt)
    two_groups = torch.optim.AdamW([{"params": list(wide.parameters())[:2]},
                                    {"params": list(wide.parameters())[2:]}])
    with pytest.raises(CheckpointError, match=r"parameter groups of sizes \[4\], expected "
                       r"\[2, 2\]"):
        check_optimizer_matches(path, load_checkpoint(path).optimizer, two_groups)


# ---------------------------------------------------------------------------------------------
# files without digests (the shipped models): contents still validated


def test_files_without_digests_load_and_are_still_validated(tmp_path):
    path = _rewrite(_full_checkpoint(tmp_path / "c.safetensors"), digests=False)
    assert load_checkpoint(path).step == 3  # written before digests existed: loads
    data = path.read_bytes()
    start, _ = _layout(path)[1]["model.2.weight"]
    _flip(path, start + 3, 0x40)  # top exponent bit: about 1e38
    _fails(path, r"tensor 'model.2.weight': expected weights below 1.8e\+19 in magnitude "
           r"\(a flipped exponent bit\?\)")
    path.write_bytes(data)
    _rewrite(path, digests=False, meta=lambda m: m.update(step=12))
    _fails(path, r"field 'step': expected at most config.train.steps = 10, got 12")


def test_a_damaged_shipped_model_fails_the_cli_with_exit_2(tmp_path, capsys):
    name = "ising32-ddpm"
    legacy = tmp_path / "legacy.safetensors"
    shutil.copy(shipped_models()[name], legacy)
    _rewrite(legacy, digests=False)  # as written before digests existed
    n, spans = _layout(legacy)
    key = sorted(k for k in spans if k.endswith("weight"))[0]
    _flip(legacy, spans[key][0] + 3, 0x40)
    code = main(["sample", "--model", str(legacy), "--n", "2", "--steps", "2", "--quiet",
                 "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and str(legacy) in err and key in err and "magnitude" in err
    assert not (tmp_path / "s" / "samples.npy").exists()
    # the same model re-saved by this version carries digests: a mantissa flip is caught too
    resaved = save_checkpoint(tmp_path / "resaved.safetensors",
                              load_checkpoint(shipped_models()[name]))
    assert load_model(resaved).step == load_model(name).step
    _flip(resaved, _layout(resaved)[1][key][0])
    with pytest.raises(CheckpointError, match=rf"tensor '{re.escape(key)}' is corrupt"):
        load_model(resaved)


def test_load_model_names_weights_of_another_dtype(tmp_path):
    name = "ising32-ddpm"
    path = tmp_path / "m.safetensors"
    shutil.copy(shipped_models()[name], path)
    key = "model.head.bias" if "model.head.bias" in _layout(path)[1] else sorted(
        _layout(path)[1])[0]
    _rewrite(path, digests=False,
             tensors=lambda t: t.update({key: t[key].to(torch.float64)}))
    with pytest.raises(CheckpointError, match=rf"parameter '{re.escape(key[6:])}' has dtype "
                       r"float64 in the checkpoint, expected float32"):
        load_model(path)
