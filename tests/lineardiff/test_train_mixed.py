"""Mixed-resolution training (DFU): weighted draws of the size per step, exact resume, errors."""

import math

import pytest
import torch

import lineardiff
import models
from lineardiff import DDPM, TrainConfig, train

DFU = dict(modes=((3, 2), (2, 2)), base_channels=8, channel_mult=(1, 2), attention_levels=())


class Toy(torch.nn.Module):
    """A size-agnostic conv net that records the size of every batch it sees."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.sizes = []

    def forward(self, x, t):
        self.sizes.append(int(x.shape[-1]))
        return self.conv(x)


def _data(n, size):
    g = torch.Generator().manual_seed(size)
    signs = torch.where(torch.rand(n, 1, 1, 1, generator=g) < 0.5, -1.0, 1.0)
    return signs.expand(n, 1, size, size).clone()


def _sizes(*sizes, n=8):
    return {s: DDPM((1, s, s), T=20) for s in sizes}, {s: _data(n, s) for s in sizes}


def test_sizes_are_drawn_at_the_configured_frequencies(tmp_path):
    process, data = _sizes(8, 16)
    steps, p8 = 400, 0.25
    # string keys, as a TOML table or a JSON record gives them
    cfg = TrainConfig(steps=steps, batch_size=1, resolution_weights={"8": 1, "16": 3})
    assert cfg.resolution_weights == {8: 1.0, 16: 3.0}
    net, log = Toy(), tmp_path / "log.csv"
    train(net, process, data, cfg, log_csv=log, progress=False)
    logged = [int(line.split(",")[5]) for line in log.read_text().splitlines()[1:]]
    assert logged == net.sizes  # the CSV names the size each step trained on
    # binomial count: 4 standard errors (sqrt(400 * 0.25 * 0.75) = 8.7) around the mean 100
    count = net.sizes.count(8)
    assert abs(count - steps * p8) < 4 * math.sqrt(steps * p8 * (1 - p8)), count
    assert net.sizes.count(16) == steps - count


def test_uniform_by_default_and_one_size_per_step():
    process, data = _sizes(8, 12, 16)
    net = Toy()
    train(net, process, data, TrainConfig(steps=300, batch_size=1), progress=False)
    for s in (8, 12, 16):  # each 1/3: 100 +- 4 * 8.2
        assert abs(net.sizes.count(s) - 100) < 4 * math.sqrt(300 / 3 * 2 / 3), net.sizes.count(s)


def test_dfu_on_two_sizes_resumes_exactly(tmp_path):
    process, data = _sizes(8, 16)
    cfg = dict(batch_size=2, resolution_weights=[(8, 1.0), (16, 1.0)])

    def fresh():
        return models.DualFNOUNet(1, num_groups=4, **DFU)

    full = fresh()
    a = train(full, process, data, TrainConfig(steps=6, **cfg), progress=False)
    path = tmp_path / "dfu.safetensors"
    train(fresh(), process, data, TrainConfig(steps=3, **cfg), checkpoint=path, progress=False)
    resumed = fresh()
    b = train(resumed, process, data, TrainConfig(steps=6, **cfg), checkpoint=path, progress=False)
    assert b.losses == a.losses[3:]
    for k, v in resumed.state_dict().items():
        assert torch.equal(v, full.state_dict()[k]), k
    for k, v in b.ema.items():
        assert torch.equal(v, a.ema[k]), k
    # the record in the checkpoint (JSON: string keys) rebuilds the same config
    stored = lineardiff.load_checkpoint(path).config["train"]
    assert stored["resolution_weights"] == {"8": 1.0, "16": 1.0}
    assert TrainConfig(**stored) == TrainConfig(steps=6, **cfg)


def test_mixed_resolution_errors():
    process, data = _sizes(8, 16)
    net = Toy()
    with pytest.raises(
        ValueError,
        match=r"train: expected the same sizes in process and data, got \[8, 16\] and \[8\]",
    ):
        train(net, process, {8: data[8]}, TrainConfig(steps=1), progress=False)
    with pytest.raises(
        TypeError,
        match=r"train: expected process and data both as \{size: \.\.\.\} mappings .* got dict and Tensor",
    ):
        train(net, process, data[8], TrainConfig(steps=1), progress=False)
    with pytest.raises(
        ValueError,
        match=r"resolution_weights has sizes \[32\] without data; data has sizes \[8, 16\]",
    ):
        train(net, process, data, TrainConfig(steps=1, resolution_weights={8: 1, 16: 1, 32: 1}))
    with pytest.raises(
        ValueError,
        match=r"expected a resolution weight for every size in data, got none for \[16\]",
    ):
        train(net, process, data, TrainConfig(steps=1, resolution_weights={8: 1}))
    with pytest.raises(
        ValueError,
        match=r"train: expected data\[16\] of shape \(N, \*\(1, 16, 16\)\), got \(8, 1, 8, 8\)",
    ):
        train(net, process, {8: data[8], 16: data[8]}, TrainConfig(steps=1), progress=False)
    with pytest.raises(
        TypeError, match=r"train: expected process\[16\] as a diffusion process, got str"
    ):
        train(net, {8: process[8], 16: "ddpm"}, data, TrainConfig(steps=1), progress=False)
    with pytest.raises(
        TypeError, match=r"train: expected positive int sizes as keys of process, got '8'"
    ):
        train(net, {"8": process[8]}, {"8": data[8]}, TrainConfig(steps=1), progress=False)
    with pytest.raises(
        ValueError,
        match=r"train: expected process and data as \{size: \.\.\.\} mappings with TrainConfig.resolution_weights",
    ):
        train(net, process[8], data[8], TrainConfig(steps=1, resolution_weights={8: 1}))
    mixed = {8: process[8], 16: lineardiff.ScaleSpaceDiffusion((1, 16, 16), n_levels=2, T=20)}
    with pytest.raises(
        ValueError,
        match=r"the processes default to different predictions \['eps', 'signal'\]; set TrainConfig.prediction",
    ):
        train(net, mixed, data, TrainConfig(steps=1), progress=False)


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        ({8: 0}, ValueError, r"expected positive finite weights, got 0 for size 8"),
        ({8: -1.5}, ValueError, r"expected positive finite weights, got -1.5 for size 8"),
        ({8: float("inf")}, ValueError, r"expected positive finite weights, got inf for size 8"),
        ({8: True}, ValueError, r"expected positive finite weights, got True for size 8"),
        ({0: 1}, ValueError, r"expected sizes as positive integers, got 0"),
        ({"x": 1}, TypeError, r"expected sizes as positive integers, got 'x'"),
        ({8.0: 1}, TypeError, r"expected sizes as positive integers, got 8.0"),
        ({}, ValueError, r"expected at least one size, got none"),
        ([(8, 1), (8, 2)], ValueError, r"expected each size once, got 8 twice"),
        ([8, 16], ValueError, r"expected \(size, weight\) pairs, got the entry 8"),
        (
            "8:1",
            TypeError,
            r"expected a dict \{size: weight\} or a list of \(size, weight\) pairs, got str",
        ),
    ],
)
def test_resolution_weights_validation(weights, error, match):
    with pytest.raises(error, match=r"TrainConfig: resolution_weights: " + match):
        TrainConfig(steps=1, resolution_weights=weights)
