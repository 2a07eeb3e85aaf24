"""Flexi-UNet: routes, which blocks run, FLOPs, equivalence with the UNet, zero skips."""

import functools
import re

import pytest
import torch
from random_weights import randomise
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

from models import FlexiUNet, UNet, count_flops
from models._flops import _EXTRA_FORMULAS

TINY = dict(
    base_channels=8, channel_mult=(1, 2, 2), attention_levels=(2,), num_heads=2, num_groups=4
)
LEVELS = 3
# (level_in, level_out): every resolution-preserving call and every resolution-increasing one
ROUTES = [(0, 0), (1, 1), (2, 2), (1, 0), (2, 1)]


def _flexi(**kwargs):
    return FlexiUNet(2, 3, image_size=16, **{**TINY, **kwargs})


def _sizes(net, route):
    return net.resolutions[route[0]], net.resolutions[route[1]]


def test_pyramid():
    net = _flexi()
    assert net.resolutions == (16, 8, 4)
    assert [net.level_of(s) for s in (16, 8, 4)] == [0, 1, 2]
    assert FlexiUNet(image_size=64, base_channels=8, num_groups=4).resolutions == (64, 32, 16, 8)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_on_every_route(route, batch, dtype):
    net = randomise(_flexi()).to(dtype)
    s_in, s_out = _sizes(net, route)
    y = net(torch.randn(batch, 2, s_in, s_in, dtype=dtype), torch.arange(batch), out_size=s_out)
    assert y.shape == (batch, 3, s_out, s_out) and y.dtype == dtype
    assert torch.isfinite(y).all()


def test_out_size_forms_agree():
    net = randomise(_flexi())
    x = torch.randn(2, 2, 8, 8)
    assert torch.equal(net(x, 5), net(x, 5, out_size=8))
    assert torch.equal(net(x, 5, out_size=16), net(x, 5, out_size=(16, 16)))


def _units(net):
    """Every module whose calls the routing decides, by qualified name."""
    names = ["stem", "head", "middle", "time_embed"]
    names += [f"in_adapters.{i}" for i in range(LEVELS)] + [
        f"out_adapters.{i}" for i in range(LEVELS)
    ]
    for i in range(LEVELS):
        names += [f"encoder.{i}.blocks.{k}" for k in range(net.num_res_blocks)]
        names += [f"decoder.{i}.blocks.{k}" for k in range(net.num_res_blocks + 1)]
        if i < LEVELS - 1:
            names.append(f"encoder.{i}.down")
        if i > 0:
            names.append(f"decoder.{i}.up")
    return names


def _expected_calls(name, level_in, level_out):
    """The routing rule of the SSD paper (Sec. 4.3), written independently of the code."""
    if name in ("stem", "head", "middle", "time_embed"):
        return 1
    m = re.fullmatch(r"(in_adapters|out_adapters)\.(\d)", name)
    if m:
        return int(int(m[2]) == (level_in if m[1] == "in_adapters" else level_out))
    part, level = name.split(".")[:2]
    level = int(level)
    if part == "encoder":
        return int(level >= level_in)  # blocks and the downsampling that leaves the level
    if name.endswith(".up"):
        return int(level > level_out)
    return int(level >= level_out)


@pytest.mark.parametrize("route", ROUTES)
def test_only_the_needed_blocks_run(route):
    net = _flexi()
    modules = dict(net.named_modules())
    calls = dict.fromkeys(_units(net), 0)
    for name in calls:
        modules[name].register_forward_hook(
            lambda *_, name=name: calls.__setitem__(name, calls[name] + 1)
        )
    s_in, s_out = _sizes(net, route)
    net(torch.randn(2, 2, s_in, s_in), 1, out_size=s_out)
    expected = {name: _expected_calls(name, *route) for name in calls}
    assert calls == expected


def _flops_by_module(net, x, t, out_size=None):
    counter = FlopCounterMode(display=False, custom_mapping=dict(_EXTRA_FORMULAS))
    with counter, torch.no_grad():
        net(x, t, out_size=out_size)
    return {
        name.removeprefix("FlexiUNet."): sum(c.values())
        for name, c in counter.get_flop_counts().items()
    }


def test_flops_fall_with_the_input_level_as_expected():
    net = _flexi()
    t = torch.zeros(1)
    flops = {}
    for route in ROUTES:
        s_in, s_out = _sizes(net, route)
        flops[route] = count_flops(
            functools.partial(net, out_size=s_out), torch.randn(1, 2, s_in, s_in), t
        )
    # a transition runs one decoder level more than the same-resolution call at its input level,
    # and less than the same-resolution call at its output level (no encoder there)
    assert flops[(0, 0)] > flops[(1, 0)] > flops[(1, 1)] > flops[(2, 1)] > flops[(2, 2)] > 0
    # the top route is the whole UNet, adapters being the identity there
    assert flops[(0, 0)] == count_flops(UNet(2, 3, **TINY), torch.randn(1, 2, 16, 16), t)
    # Each route costs exactly what its blocks cost inside the full network (a block's cost
    # depends only on its input shape, which the route does not change) plus the stem, head and
    # adapters at the route's sizes: 2 flops per multiply-add, per pixel.
    full = _flops_by_module(net, torch.randn(1, 2, 16, 16), t)
    stem = net.widths[0]
    for route in ROUTES:
        s_in, s_out = _sizes(net, route)
        blocks = sum(
            full[name] * _expected_calls(name, *route)
            for name in _units(net)
            if "adapters" not in name and name not in ("stem", "head")
        )
        ends = 2 * s_in**2 * 2 * stem * 9 + 2 * s_out**2 * stem * 3 * 9  # 3x3 stem and head
        if route[0] > 0:
            ends += 2 * s_in**2 * stem * net.entry_widths[route[0]]
        if route[1] > 0:
            ends += 2 * s_out**2 * net.widths[route[1]] * stem
        assert flops[route] == blocks + ends, route


def test_top_level_is_the_unet_with_copied_weights():
    flexi = randomise(_flexi(), seed=1)
    unet = UNet(2, 3, seed=7, **TINY)
    result = unet.load_state_dict(flexi.state_dict(), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys and all(
        k.startswith(("in_adapters.", "out_adapters.")) for k in result.unexpected_keys
    )
    x, t = torch.randn(3, 2, 16, 16), torch.tensor([3, 400, 999])
    y = flexi(x, t)
    assert y.abs().max() > 0  # the comparison is not between two zero outputs
    # the same modules are called on the same tensors in the same order: bit-for-bit equal
    assert_close(unet(x, t), y, rtol=0, atol=0)


def test_same_seed_matches_unet_body_and_is_reproducible():
    a, b = _flexi(seed=11), _flexi(seed=11)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    unet = UNet(2, 3, seed=11, **TINY)
    for name, p in unet.state_dict().items():
        assert torch.equal(p, a.state_dict()[name]), name
    assert not torch.equal(a.in_adapters[1].weight, _flexi(seed=12).in_adapters[1].weight)


@pytest.mark.parametrize("route", [(1, 0), (2, 1)])
def test_bypassed_skips_are_zero(route):
    net = randomise(_flexi())
    level_out = route[1]
    seen = []

    def grab(module, args, width):
        seen.append(args[0][:, width:])  # the input is cat([h, skip]); keep the skip part

    for k, block in enumerate(net.decoder[level_out].blocks):
        h_width = net.widths[level_out + 1] if k == 0 else net.widths[level_out]
        block.register_forward_pre_hook(functools.partial(grab, width=h_width))
    s_in, s_out = _sizes(net, route)
    net(torch.randn(2, 2, s_in, s_in), 3, out_size=s_out)
    assert [s.shape[1] for s in seen] == list(reversed(net.skip_widths[level_out]))
    assert all(torch.equal(s, torch.zeros_like(s)) for s in seen)


def _expected_trained(name, level_in, level_out):
    if name.startswith(("time_embed.", "stem.", "head.", "middle.")):
        return True
    parts = name.split(".")
    if parts[0] in ("in_adapters", "out_adapters"):
        return _expected_calls(".".join(parts[:2]), level_in, level_out) == 1
    unit = ".".join(parts[:4] if parts[2] == "blocks" else parts[:3])
    return _expected_calls(unit, level_in, level_out) == 1


@pytest.mark.parametrize("route", ROUTES)
def test_gradients_reach_exactly_the_parameters_on_the_route(route):
    net = randomise(_flexi())
    s_in, s_out = _sizes(net, route)
    net(
        torch.randn(2, 2, s_in, s_in), torch.tensor([5, 6]), out_size=s_out
    ).square().sum().backward()
    for name, p in net.named_parameters():
        if _expected_trained(name, *route):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


@pytest.mark.parametrize(("route", "shift"), [((0, 0), 4), ((1, 1), 2), ((1, 0), 2), ((2, 1), 1)])
def test_circular_padding_commutes_with_periodic_shifts(route, shift):
    # shifts by multiples of the downsampling below the input level commute exactly; the
    # output of a transition moves twice as far
    net = randomise(_flexi(padding_mode="circular")).double()
    s_in, s_out = _sizes(net, route)
    x = torch.randn(2, 2, s_in, s_in, dtype=torch.float64)
    y = net(torch.roll(x, (shift, -shift), dims=(-2, -1)), 20, out_size=s_out)
    factor = s_out // s_in
    expected = torch.roll(
        net(x, 20, out_size=s_out), (factor * shift, -factor * shift), dims=(-2, -1)
    )
    # float64; only summation order differs
    assert_close(y, expected, rtol=0, atol=1e-10)


def test_input_and_output_size_validation():
    net = _flexi()
    with pytest.raises(
        ValueError,
        match=r"FlexiUNet.forward: expected an input size on the pyramid \(4, 8, 16\), got 12",
    ):
        net(torch.randn(1, 2, 12, 12), 0)
    with pytest.raises(
        ValueError,
        match=r"FlexiUNet.forward: expected out_size equal to the input size 4 "
        r"or twice it \(8\), got 16",
    ):
        net(torch.randn(1, 2, 4, 4), 0, out_size=16)
    with pytest.raises(
        ValueError, match=r"expected out_size equal to the input size 8 or twice it \(16\), got 4"
    ):
        net(torch.randn(1, 2, 8, 8), 0, out_size=4)
    with pytest.raises(
        ValueError,
        match=r"FlexiUNet.forward: expected out_size on the pyramid \(4, 8, 16\), got 32",
    ):
        net(torch.randn(1, 2, 16, 16), 0, out_size=32)
    with pytest.raises(
        ValueError, match=r"FlexiUNet.forward: expected a square input, got size \(8, 16\)"
    ):
        net(torch.randn(1, 2, 8, 16), 0)
    with pytest.raises(
        ValueError, match=r"FlexiUNet.forward: expected a square out_size, got \(16, 8\)"
    ):
        net(torch.randn(1, 2, 8, 8), 0, out_size=(16, 8))
    with pytest.raises(
        TypeError, match="FlexiUNet.forward: expected out_size as an int, a pair or None, got 16.0"
    ):
        net(torch.randn(1, 2, 8, 8), 0, out_size=16.0)
    with pytest.raises(
        ValueError, match=r"FlexiUNet.forward: expected t of shape \(1,\) or a scalar"
    ):
        net(torch.randn(1, 2, 8, 8), torch.zeros(2))


def test_configuration_validation():
    with pytest.raises(
        ValueError,
        match=r"FlexiUNet: expected image_size divisible by 2 \*\* \(levels - 1\) = 4 "
        r"for 3 levels, got 18",
    ):
        FlexiUNet(image_size=18, **TINY)
    with pytest.raises(ValueError, match="FlexiUNet: expected image_size >= 1, got 0"):
        FlexiUNet(image_size=0, **TINY)
    with pytest.raises(TypeError, match="FlexiUNet: expected image_size as an int, got 16.0"):
        FlexiUNet(image_size=16.0, **TINY)
    with pytest.raises(ValueError, match="FlexiUNet: expected every width"):
        FlexiUNet(image_size=16, **{**TINY, "num_groups": 3})
