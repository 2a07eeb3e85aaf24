"""A training process killed with SIGKILL resumes from its last checkpoint with no lost or
repeated step: the result equals an uninterrupted run, bit for bit, and its CSV log holds
every step once. Killed in the middle of writing a checkpoint, it leaves the previous one
intact and a temporary file that the next start removes."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import lineardiff

SCRIPT = textwrap.dedent(
    """
    import sys, time, torch, models, lineardiff
    torch.set_num_threads(1)
    path, steps, slow = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    kill_at_save = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    if kill_at_save:  # die with half of that checkpoint written to its temporary file
        import os, signal
        import lineardiff.training._checkpoint as ck
        real_save, saves = ck.save_file, []
        def dying_save(tensors, filename, metadata=None):
            saves.append(filename)
            real_save(tensors, filename, metadata=metadata)
            if len(saves) == kill_at_save:
                os.truncate(filename, os.path.getsize(filename) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        ck.save_file = dying_save
    p = lineardiff.DDPM((1, 8, 8), T=50)
    g = torch.Generator().manual_seed(0)
    data = torch.where(torch.rand(32, 1, 1, 1, generator=g) < 0.5, -1.0, 1.0).expand(32, 1, 8, 8).clone()
    net = models.UNet(1, base_channels=8, channel_mult=(1, 2), attention_levels=(), num_groups=4)
    if slow:  # make each step slow enough to be killed in the middle of the run
        forward = net.forward
        def slow_forward(*a, **k):
            time.sleep(slow)
            return forward(*a, **k)
        net.forward = slow_forward
    cfg = lineardiff.TrainConfig(steps=steps, batch_size=4, checkpoint_every=2)
    lineardiff.train(net, p, data, cfg, checkpoint=path, progress=False, log_csv=path + ".csv")
    """
)


def _run(args, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *map(str, args)], env=env, **kwargs)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The uninterrupted 10-step run both tests compare with."""
    path = tmp_path_factory.mktemp("full") / "full.safetensors"
    assert _run([path, 10, 0]).wait(timeout=120) == 0
    return path


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, full):
    crashed = tmp_path / "crashed.safetensors"
    proc = _run([crashed, 10, 0.3])
    deadline = time.time() + 120
    while time.time() < deadline:
        if crashed.exists() and lineardiff.load_checkpoint(crashed).step >= 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    step_at_kill = lineardiff.load_checkpoint(crashed).step
    assert 4 <= step_at_kill < 10  # killed mid-run, with a consistent checkpoint on disk
    assert _run([crashed, 10, 0]).wait(timeout=120) == 0
    _assert_same_run(full, crashed)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_while_writing_a_checkpoint(tmp_path, full):
    crashed = tmp_path / "crashed.safetensors"
    assert _run([crashed, 10, 0, 2]).wait(timeout=120) == -signal.SIGKILL  # in its 2nd save
    leftovers = list(tmp_path.glob(".crashed.safetensors.*.tmp"))
    assert len(leftovers) == 1  # the half-written temporary file
    assert lineardiff.load_checkpoint(crashed).step == 2  # the previous checkpoint, intact
    assert _run([crashed, 10, 0]).wait(timeout=120) == 0
    assert list(tmp_path.glob(".crashed.safetensors.*.tmp")) == []  # removed on restart
    _assert_same_run(full, crashed)


def _assert_same_run(full, crashed):
    a, b = lineardiff.load_checkpoint(full), lineardiff.load_checkpoint(crashed)
    assert a.step == b.step == 10
    for k, v in a.model.items():
        assert torch.equal(v, b.model[k]), k
    for k, v in a.ema.items():
        assert torch.equal(v, b.ema[k]), k
    rows_full, rows_crashed = (_rows(f"{path}.csv") for path in (full, crashed))
    assert [int(r[0]) for r in rows_crashed] == list(range(1, 11))
    assert [r[:2] for r in rows_crashed] == [r[:2] for r in rows_full]  # same steps, same losses


def _rows(path):
    with open(path) as handle:
        return [line.split(",") for line in handle.read().splitlines()[1:]]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_sigint_or_sigterm_saves_the_last_step_then_resume_equals_uninterrupted(
    tmp_path, full, sig
):
    if not hasattr(signal, sig):
        pytest.skip(f"no {sig} here")
    stopped = tmp_path / "stopped.safetensors"
    proc = _run([stopped, 10, 0.3], stderr=subprocess.PIPE, text=True)
    log = tmp_path / "stopped.safetensors.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(_rows(log)) >= 3):
        time.sleep(0.02)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "checkpoint" in err and "saved at that step" in err
    last_logged = int(_rows(log)[-1][0])
    # the step in progress was finished and saved: nothing since the periodic checkpoint
    # (every 2 steps) is lost
    assert lineardiff.load_checkpoint(stopped).step == last_logged < 10
    assert _run([stopped, 10, 0]).wait(timeout=120) == 0
    _assert_same_run(full, stopped)
