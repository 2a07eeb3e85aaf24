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
