"""A training process killed with SIGKILL resumes from its last checkpoint with no lost or
repeated step: the result equals an uninterrupted run, bit for bit, and its CSV log holds
every step once."""

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


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    full = tmp_path / "full.safetensors"
    assert _run([full, 10, 0]).wait(timeout=120) == 0
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
