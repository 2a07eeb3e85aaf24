"""FLOP and parameter counts against hand-computed values."""

import math

import pytest
import torch
import torch.nn as nn

from models import SpectralConv2d, count_flops, count_parameters
from models._blocks import AttentionBlock


def test_conv_forward_and_backward():
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    forward = 2 * 2 * 5 * 8 * 8 * 3 * 3 * 3  # 2 flops per multiply-add, per output pixel
    assert count_flops(conv, x) == forward
    # x needs no gradient: the backward pass is the weight gradient only, as costly as forward
    assert count_flops(conv, x, backward=True) == 2 * forward


def test_backward_counts_input_gradients_of_inner_layers():
    first, second = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 3, 1)
    net = nn.Sequential(first, second)
    x = torch.randn(1, 2, 6, 6)
    f1, f2 = 2 * 4 * 36 * 2 * 9, 2 * 3 * 36 * 4
    assert count_flops(net, x) == f1 + f2
    # second layer: grad input + grad weight; first layer: grad weight only
    assert count_flops(net, x, backward=True) == (f1 + f2) + (2 * f2 + f1)


def test_backward_count_writes_no_grad():
    lin = nn.Linear(4, 4)
    count_flops(lin, torch.randn(2, 4), backward=True)
    assert all(p.grad is None for p in lin.parameters())


def test_cpu_attention_is_counted():
    attn = AttentionBlock(8, num_heads=2, num_groups=4)
    n, hw, c = 2, 4 * 4, 8
    convs = 2 * n * hw * c * 3 * c + 2 * n * hw * c * c  # qkv and output projections
    attention = 2 * 2 * n * hw * hw * c  # Q K^T and P V, all heads together
    assert count_flops(attn, torch.randn(n, c, 4, 4)) == convs + attention


def test_spectral_conv_counts_ffts_and_complex_products():
    layer = SpectralConv2d(2, 3, (2, 2))
    n, h, w = 1, 8, 8
    rfft = int(2.5 * h * w * math.log2(h * w)) * 2  # real-input FFT of each input channel
    irfft = int(2.5 * h * w * math.log2(h * w)) * 3  # real-output FFT of each output channel
    # kept modes (2 non-negative + 2 negative rows) x 2 columns; each mixes 2 -> 3 channels
    # at 8 real flops per complex multiply-add
    mixing = 8 * (4 * 2) * n * 2 * 3
    assert count_flops(layer, torch.randn(n, 2, h, w)) == rfft + irfft + mixing


def test_count_parameters():
    conv = nn.Conv2d(3, 8, 3)
    assert count_parameters(conv) == 8 * 3 * 9 + 8
    conv.bias.requires_grad_(False)
    assert count_parameters(conv, trainable_only=True) == 8 * 3 * 9
    assert count_parameters(SpectralConv2d(2, 3, (4, 2))) == 2 * (2 * 3 * 4 * 2 * 2)


def test_errors():
    with pytest.raises(TypeError, match="count_flops: expected fn as a callable, got int"):
        count_flops(3)
    with pytest.raises(TypeError, match="count_flops: expected fn to return a Tensor, got tuple"):
        count_flops(lambda x: (x, x), torch.zeros(1))
    with pytest.raises(
        ValueError, match="count_flops: expected an output that depends on tensors requiring grad"
    ):
        count_flops(lambda x: x * 2, torch.zeros(1), backward=True)
    with pytest.raises(TypeError, match="count_parameters: expected an nn.Module, got function"):
        count_parameters(lambda: 0)
