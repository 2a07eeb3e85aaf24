"""The training loop: the loss falls, a resumed run repeats the uninterrupted one, errors."""

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
    with pytest.raises(ValueError, match=r"TrainConfig: lr has an impossible value -1"):
        TrainConfig(steps=1, lr=-1)
    path = tmp_path / "c.safetensors"
    train(net, p, _data(), TrainConfig(steps=1, batch_size=2), checkpoint=path, progress=False)
    other = models.UNet(1, base_channels=16, channel_mult=(1, 2), attention_levels=(), num_groups=4)
    with pytest.raises(lineardiff.CheckpointError, match=r"c.safetensors: parameter .* has shape"):
        train(
            other, p, _data(), TrainConfig(steps=2, batch_size=2), checkpoint=path, progress=False
        )
