"""One writer per run folder: ``lineardiff train`` holds an exclusive lock on its folder for
the whole run, a second one fails at once naming the holder's pid (exit code 2), and the
configuration is compared again when the checkpoint is loaded."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from lineardiff import CheckpointError
from lineardiff.app import runs
from lineardiff.app.cli import main
from lineardiff.app.config import load_config
from lineardiff.app.runs import RunInUseError, RunLock

fcntl = pytest.importorskip("fcntl")

TINY = """
[data]
name = "ising"
L = 8
n = 64
cache_dir = "{cache}"
[process]
name = "ddpm"
T = 20
[model]
name = "unet"
base_channels = 8
channel_mult = [1, 2]
num_res_blocks = 1
attention_levels = []
num_groups = 4
[train]
steps = 2
batch_size = 4
checkpoint_every = 1
out = "{out}"
"""

# holds the lock as RunLock does (flock + a JSON record), without importing torch (fast)
HOLDER = textwrap.dedent(
    """
    import fcntl, json, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": "h", "since": "now"}).encode(), 0)
    print("locked", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(cache=tmp_path / "cache", out=tmp_path / "run"))
    return path


def test_a_second_lock_names_the_holder_and_release_frees_it(tmp_path):
    with RunLock(tmp_path) as lock:
        record = json.loads(lock.path.read_text())
        assert record["pid"] == os.getpid()
        with pytest.raises(RunInUseError, match=rf"run folder .* is in use by another process "
                           rf"\(pid {os.getpid()} on host .*\); wait for it to finish"):
            RunLock(tmp_path).acquire()
    assert lock.path.read_text() == ""  # released: no stale pid left in the file
    with RunLock(tmp_path):
        pass


def test_a_second_train_on_a_locked_folder_exits_2_naming_the_pid(tmp_path, config, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder / "train.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(["train", "--config", str(config), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2
        assert f"is in use by another process (pid {holder.pid} on host h" in err
        assert not (folder / "checkpoint.safetensors").exists()
        assert not (folder / "log.csv").exists()  # the second writer touched nothing
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with RunLock(folder):  # a killed holder leaves no lock behind
        pass


def test_the_lock_is_held_for_the_whole_run(tmp_path, config, capsys, monkeypatch):
    folder = tmp_path / "run"
    seen = {}
    real_train = runs.train

    def train_and_meanwhile_start_another(*args, **kwargs):
        seen["second"] = main(["train", "--config", str(config), "--quiet"])
        seen["err"] = capsys.readouterr().err
        return real_train(*args, **kwargs)

    monkeypatch.setattr(runs, "train", train_and_meanwhile_start_another)
    assert main(["train", "--config", str(config), "--quiet"]) == 0
    assert seen["second"] == 2 and f"(pid {os.getpid()} on host" in seen["err"]
    assert [r.split(",")[0] for r in (folder / "log.csv").read_text().splitlines()[1:]] == [
        "1", "2"]

    def failing_train(*args, **kwargs):
        raise ValueError("train: boom")

    monkeypatch.setattr(runs, "train", failing_train)
    assert main(["train", "--config", str(config), "--quiet", "--set", "train.steps=3"]) == 2
    with RunLock(folder):  # released after a failure too
        pass


def test_leftover_temporaries_are_removed_on_the_next_start(tmp_path, config, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    old_style = folder / ".checkpoint.safetensors.k2h9x_0a.tmp"  # before pids were recorded
    dead = folder / f".checkpoint.safetensors.{2**22 + 12345}.abcdefgh.tmp"
    other = folder / ".log.csv.1.tmp"  # not a checkpoint temporary: left alone
    for f in (old_style, dead, other):
        f.write_bytes(b"half a checkpoint")
    monkeypatch.setattr(runs, "train", lambda *a, **k: None)
    assert main(["train", "--config", str(config), "--quiet"]) == 0
    assert not old_style.exists() and not dead.exists() and other.exists()


def test_the_configuration_is_compared_again_when_the_checkpoint_is_loaded(
        tmp_path, config, monkeypatch):
    """A checkpoint of another configuration that appears after the early check (another
    writer that ignores the lock) is refused when the training loop loads it."""
    other = tmp_path / "other"
    assert main(["train", "--config", str(config), "--quiet", "--out", str(other),
                 "--set", "train.lr=1e-3"]) == 0
    folder = tmp_path / "run"
    real_load_data = runs.load_data

    def load_data_while_another_writes(cfg):
        shutil.copy(other / "checkpoint.safetensors", folder / "checkpoint.safetensors")
        return real_load_data(cfg)

    monkeypatch.setattr(runs, "load_data", load_data_while_another_writes)
    cfg = load_config(str(config), [])
    with pytest.raises(CheckpointError, match=r"was trained with another configuration "
                       r"\(differs in train.lr\)"):
        runs.run_training(cfg, progress=False)
