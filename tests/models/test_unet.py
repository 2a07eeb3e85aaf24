"""The plain UNet: shapes at any size, seeds, circular equivariance, gradients, validation."""

import pytest
import torch
from error_tables import raises_test
from random_weights import randomise
from torch.testing import assert_close

from models import UNet

TINY = dict(
    base_channels=8, channel_mult=(1, 2, 2), attention_levels=(2,), num_heads=2, num_groups=4
)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [(8, 8), (16, 16), (15, 15), (13, 21), (5, 5)])
def test_output_shape_equals_input_shape(batch, dtype, size):
    net = randomise(UNet(2, 3, **TINY)).to(dtype)
    x = torch.randn(batch, 2, *size, dtype=dtype)
    y = net(x, torch.arange(batch))
    assert y.shape == (batch, 3, *size) and y.dtype == dtype
    assert torch.isfinite(y).all()


def test_new_network_outputs_zero():
    net = UNet(1, **TINY)
    assert torch.equal(net(torch.randn(2, 1, 8, 8), 3), torch.zeros(2, 1, 8, 8))


def test_scalar_t_is_broadcast():
    net = randomise(UNet(1, **TINY))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(net(x, 250), net(x, torch.full((3,), 250)))
    assert torch.equal(net(x, torch.tensor(0.5)), net(x, torch.full((3,), 0.5)))
    assert not torch.allclose(net(x, 250), net(x, 900))


def test_same_seed_same_weights():
    state = torch.random.get_rng_state()
    a, b, c = UNet(1, seed=3, **TINY), UNet(1, seed=3, **TINY), UNet(1, seed=4, **TINY)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's stream is untouched
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    differs = [
        not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)
    ]
    assert any(differs)


def test_seed_none_draws_from_the_global_generator():
    torch.manual_seed(0)
    a = UNet(1, seed=None, **TINY)
    torch.manual_seed(0)
    b = UNet(1, seed=None, **TINY)
    c = UNet(1, seed=None, **TINY)
    assert torch.equal(a.stem.weight, b.stem.weight)
    assert not torch.equal(a.stem.weight, c.stem.weight)


@pytest.mark.parametrize("resample", ["conv", "fixed"])
def test_circular_padding_commutes_with_periodic_shifts(resample):
    # 3 levels: total downsampling factor 4, so shifts by multiples of 4 commute exactly.
    net = randomise(UNet(1, padding_mode="circular", resample=resample, **TINY)).double()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    shift = (4, -8)
    y = net(torch.roll(x, shift, dims=(-2, -1)), 10)
    # float64: only summation order differs between the two routes
    assert_close(y, torch.roll(net(x, 10), shift, dims=(-2, -1)), rtol=0, atol=1e-10)


def test_zero_padding_is_not_shift_equivariant():
    # the counterpart of the test above: the check detects a broken equivariance
    net = randomise(UNet(1, **TINY)).double()
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    y = net(torch.roll(x, 4, dims=-1), 10)
    assert (y - torch.roll(net(x, 10), 4, dims=-1)).abs().max() > 1e-3


def test_gradients_reach_every_parameter():
    net = randomise(UNet(1, **TINY))
    net(torch.randn(2, 1, 8, 8), torch.tensor([1, 2])).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_attention_only_at_chosen_levels():
    net = UNet(1, **TINY)
    for level, enc in enumerate(net.encoder):
        assert all((b.attn is not None) == (level == 2) for b in enc.blocks)
    for level, dec in enumerate(net.decoder):
        assert all((b.attn is not None) == (level == 2) for b in dec.blocks)


def test_structure_counts():
    net = UNet(1, **TINY)
    assert [len(e.blocks) for e in net.encoder] == [2, 2, 2]
    assert [len(d.blocks) for d in net.decoder] == [3, 3, 3]
    assert net.widths == (8, 16, 16)
    assert net.skip_widths == ((8, 8, 8), (8, 16, 16), (16, 16, 16))


def test_input_validation():
    net = UNet(2, **TINY)
    with pytest.raises(
        ValueError, match=r"UNet.forward: expected x of shape \(N, 2, H, W\), got \(1, 3, 8, 8\)"
    ):
        net(torch.randn(1, 3, 8, 8), 0)
    with pytest.raises(
        ValueError, match=r"UNet.forward: expected x of shape \(N, 2, H, W\), got \(2, 8, 8\)"
    ):
        net(torch.randn(2, 8, 8), 0)
    with pytest.raises(ValueError, match=r"UNet.forward: expected t of shape \(2,\) or a scalar"):
        net(torch.randn(2, 2, 8, 8), torch.zeros(3))
    with pytest.raises(
        TypeError, match="UNet.forward: expected x with a floating dtype, got torch.int64"
    ):
        net(torch.zeros(1, 2, 8, 8, dtype=torch.long), 0)
    with pytest.raises(TypeError, match="UNet.forward: expected x as a Tensor, got ndarray"):
        net(torch.zeros(1, 2, 8, 8).numpy(), 0)


def _unet(**changes):
    return UNet(1, **{**TINY, **changes})


test_configuration_validation = raises_test(
    [
        (
            lambda: _unet(num_groups=3),
            ValueError,
            "UNet: expected every width .* divisible by num_groups=3, got 8 at level 0",
        ),
        (
            lambda: _unet(num_heads=3),
            ValueError,
            "UNet: expected the width of every level with attention divisible by num_heads=3, got 16 at level 2",
        ),
        (
            lambda: _unet(padding_mode="reflect"),
            ValueError,
            r"UNet: expected padding_mode in \('zeros', 'circular'\), got 'reflect'",
        ),
        (
            lambda: _unet(resample="bilinear"),
            ValueError,
            r"UNet: expected resample in \('conv', 'fixed'\), got 'bilinear'",
        ),
        (
            lambda: _unet(attention_levels=(3,)),
            ValueError,
            r"UNet: expected attention_levels\[0\] in \[0, 2\], got 3",
        ),
        (
            lambda: _unet(attention_levels=2),
            TypeError,
            "UNet: expected attention_levels as a sequence of ints, got 2",
        ),
        (
            lambda: _unet(channel_mult=()),
            ValueError,
            r"UNet: expected channel_mult as a non-empty sequence of ints >= 1, got \(\)",
        ),
        (
            lambda: _unet(channel_mult=(1, 2.0)),
            TypeError,
            r"UNet: expected channel_mult\[1\] as an int, got 2.0",
        ),
        (lambda: _unet(num_res_blocks=0), ValueError, "UNet: expected num_res_blocks >= 1, got 0"),
        (
            lambda: _unet(num_res_blocks=1.0),
            TypeError,
            "UNet: expected num_res_blocks as an int, got 1.0",
        ),
        (lambda: _unet(num_heads=True), TypeError, "UNet: expected num_heads as an int, got True"),
        (lambda: _unet(dropout=1.0), ValueError, r"UNet: expected dropout in \[0, 1\), got 1.0"),
        (
            lambda: _unet(dropout="0.1"),
            TypeError,
            "UNet: expected dropout as a real number, got '0.1'",
        ),
        (lambda: _unet(seed="a"), TypeError, "UNet: expected seed as an int or None, got 'a'"),
    ]
)
