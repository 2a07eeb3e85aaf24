"""Checkpoints: exact round trip (weights, EMA, optimiser, RNG), atomic writes, digests, clear
errors, stale temporaries, and what train refuses to resume."""

import hashlib
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open

import models
from lineardiff import (
    DDPM,
    Checkpoint,
    CheckpointError,
    TrainConfig,
    capture_rng,
    check_state_matches,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    train,
)
from lineardiff.training._checkpoint import remove_stale_temporaries


def _trained():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 3)).square().sum().backward()
        opt.step()
    return net, opt


def test_round_trip_resumes_exactly(tmp_path):
    net, opt = _trained()
    ema = {k: v.clone() * 0.5 for k, v in net.state_dict().items()}
    rng = capture_rng()
    path = save_checkpoint(
        tmp_path / "c.safetensors",
        Checkpoint(
            net.state_dict(),
            {"model": {"width": 4}},
            step=3,
            ema=ema,
            optimizer=opt.state_dict(),
            rng=rng,
            extra={"epoch": 1},
        ),
    )
    # continue the original run one step, remembering what it draws
    x_next = torch.randn(5, 3)
    draws = (np.random.rand(), random.random())  # noqa: NPY002 - the global stream is under test
    opt.zero_grad()
    net(x_next).square().sum().backward()
    opt.step()
    want = {k: v.clone() for k, v in net.state_dict().items()}
    # resume from the file into fresh objects
    ck = load_checkpoint(path)
    assert ck.step == 3 and ck.config == {"model": {"width": 4}} and ck.extra == {"epoch": 1}
    net2, opt2 = _trained()
    net2.load_state_dict(ck.model)
    opt2.load_state_dict(ck.optimizer)
    restore_rng(ck.rng)
    x2 = torch.randn(5, 3)
    assert torch.equal(x2, x_next) and (np.random.rand(), random.random()) == draws  # noqa: NPY002
    opt2.zero_grad()
    net2(x2).square().sum().backward()
    opt2.step()
    for k, v in net2.state_dict().items():
        assert torch.equal(v, want[k]), k  # bit-exact resume
    for k, v in ck.ema.items():
        assert torch.equal(v, ema[k])


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    net, _ = _trained()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, Checkpoint(net.state_dict(), {"v": 1}, step=1))
    import lineardiff.training._checkpoint as mod

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mod, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, Checkpoint(net.state_dict(), {"v": 2}, step=2))
    assert load_checkpoint(path).step == 1  # the old checkpoint is intact
    assert os.listdir(tmp_path) == ["c.safetensors"]  # no temporary file left behind


def test_corrupt_missing_and_foreign_files(tmp_path):
    net, _ = _trained()
    path = save_checkpoint(tmp_path / "c.safetensors", Checkpoint(net.state_dict(), {}, step=1))
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError, match=r"cut.safetensors is corrupt or not a safetensors file"
    ):
        load_checkpoint(tmp_path / "cut.safetensors")
    with pytest.raises(
        CheckpointError, match=r"expected a checkpoint file at .*nothere.safetensors, found none"
    ):
        load_checkpoint(tmp_path / "nothere.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match=r"other.safetensors is not a lineardiff checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_mismatch_names_the_parameter(tmp_path):
    net, _ = _trained()
    wider = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    with pytest.raises(
        CheckpointError,
        match=r"c.safetensors: parameter '0.weight' has shape \(4, 3\) in the checkpoint, expected \(5, 3\)",
    ):
        check_state_matches("c.safetensors", net.state_dict(), wider)
    with pytest.raises(
        CheckpointError, match=r"does not match the model: missing \['2.bias', '2.weight'\]"
    ):
        check_state_matches(
            "c.safetensors", {k: v for k, v in net.state_dict().items() if k.startswith("0.")}, net
        )
    with pytest.raises(CheckpointError, match=r"expected JSON-able config"):
        save_checkpoint(tmp_path / "x.safetensors", Checkpoint(net.state_dict(), {"f": object()}))


def test_every_tensor_and_the_metadata_carry_a_digest(tmp_path):
    net, opt = _trained()
    path = save_checkpoint(tmp_path / "c.safetensors", Checkpoint(
        net.state_dict(), {}, step=3, ema=net.state_dict(), optimizer=opt.state_dict(),
        rng=capture_rng()))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        names = set(handle.keys())
        tensors = {k: handle.get_tensor(k) for k in names}
    text = metadata["lineardiff"]
    assert metadata["lineardiff.sha256"] == hashlib.sha256(text.encode()).hexdigest()
    table = json.loads(text)["tensors"]
    assert set(table) == names and any(k.startswith("optim.") for k in names)
    for name, entry in table.items():  # recomputed here from the bytes as stored
        t = tensors[name]
        assert entry["dtype"] == str(t.dtype).removeprefix("torch.")
        assert entry["shape"] == list(t.shape)
        assert entry["sha256"] == hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy()).hexdigest()


def test_stale_temporaries_are_those_of_writers_that_are_gone(tmp_path):
    path = tmp_path / "c.safetensors"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        files = {
            "old": tmp_path / ".c.safetensors.ab12cd34.tmp",  # no pid: before pids were recorded
            "dead": tmp_path / f".c.safetensors.{2**22 + 7}.ab12cd34.tmp",
            "mine": tmp_path / f".c.safetensors.{os.getpid()}.ab12cd34.tmp",
            "alive": tmp_path / f".c.safetensors.{alive.pid}.ab12cd34.tmp",
            "other file": tmp_path / f".d.safetensors.{2**22 + 7}.ab12cd34.tmp",
        }
        for f in files.values():
            f.write_bytes(b"")
        removed = remove_stale_temporaries(path)
        assert sorted(removed) == sorted(files[k] for k in ("old", "dead", "mine"))
        assert files["alive"].exists() and files["other file"].exists()
    finally:
        alive.kill()
        alive.wait(timeout=30)
    assert remove_stale_temporaries(path) == [files["alive"]]


def test_train_refuses_what_it_cannot_resume(tmp_path):
    tiny = dict(base_channels=8, channel_mult=(1, 2), attention_levels=(), num_groups=4)
    p, data = DDPM((1, 8, 8), T=10), torch.randn(8, 1, 8, 8)
    path = tmp_path / "c.safetensors"
    stale = tmp_path / f".c.safetensors.{2**22 + 7}.ab12cd34.tmp"
    stale.write_bytes(b"half")
    train(models.UNet(1, **tiny), p, data, TrainConfig(steps=2, batch_size=2), checkpoint=path,
          progress=False, meta={"resume_key": {"lr": 1, "data": [1, 2]}})
    assert not stale.exists()  # removed when the run started
    with pytest.raises(CheckpointError, match=r"is at step 2, expected at most "
                       r"TrainConfig.steps = 1; raise steps"):
        train(models.UNet(1, **tiny), p, data, TrainConfig(steps=1, batch_size=2),
              checkpoint=path, progress=False)
    with pytest.raises(CheckpointError, match=r"was trained with another configuration "
                       r"\(differs in data, lr\)"):
        train(models.UNet(1, **tiny), p, data, TrainConfig(steps=3, batch_size=2),
              checkpoint=path, progress=False, meta={"resume_key": {"lr": 2, "data": [1]}})
    ck = load_checkpoint(path)
    model_file = save_checkpoint(tmp_path / "m.safetensors", Checkpoint(ck.model, {}, ck.step))
    with pytest.raises(CheckpointError, match=r"m.safetensors holds no optimiser or random "
                       r"state \(a model file\?\)"):
        train(models.UNet(1, **tiny), p, data, TrainConfig(steps=3, batch_size=2),
              checkpoint=model_file, progress=False)
    # the same key resumes
    res = train(models.UNet(1, **tiny), p, data, TrainConfig(steps=3, batch_size=2),
                checkpoint=path, progress=False, meta={"resume_key": {"lr": 1, "data": [1, 2]}})
    assert res.step == 3


# ---------------------------------------------------------------------------------------------
# bad calls: a clear error naming the argument, never a KeyError or an AttributeError


def _ck(**changes):
    net, opt = _trained()
    fields = dict(model=net.state_dict(), config={"train": {"steps": 10}}, step=3,
                  ema={k: v.clone() for k, v in net.state_dict().items()},
                  optimizer=opt.state_dict(), rng=capture_rng())
    fields.update(changes)
    return Checkpoint(**fields)


_NAN = torch.tensor([float("nan")])
_RNG_DICT = r"expected rng as the dict capture_rng\(\) returns, with keys 'torch', 'numpy' and 'python'"

BAD_CALLS = [
    # (call taking the target path, exception, message regex)
    (lambda p: restore_rng({}), ValueError, rf"restore_rng: {_RNG_DICT}, got an empty dict"),
    (lambda p: restore_rng("x"), TypeError, rf"restore_rng: {_RNG_DICT}, got str"),
    (lambda p: restore_rng(dict(capture_rng(), cuda=1)), ValueError, r"restore_rng: .*got keys 'torch', 'numpy', 'python', 'cuda'"),
    (lambda p: restore_rng(dict(capture_rng(), torch=1)), TypeError, r"restore_rng: expected rng\['torch'\] as a torch.Tensor \(torch.get_rng_state\(\)\), got int"),
    (lambda p: restore_rng(dict(capture_rng(), torch=torch.zeros(10, dtype=torch.uint8))), ValueError, r"restore_rng: expected rng\['torch'\] as a uint8 CPU tensor of shape \(5056,\) .*got uint8 of shape \(10,\)"),
    (lambda p: restore_rng(dict(capture_rng(), numpy=("MT19937", [1, 2], 0, 0, 0.0))), ValueError, r"restore_rng: expected rng\['numpy'\] as a NumPy MT19937 state .*2 key words instead of 624"),
    (lambda p: restore_rng(dict(capture_rng(), python=(3, [1], None))), ValueError, r"restore_rng: expected rng\['python'\] as a Python random state"),
    (lambda p: save_checkpoint(p, {"model": {}}), TypeError, r"save_checkpoint: expected a Checkpoint, got dict"),
    (lambda p: save_checkpoint(3, _ck()), TypeError, r"save_checkpoint: expected a path, got int"),
    (lambda p: load_checkpoint(3), TypeError, r"load_checkpoint: expected a path, got int"),
    (lambda p: load_checkpoint(None), TypeError, r"load_checkpoint: expected a path, got NoneType"),
    (lambda p: save_checkpoint(p, Checkpoint(model={"w": _NAN}, config={})), CheckpointError, r"save_checkpoint: expected finite values in checkpoint.model\['w'\], got NaN or inf"),
    (lambda p: save_checkpoint(p, Checkpoint(model={}, config={}, step=-1)), ValueError, r"save_checkpoint: expected checkpoint.step >= 0, got -1"),
    (lambda p: save_checkpoint(p, Checkpoint(model={}, config={}, step=True)), TypeError, r"save_checkpoint: expected checkpoint.step as an int, got True"),
    (lambda p: save_checkpoint(p, Checkpoint(model={}, config={}, step=2.5)), TypeError, r"save_checkpoint: expected checkpoint.step as an int, got 2.5"),
    (lambda p: save_checkpoint(p, Checkpoint(model=[1], config={})), TypeError, r"save_checkpoint: expected checkpoint.model as a dict of str to Tensor, got list"),
    (lambda p: save_checkpoint(p, Checkpoint(model={"w": 1.0}, config={})), TypeError, r"save_checkpoint: expected checkpoint.model\['w'\] as a torch.Tensor, got float"),
    (lambda p: save_checkpoint(p, Checkpoint(model={"w": torch.ones(2, device="meta")}, config={})), CheckpointError, r"save_checkpoint: expected checkpoint.model\['w'\] with data, got a tensor on the meta device"),
    (lambda p: save_checkpoint(p, Checkpoint(model={}, config=[1])), TypeError, r"save_checkpoint: expected checkpoint.config as a dict, got list"),
    (lambda p: save_checkpoint(p, Checkpoint(model={}, config={}, extra=None)), TypeError, r"save_checkpoint: expected checkpoint.extra as a dict, got NoneType"),
    (lambda p: save_checkpoint(p, _ck(optimizer=[])), TypeError, r"save_checkpoint: expected checkpoint.optimizer as an optimiser state_dict"),
    (lambda p: save_checkpoint(p, _ck(rng={})), ValueError, r"save_checkpoint: expected checkpoint.rng as the dict capture_rng\(\) returns"),
]


@pytest.mark.parametrize(("call", "exc", "match"), BAD_CALLS,
                         ids=[f"{i}-{row[2].split(':')[0]}" for i, row in enumerate(BAD_CALLS)])
def test_bad_calls_are_named(tmp_path, call, exc, match):
    state = (torch.get_rng_state(), np.random.get_state(), random.getstate())  # noqa: NPY002
    with pytest.raises(exc, match=match):
        call(tmp_path / "c.safetensors")
    assert os.listdir(tmp_path) == []  # nothing written, not even a temporary file
    if match.startswith("restore_rng"):  # a refused state changes none of the global ones
        assert torch.equal(torch.get_rng_state(), state[0]) and random.getstate() == state[2]
        assert np.array_equal(np.random.get_state()[1], state[1][1])  # noqa: NPY002


def test_restore_rng_takes_what_capture_rng_and_load_checkpoint_give(tmp_path):
    rng = capture_rng()
    first = (torch.rand(1), np.random.rand(), random.random())  # noqa: NPY002
    restore_rng(rng)
    assert (torch.rand(1), np.random.rand(), random.random()) == first  # noqa: NPY002
    path = save_checkpoint(tmp_path / "c.safetensors", _ck(rng=rng))
    restore_rng(load_checkpoint(path).rng)
    assert (torch.rand(1), np.random.rand(), random.random()) == first  # noqa: NPY002
