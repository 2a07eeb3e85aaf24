"""Two processes under torchrun (gloo, CPU): identical weights on every rank, the loss falls,
a resumed run repeats the uninterrupted one, rank 0 alone writes, and the checkpoint loads
into a single-process run."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch.distributed as dist

import lineardiff

ROOT = Path(__file__).resolve().parents[2]

# A conv net that ignores t and starts with a large constant output (bias 2): its initial eps
# loss is about 1 + 4, and the gradient removes most of the offset within a few dozen AdamW
# steps at lr 0.05, so "the loss fell" is a robust check of a toy that trains in seconds.
TOY = textwrap.dedent(
    """
    import torch

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
            torch.nn.init.constant_(self.conv.bias, 2.0)
            self.sizes = []

        def forward(self, x, t):
            self.sizes.append(int(x.shape[-1]))
            return self.conv(x)

    def data(n, size):
        g = torch.Generator().manual_seed(size)
        signs = torch.where(torch.rand(n, 1, 1, 1, generator=g) < 0.5, -1.0, 1.0)
        return signs.expand(n, 1, size, size).clone()
    """
)

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path
    import torch, lineardiff
    from toy import Toy, data
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    info = lineardiff.init_distributed()
    rank = info.rank

    def digest(state):
        h = hashlib.sha256()
        for k in sorted(state):
            h.update(k.encode()); h.update(state[k].detach().contiguous().numpy().tobytes())
        return h.hexdigest()

    def run(name, steps, **kw):
        torch.manual_seed(100 + rank)  # different initial weights: DDP must broadcast rank 0's
        net = Toy()
        calls = []
        cfg = lineardiff.TrainConfig(steps=steps, batch_size=8, lr=0.05, checkpoint_every=5)
        res = lineardiff.train(
            net, kw.pop("process", lineardiff.DDPM((1, 8, 8), T=50)), kw.pop("data", data(32, 8)),
            kw.pop("config", cfg), progress=False,
            callback=lambda step, n, ema: calls.append(step), callback_every=10, **kw,
        )
        return {"losses": res.losses, "step": res.step, "model": digest(net.state_dict()),
                "ema": digest(res.ema), "calls": calls, "sizes": net.sizes}

    report = {"world_size": info.world_size, "backend": info.backend}
    report["full"] = run("full", 30, checkpoint=out / "full.safetensors", log_csv=out / "full.csv")
    report["part"] = run("part", 15, checkpoint=out / "part.safetensors", log_csv=out / "part.csv")
    report["resumed"] = run("part", 30, checkpoint=out / "part.safetensors", log_csv=out / "part.csv")
    mixed = lineardiff.TrainConfig(steps=12, batch_size=2, resolution_weights={8: 1, 16: 3})
    report["mixed"] = run(
        "mixed", 12, config=mixed,
        process={8: lineardiff.DDPM((1, 8, 8), T=50), 16: lineardiff.DDPM((1, 16, 16), T=50)},
        data={8: data(8, 8), 16: data(8, 16)},
    )
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    """
)


def _csv(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "step,loss,lr,grad_norm,seconds,resolution,cpu_seconds"
    return [line.split(",") for line in lines[1:]]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("needs torch.distributed with gloo")
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "toy.py").write_text(TOY)
    (tmp / "script.py").write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp)]), OMP_NUM_THREADS="1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(tmp / "script.py"), str(tmp)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]
    return tmp, reports


def test_ranks_agree_and_the_loss_falls(two_ranks):
    _, (r0, r1) = two_ranks
    assert r0["world_size"] == r1["world_size"] == 2 and r0["backend"] == "gloo"
    for run in ("full", "part", "resumed", "mixed"):
        assert r0[run]["model"] == r1[run]["model"], run  # weights identical on both ranks
        assert r0[run]["ema"] == r1[run]["ema"], run
        assert r0[run]["losses"] == r1[run]["losses"], run  # the mean over ranks
    losses = r0["full"]["losses"]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_resume_under_ddp_repeats_the_uninterrupted_run(two_ranks):
    _, reports = two_ranks
    for r in reports:
        assert r["resumed"]["step"] == 30 and len(r["resumed"]["losses"]) == 15
        assert r["resumed"]["losses"] == r["full"]["losses"][15:]
        assert r["resumed"]["model"] == r["full"]["model"]
        assert r["resumed"]["ema"] == r["full"]["ema"]


def test_rank0_alone_logs_and_calls_back(two_ranks):
    tmp, (r0, r1) = two_ranks
    assert r0["full"]["calls"] == [10, 20, 30] and r1["full"]["calls"] == []
    rows = _csv(tmp / "full.csv")
    assert [int(row[0]) for row in rows] == list(range(1, 31))  # one writer: no duplicate rows
    assert [float(row[1]) for row in rows] == r0["full"]["losses"]
    resumed = _csv(tmp / "part.csv")
    assert [row[:2] for row in resumed] == [row[:2] for row in rows]
    assert sorted(p.name for p in tmp.glob("*.safetensors")) == [
        "full.safetensors",
        "part.safetensors",
    ]


def test_ranks_draw_the_same_resolution_each_step(two_ranks):
    tmp, (r0, r1) = two_ranks
    assert r0["mixed"]["sizes"] == r1["mixed"]["sizes"]
    assert set(r0["mixed"]["sizes"]) == {8, 16}


def test_ddp_checkpoint_resumes_in_one_process(two_ranks):
    tmp, (r0, _) = two_ranks
    sys.path.insert(0, str(tmp))
    try:
        from toy import Toy, data
    finally:
        sys.path.remove(str(tmp))
    ck = lineardiff.load_checkpoint(tmp / "full.safetensors")
    assert ck.step == 30 and ck.extra["world_size"] == 2
    net = Toy()
    lineardiff.check_state_matches("full.safetensors", ck.model, net)  # bare module's keys
    path = tmp / "single.safetensors"
    path.write_bytes((tmp / "full.safetensors").read_bytes())
    cfg = lineardiff.TrainConfig(steps=32, batch_size=8, lr=0.05)
    res = lineardiff.train(
        net, lineardiff.DDPM((1, 8, 8), T=50), data(32, 8), cfg, checkpoint=path, progress=False
    )
    assert res.step == 32 and len(res.losses) == 2
