"""Dual-FNO UNet: one set of weights at several resolutions, structure, equivariance."""

import pytest
import torch
import torch.nn as nn
from random_weights import randomise
from torch.testing import assert_close

from models import DualConv2d, DualFNOUNet, UNet

TINY = dict(
    modes=((6, 4), (3, 2)),
    base_channels=8,
    channel_mult=(1, 2, 2),
    attention_levels=(2,),
    num_heads=2,
    num_groups=4,
)


@pytest.fixture(scope="module")
def net():
    return randomise(DualFNOUNet(1, **TINY))


@pytest.mark.parametrize("size", [16, 24, 32, 48, 15, 21])
@pytest.mark.parametrize("batch", [1, 3])
def test_one_set_of_weights_at_many_sizes(net, size, batch):
    y = net(torch.randn(batch, 1, size, size), torch.full((batch,), 0.3))
    assert y.shape == (batch, 1, size, size)
    assert torch.isfinite(y).all()


def test_zero_shot_larger_size_is_finite(net):
    # weights never saw more than 48 px; 80 px (non-square, odd) must still run and be finite
    y = net(torch.randn(2, 1, 80, 67), 0.3)
    assert y.shape == (2, 1, 80, 67)
    assert torch.isfinite(y).all() and y.abs().max() > 0


def test_float64():
    net = randomise(DualFNOUNet(1, **TINY)).double()
    y = net(torch.randn(2, 1, 17, 17, dtype=torch.float64), 0.1)
    assert y.dtype == torch.float64 and y.shape == (2, 1, 17, 17)


def test_dual_convs_exactly_at_the_chosen_levels():
    net = DualFNOUNet(1, **TINY)
    assert net.modes == ((6, 4), (3, 2), None)

    def kinds(module):
        return {type(m) for m in module.modules() if isinstance(m, (nn.Conv2d, DualConv2d))}

    for level in range(3):
        dual = net.modes[level] is not None
        for block in net.encoder[level].blocks:
            assert isinstance(block.res.conv1, DualConv2d) == dual
            assert isinstance(block.res.conv2, DualConv2d) == dual
        for block in net.decoder[level].blocks:
            assert isinstance(block.res.conv1, DualConv2d) == dual
    assert isinstance(net.stem, DualConv2d) and isinstance(net.head[-1], DualConv2d)
    assert isinstance(net.encoder[1].down.conv, DualConv2d)  # reads level 1 (spectral)
    assert isinstance(net.decoder[2].up.conv, DualConv2d)  # its conv runs at level 1
    assert DualConv2d not in kinds(net.middle)
    assert net.encoder[1].blocks[0].res.conv1.spectral.modes == (3, 2)


def test_without_modes_it_is_the_unet():
    # same blocks and names: with no spectral level the DFU is the plain UNet, weight for weight
    config = {**TINY, "modes": ()}
    dfu = DualFNOUNet(1, **config)
    del config["modes"]
    unet = UNet(1, **config)
    assert dfu.state_dict().keys() == unet.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(dfu.parameters(), unet.parameters(), strict=True))


def test_circular_padding_commutes_with_periodic_shifts():
    # the spectral branch commutes with every periodic shift; the strided convs with multiples
    # of the total downsampling (4 for 3 levels)
    net = randomise(DualFNOUNet(1, padding_mode="circular", **TINY)).double()
    x = torch.randn(1, 1, 24, 24, dtype=torch.float64)
    y = net(torch.roll(x, (8, -4), dims=(-2, -1)), 0.7)
    # float64; only summation order differs
    assert_close(y, torch.roll(net(x, 0.7), (8, -4), dims=(-2, -1)), rtol=0, atol=1e-10)


def test_gradients_reach_every_parameter_including_spectral_weights():
    net = randomise(DualFNOUNet(1, **TINY))
    net(torch.randn(2, 1, 12, 12), torch.tensor([0.1, 0.9])).square().sum().backward()
    names = []
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        names.append(name)
    assert any(n.endswith("spectral.weight_neg") for n in names)


def test_seed_reproducible():
    a, b = DualFNOUNet(1, seed=2, **TINY), DualFNOUNet(1, seed=2, **TINY)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = DualFNOUNet(1, seed=3, **TINY)
    assert not torch.equal(a.stem.spectral.weight_pos, c.stem.spectral.weight_pos)


def test_validation():
    with pytest.raises(ValueError, match="DualFNOUNet: expected at most 3 entries in modes"):
        DualFNOUNet(1, **{**TINY, "modes": ((2, 2),) * 4})
    with pytest.raises(ValueError, match=r"DualFNOUNet: expected modes\[1\] >= 1, got \(0, 2\)"):
        DualFNOUNet(1, **{**TINY, "modes": (None, (0, 2))})
    with pytest.raises(
        TypeError, match="DualFNOUNet: expected modes as a sequence of pairs or None"
    ):
        DualFNOUNet(1, **{**TINY, "modes": 4})
    net = DualFNOUNet(1, **TINY)
    with pytest.raises(
        ValueError, match=r"DualFNOUNet.forward: expected x of shape \(N, 1, H, W\)"
    ):
        net(torch.randn(1, 2, 8, 8), 0.1)
