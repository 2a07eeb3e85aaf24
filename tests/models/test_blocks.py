"""ADM blocks: time embedding, ResBlock (FiLM), attention, resampling."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from random_weights import randomise
from torch.testing import assert_close

from models import DualConv2d
from models._blocks import (
    AttentionBlock,
    Downsample,
    ResBlock,
    TimestepEmbedding,
    Upsample,
    as_timesteps,
    conv3x3,
    timestep_embedding,
)


def test_timestep_embedding_matches_formula():
    t = torch.tensor([0.0, 1.0, 37.5, 999.0], dtype=torch.float64)
    dim = 6
    emb = timestep_embedding(t, dim)
    expected = torch.tensor(
        [
            [math.cos(s * 10000 ** (-j / 3)) for j in range(3)]
            + [math.sin(s * 10000 ** (-j / 3)) for j in range(3)]
            for s in t.tolist()
        ],
        dtype=torch.float64,
    )
    # float64 transcendental functions of the same arguments
    assert_close(emb, expected, rtol=0, atol=1e-12)


def test_timestep_embedding_odd_width_and_int_input():
    emb = timestep_embedding(torch.tensor([3, 4]), 5)
    assert emb.shape == (2, 5) and emb.dtype == torch.float32
    assert torch.equal(emb[:, -1], torch.zeros(2))
    assert_close(emb[:, :4], timestep_embedding(torch.tensor([3.0, 4.0]), 4))


def test_as_timesteps_broadcasts_scalars():
    for t in (7, 7.0, torch.tensor(7)):
        out = as_timesteps(t, 3, "f")
        assert out.shape == (3,) and torch.all(out == 7)
    t = torch.tensor([1, 2, 3])
    assert as_timesteps(t, 3, "f") is t


def test_as_timesteps_rejects_bad_input():
    with pytest.raises(
        ValueError, match=r"f: expected t of shape \(3,\) or a scalar, got shape \(2,\)"
    ):
        as_timesteps(torch.tensor([1, 2]), 3, "f")
    with pytest.raises(ValueError, match=r"got shape \(3, 1\)"):
        as_timesteps(torch.zeros(3, 1), 3, "f")
    with pytest.raises(TypeError, match="f: expected t as a Tensor or a number, got list"):
        as_timesteps([1, 2, 3], 3, "f")
    with pytest.raises(TypeError, match="f: expected t with a real dtype, got torch.bool"):
        as_timesteps(torch.tensor([True, False, True]), 3, "f")


def test_timestep_embedding_module_follows_parameter_dtype():
    emb = TimestepEmbedding(8, 32).double()
    out = emb(torch.tensor([1, 500]))
    assert out.shape == (2, 32) and out.dtype == torch.float64


def test_resblock_matches_functional_reference():
    block = randomise(ResBlock(4, 8, 6, num_groups=2), std=0.3)
    x, emb = torch.randn(2, 4, 5, 7), torch.randn(2, 6)
    h = F.conv2d(
        F.silu(F.group_norm(x, 2, block.norm1.weight, block.norm1.bias)),
        block.conv1.weight,
        block.conv1.bias,
        padding=1,
    )
    scale_shift = F.linear(F.silu(emb), block.emb_proj.weight, block.emb_proj.bias)
    scale, shift = scale_shift[:, :8, None, None], scale_shift[:, 8:, None, None]
    h = F.group_norm(h, 2, block.norm2.weight, block.norm2.bias) * (1 + scale) + shift
    h = F.conv2d(F.silu(h), block.conv2.weight, block.conv2.bias, padding=1)
    expected = F.conv2d(x, block.skip.weight, block.skip.bias) + h
    # the same float32 ops; differences are reduction-order rounding only
    assert_close(block(x, emb), expected, rtol=1e-5, atol=1e-5)


def test_resblock_starts_as_identity_and_uses_the_embedding():
    block = ResBlock(8, 8, 6, num_groups=4)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x, torch.randn(2, 6)), x)  # zero-initialised output conv
    randomise(block, std=0.3)
    e1, e2 = torch.randn(2, 6), torch.randn(2, 6)
    assert not torch.allclose(block(x, e1), block(x, e2))


def test_resblock_dropout_only_in_training():
    block = randomise(ResBlock(4, 4, 6, num_groups=2, dropout=0.5), std=0.3)
    x, emb = torch.randn(1, 4, 6, 6), torch.randn(1, 6)
    block.eval()
    assert torch.equal(block(x, emb), block(x, emb))
    block.train()
    assert not torch.equal(block(x, emb), block(x, emb))


def test_resblock_with_modes_uses_dual_convs():
    block = ResBlock(4, 4, 6, num_groups=2, modes=(2, 2))
    assert isinstance(block.conv1, DualConv2d) and isinstance(block.conv2, DualConv2d)
    assert all(
        torch.all(p == 0) for p in block.conv2.parameters()
    )  # zero-init reaches both branches


def test_attention_matches_naive_softmax():
    attn = randomise(AttentionBlock(8, num_heads=2, num_groups=4), std=0.3)
    x = torch.randn(2, 8, 3, 5)
    n, c, h, w = x.shape
    qkv = attn.qkv(attn.norm(x)).reshape(n, 3, 2, c // 2, h * w)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # (N, heads, d, HW)
    weights = torch.softmax(torch.einsum("nhds,nhdt->nhst", q, k) / math.sqrt(c // 2), dim=-1)
    out = torch.einsum("nhst,nhdt->nhds", weights, v).reshape(n, c, h, w)
    expected = x + attn.proj(out)
    # fused attention kernel vs explicit softmax, float32
    assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_attention_starts_as_identity_and_checks_heads():
    x = torch.randn(1, 8, 4, 4)
    assert torch.equal(AttentionBlock(8, num_heads=2, num_groups=4)(x), x)
    with pytest.raises(
        ValueError, match="AttentionBlock: expected num_heads dividing channels=8, got 3"
    ):
        AttentionBlock(8, num_heads=3, num_groups=4)


@pytest.mark.parametrize("resample", ["conv", "fixed"])
@pytest.mark.parametrize(("size", "half"), [(16, 8), (15, 8), (1, 1), (7, 4)])
def test_resampling_sizes(resample, size, half):
    down = Downsample(4, resample=resample)
    y = down(torch.randn(2, 4, size, size + 1))
    assert y.shape == (2, 4, half, (size + 2) // 2)
    up = Upsample(4, resample=resample)
    assert up(y, (size, size + 1)).shape == (2, 4, size, size + 1)
    n_params = sum(p.numel() for p in down.parameters())
    assert (n_params == 0) == (resample == "fixed")


def test_fixed_downsample_is_average_pooling():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    expected = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]])
    assert torch.equal(Downsample(1, resample="fixed")(x), expected)


def test_circular_conv3x3_wraps_around():
    conv = conv3x3(1, 1, padding_mode="circular")
    x = torch.randn(1, 1, 6, 6)
    assert_close(conv(torch.roll(x, 2, dims=-1)), torch.roll(conv(x), 2, dims=-1))
    assert isinstance(conv3x3(1, 1), nn.Conv2d)
