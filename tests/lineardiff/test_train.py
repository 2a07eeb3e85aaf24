"""The training loop: the loss falls, a resumed run repeats the uninterrupted one, errors."""

import shutil

import pytest
import torch

import lineardiff
import models
from lineardiff import DDPM, ScaleSpaceDiffusion, TrainConfig, train

TINY = dict(
    base_channels=8, channel_mult=(1, 2), attention_levels=(), num_groups=4, padding_mode="circular"
)


def _data(n=64, size=8):
    g = torch.Generator().manual_seed(0)
    signs = torch.where(torch.rand(n, 1, 1, 1, generator=g) < 0.5, -1.0, 1.0)
    return signs.expand(n, 1, size, size).clone()


def test_loss_falls_for_ddpm_and_unet():
    net = models.UNet(1, **TINY)
    res = train(
        net,
        DDPM((1, 8, 8), T=100),
        _data(),
        TrainConfig(steps=80, batch_size=16, lr=3e-3),
        progress=False,
    )
    first, last = sum(res.losses[:10]) / 10, sum(res.losses[-10:]) / 10
    # eps prediction on two-point data: a network that learns anything beats the initial
    # zero output (loss ~1) by a wide margin within 80 steps
    assert last < 0.6 * first, (first, last)


def test_resume_repeats_the_uninterrupted_run(tmp_path):
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=50)
    data = _data()

    def fresh():
        return models.FlexiUNet(1, image_size=8, **TINY)

    full = fresh()
    a = train(full, p, data, TrainConfig(steps=8, batch_size=4), progress=False)
    part = fresh()
    path = tmp_path / "run.safetensors"
    train(part, p, data, TrainConfig(steps=4, batch_size=4), checkpoint=path, progress=False)
    resumed = fresh()
    b = train(resumed, p, data, TrainConfig(steps=8, batch_size=4), checkpoint=path, progress=False)
    assert b.step == 8 and len(b.losses) == 4
    assert b.losses == a.losses[4:]  # same batches, same timesteps, same noise
    for k, v in resumed.state_dict().items():
        assert torch.equal(v, full.state_dict()[k]), k
    for k, v in b.ema.items():
        assert torch.equal(v, a.ema[k]), k
    assert lineardiff.load_checkpoint(path).step == 8


def test_errors(tmp_path):
    p = DDPM((1, 8, 8), T=10)
    net = models.UNet(1, **TINY)
    with pytest.raises(
        ValueError, match=r"train: expected data of shape \(N, \*\(1, 8, 8\)\), got \(4, 1, 4, 4\)"
    ):
        train(net, p, torch.zeros(4, 1, 4, 4), TrainConfig(steps=1), progress=False)
    with pytest.raises(ValueError, match=r"train: expected finite data"):
        train(net, p, torch.full((4, 1, 8, 8), float("nan")), TrainConfig(steps=1), progress=False)
    with pytest.raises(ValueError, match=r"TrainConfig: expected lr in \(0, inf\), got -1.0"):
        TrainConfig(steps=1, lr=-1)
    path = tmp_path / "c.safetensors"
    train(net, p, _data(), TrainConfig(steps=1, batch_size=2), checkpoint=path, progress=False)
    other = models.UNet(1, base_channels=16, channel_mult=(1, 2), attention_levels=(), num_groups=4)
    with pytest.raises(lineardiff.CheckpointError, match=r"c.safetensors: parameter .* has shape"):
        train(
            other, p, _data(), TrainConfig(steps=2, batch_size=2), checkpoint=path, progress=False
        )


def _csv_rows(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "step,loss,lr,grad_norm,seconds,resolution,cpu_seconds"
    return [line.split(",") for line in lines[1:]]


def test_csv_log_rows_and_resume_without_repeats(tmp_path):
    p, data = DDPM((1, 8, 8), T=20), _data()
    log = tmp_path / "log.csv"
    cfg = TrainConfig(steps=6, batch_size=4, grad_clip=0)  # no clip: the norm is still logged
    a = train(models.UNet(1, **TINY), p, data, cfg, log_csv=log, progress=False)
    rows = _csv_rows(log)
    assert [int(r[0]) for r in rows] == list(range(1, 7))
    assert [float(r[1]) for r in rows] == a.losses  # repr round-trips the float exactly
    assert all(float(r[2]) == cfg.lr and float(r[3]) > 0 and float(r[4]) > 0 for r in rows)
    assert {r[5] for r in rows} == {"8"}
    assert all(float(r[6]) > 0 for r in rows)  # CPU time of the step
    # the norm logged without clipping is the one clip_grad_norm_ reports (a clip it never
    # reaches scales the gradients by exactly 1, so both runs take the same steps)
    big = tmp_path / "big.csv"
    cfg_big = TrainConfig(steps=6, batch_size=4, grad_clip=1e9)
    train(models.UNet(1, **TINY), p, data, cfg_big, log_csv=big, progress=False)
    clipped = _csv_rows(big)
    assert [r[1] for r in clipped] == [r[1] for r in rows]
    for r, c in zip(rows, clipped, strict=True):
        assert float(r[3]) == pytest.approx(float(c[3]), rel=1e-5)
    # a crashed run: checkpoint at step 3, rows 4 and 5 (and a half-written row) logged after it
    path, log2 = tmp_path / "c.safetensors", tmp_path / "log2.csv"
    train(
        models.UNet(1, **TINY),
        p,
        data,
        TrainConfig(steps=3, batch_size=4, grad_clip=0),
        checkpoint=path,
        log_csv=log2,
        progress=False,
    )
    shutil.copy(path, tmp_path / "c3.safetensors")
    log2.write_text(log2.read_text() + "4,9.0,0.0002,1.0,0.1,8,0.1\n5,9.0,0.0002,1.0,0.1,8,0.1\n"
                    "6,9.0,0.00")
    train(models.UNet(1, **TINY), p, data, cfg, checkpoint=path, log_csv=log2, progress=False)
    assert [r[:2] for r in _csv_rows(log2)] == [r[:2] for r in rows]  # no lost, no repeated step
    # a log written before cpu_seconds existed is continued: its rows get the column empty
    old = tmp_path / "old.csv"
    old.write_text("step,loss,lr,grad_norm,seconds,resolution\n" + "".join(
        ",".join(r[:6]) + "\n" for r in _csv_rows(log2)[:3]) + "4,9.0,0.0002,1.0,0.1,8\n")
    train(models.UNet(1, **TINY), p, data, cfg, checkpoint=tmp_path / "c3.safetensors",
          log_csv=old, progress=False)
    continued = _csv_rows(old)
    assert [r[:2] for r in continued] == [r[:2] for r in rows]
    assert [r[6] for r in continued[:3]] == ["", "", ""] and float(continued[3][6]) > 0
    # a file with other columns is not overwritten
    other = tmp_path / "other.csv"
    other.write_text("epoch,acc\n1,0.5\n")
    with pytest.raises(ValueError, match=r"train: expected log_csv .*other.csv with the columns"):
        train(models.UNet(1, **TINY), p, data, cfg, log_csv=other, progress=False)
    with pytest.raises(ValueError, match=r"train: expected an existing folder for log_csv"):
        train(models.UNet(1, **TINY), p, data, cfg, log_csv=tmp_path / "no" / "l.csv")


def test_callback_contract_and_it_does_not_change_training():
    p, data = DDPM((1, 8, 8), T=20), _data()
    cfg = TrainConfig(steps=7, batch_size=4)
    calls = []

    def callback(step, net, ema):
        net.eval()
        assert set(ema) == set(net.state_dict())
        calls.append((step, {k: v.clone() for k, v in ema.items()}))
        torch.randn(100)  # a callback that samples draws from the global generator

    plain = train(models.UNet(1, **TINY), p, data, cfg, progress=False)
    net = models.UNet(1, **TINY)
    res = train(net, p, data, cfg, progress=False, callback=callback, callback_every=3)
    assert [s for s, _ in calls] == [3, 6]
    assert net.training  # put back in train mode
    assert res.losses == plain.losses  # the forked random state leaves training untouched
    assert not all(torch.equal(v, calls[0][1][k]) for k, v in calls[1][1].items())
    with pytest.raises(ValueError, match=r"train: expected callback_every >= 1 with a callback"):
        train(net, p, data, cfg, callback=callback)
    with pytest.raises(TypeError, match=r"train: expected a callable callback, got int"):
        train(net, p, data, cfg, callback=3, callback_every=1)
    with pytest.raises(ValueError, match=r"train: expected callback_every >= 0, got -1"):
        train(net, p, data, cfg, callback_every=-1)
    with pytest.raises(TypeError, match=r"train: expected log_csv as a str or Path, got int"):
        train(net, p, data, cfg, log_csv=3)


def test_progress_shows_the_loss(capsys):
    train(
        models.UNet(1, **TINY), DDPM((1, 8, 8), T=20), _data(), TrainConfig(steps=2, batch_size=2)
    )
    err = capsys.readouterr().err
    assert "loss=" in err and "step" in err


def test_single_process_is_world_size_one():
    info = lineardiff.init_distributed()
    assert (info.rank, info.world_size, info.backend, info.is_distributed) == (0, 1, None, False)
    with pytest.raises(TypeError, match=r"init_distributed: expected backend as a str, got int"):
        lineardiff.init_distributed(backend=1)


def test_lr_decay_and_symmetries_log_the_rate_and_resume_exactly(tmp_path):
    from lineardiff.training._loop import lr_at

    cfg = TrainConfig(
        steps=8,
        batch_size=4,
        lr=1e-3,
        lr_decay_steps=4,
        symmetries=["sign", "dihedral", "translate"],
    )
    # constant for the first 4 steps, then 4/4, 3/4, 2/4, 1/4 of lr: never zero on a step
    assert [lr_at(cfg, s) for s in range(1, 9)] == pytest.approx(
        [1e-3] * 5 + [7.5e-4, 5e-4, 2.5e-4]
    )
    assert lr_at(TrainConfig(steps=8), 8) == 2e-4  # no decay: the constant rate
    p, data = DDPM((1, 8, 8), T=20), _data()
    full, log = models.UNet(1, **TINY), tmp_path / "full.csv"
    a = train(full, p, data, cfg, log_csv=log, progress=False)
    assert [float(r[2]) for r in _csv_rows(log)] == pytest.approx(
        [lr_at(cfg, s) for s in range(1, 9)]
    )
    path = tmp_path / "c.safetensors"
    # the first half at a constant rate is the same run (the decay starts after step 5); the
    # second half resumes with the decay, as `lineardiff train --set train.lr_decay_steps=4`
    half = TrainConfig(**{**cfg.__dict__, "steps": 4, "lr_decay_steps": 0})
    train(models.UNet(1, **TINY), p, data, half, checkpoint=path, progress=False)
    resumed = models.UNet(1, **TINY)
    b = train(resumed, p, data, cfg, checkpoint=path, progress=False)
    assert b.losses == a.losses[4:]  # same augmented batches and the same rates
    for k, v in resumed.state_dict().items():
        assert torch.equal(v, full.state_dict()[k]), k


def test_symmetries_change_the_batches_and_refuse_bad_values():
    p, data = DDPM((1, 8, 8), T=20), torch.randn(16, 1, 8, 8)
    plain = train(
        models.UNet(1, **TINY), p, data, TrainConfig(steps=3, batch_size=4), progress=False
    )
    sym = train(
        models.UNet(1, **TINY),
        p,
        data,
        TrainConfig(steps=3, batch_size=4, symmetries=["dihedral"]),
        progress=False,
    )
    assert plain.losses[0] != sym.losses[0]
    with pytest.raises(ValueError, match=r"TrainConfig: expected symmetries entries from "):
        TrainConfig(steps=1, symmetries=["mirror"])
    with pytest.raises(ValueError, match=r"TrainConfig: expected lr_decay_steps >= 0, got -1"):
        TrainConfig(steps=1, lr_decay_steps=-1)
    with pytest.raises(ValueError, match=r"train: TrainConfig.symmetries 'dihedral' needs square"):
        train(
            models.UNet(1, **TINY),
            DDPM((1, 8, 12), T=20),
            torch.zeros(4, 1, 8, 12),
            TrainConfig(steps=1, batch_size=2, symmetries=["dihedral"]),
            progress=False,
        )
