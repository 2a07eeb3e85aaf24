"""SpectralConv2d against a dense DFT, resolution invariance, DualConv2d."""

import math

import pytest
import torch
import torch.nn.functional as F
from random_weights import randomise
from torch.testing import assert_close

from models import DualConv2d, SpectralConv2d, kept_modes


def dense_spectral(x, layer, out_size):
    """The layer's definition (class Notes) summed mode by mode with explicit exponentials."""
    n, _, h, w = x.shape
    ho, wo = out_size
    m1, m2 = layer.modes
    w_pos = torch.view_as_complex(layer.weight_pos.detach())
    w_neg = torch.view_as_complex(layer.weight_neg.detach())
    y = torch.zeros(n, layer.out_channels, ho, wo, dtype=torch.float64)
    rows_in, cols_in = torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64)
    rows_out, cols_out = (
        torch.arange(ho, dtype=torch.float64),
        torch.arange(wo, dtype=torch.float64),
    )
    for k1 in range(-m1, m1):
        if abs(k1) > (min(h, ho) - 1) // 2:
            continue  # not resolved on one of the grids
        for k2 in range(m2):
            if k2 > (min(w, wo) - 1) // 2:
                continue
            phase_in = k1 * rows_in[:, None] / h + k2 * cols_in[None, :] / w
            basis_in = torch.exp(-2j * math.pi * phase_in)
            coeff = (x.to(torch.complex128) * basis_in).sum((-2, -1)) / (h * w)  # (N, C_in)
            weight = w_pos[:, :, k1, k2] if k1 >= 0 else w_neg[:, :, m1 + k1, k2]
            mixed = coeff @ weight  # (N, C_out)
            phase_out = k1 * rows_out[:, None] / ho + k2 * cols_out[None, :] / wo
            basis_out = torch.exp(2j * math.pi * phase_out)
            factor = 1 if k2 == 0 else 2
            y += factor * (mixed[:, :, None, None] * basis_out).real
    return y


@pytest.mark.parametrize(
    ("in_size", "out_size", "modes"),
    [
        ((6, 6), (6, 6), (2, 2)),
        ((5, 7), (9, 8), (3, 2)),  # odd input, larger output
        ((8, 9), (5, 4), (4, 3)),  # smaller output drops the modes it cannot hold
        ((4, 4), (12, 11), (5, 5)),  # more configured modes than the input resolves
    ],
)
def test_matches_dense_dft(in_size, out_size, modes):
    layer = SpectralConv2d(2, 3, modes, seed=1).double()
    x = torch.randn(2, 2, *in_size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    # float64 FFT vs explicit sums of a few dozen terms: agreement to ~1e-15 relative;
    # 1e-10 leaves room for the summation order and nothing else.
    assert_close(
        layer(x, out_size=out_size), dense_spectral(x, layer, out_size), rtol=0, atol=1e-10
    )


def test_band_limited_input_is_resampled_exactly():
    # With weights 1 on the diagonal (the identity on the kept modes), a cosine the layer keeps
    # comes out as the same cosine sampled on the output grid: the forward-normalised FFT makes
    # the layer act on functions, not on pixel arrays.
    layer = SpectralConv2d(1, 1, (4, 4))
    with torch.no_grad():
        layer.weight_pos.zero_()[..., 0] = 1
        layer.weight_neg.zero_()[..., 0] = 1

    def wave(size):
        grid = torch.arange(size, dtype=torch.float64) / size
        return (
            torch.cos(2 * math.pi * (2 * grid[:, None] + grid[None, :]))
            + 0.5 * torch.sin(2 * math.pi * 3 * grid[:, None])
        )[None, None]

    layer = layer.double()
    for n_in, n_out in [(12, 12), (12, 20), (20, 12), (9, 31)]:
        # exact up to float64 FFT rounding
        assert_close(layer(wave(n_in), out_size=n_out), wave(n_out), rtol=0, atol=1e-12)


def test_high_frequencies_are_removed():
    layer = SpectralConv2d(1, 1, (2, 2))
    with torch.no_grad():
        layer.weight_pos.zero_()[..., 0] = 1
        layer.weight_neg.zero_()[..., 0] = 1
    grid = torch.arange(16) / 16
    high = torch.cos(2 * math.pi * 5 * grid)[:, None].expand(16, 16)[None, None]
    # frequency 5 is beyond the 2 kept modes: only float32 FFT round-off remains
    assert layer(high.float()).abs().max() < 1e-6


@pytest.mark.parametrize("shift", [1, 3])
def test_commutes_with_periodic_shifts(shift):
    layer = SpectralConv2d(2, 2, (3, 3), seed=0).double()
    x = torch.randn(1, 2, 11, 10, dtype=torch.float64)
    shifted = layer(torch.roll(x, shift, dims=-1))
    # the Fourier shift theorem holds exactly; only FFT rounding differs
    assert_close(shifted, torch.roll(layer(x), shift, dims=-1), rtol=0, atol=1e-12)


def test_kept_modes_table():
    assert kept_modes((16, 9), (64, 64), (64, 64)) == (16, 16, 9)
    # 16 px resolves |k| <= 7: the Nyquist row/column of an even grid is never used
    assert kept_modes((16, 9), (16, 16), (16, 16)) == (8, 7, 8)
    assert kept_modes((16, 9), (15, 15), (32, 32)) == (8, 7, 8)
    assert kept_modes((4, 3), (1, 1), (1, 1)) == (1, 0, 1)


def test_gradients_reach_both_weight_tensors():
    layer = SpectralConv2d(2, 3, (3, 2), seed=0)
    x = torch.randn(2, 2, 9, 9)
    layer(x).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_seed_reproducible_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, b = SpectralConv2d(2, 3, 4, seed=5), SpectralConv2d(2, 3, 4, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.weight_pos, b.weight_pos) and torch.equal(a.weight_neg, b.weight_neg)
    assert not torch.equal(a.weight_pos, SpectralConv2d(2, 3, 4, seed=6).weight_pos)


def test_dual_conv_is_the_sum_of_its_branches():
    conv = randomise(DualConv2d(2, 4, (3, 2), stride=2, padding_mode="circular", seed=0), std=0.5)
    x = torch.randn(3, 2, 13, 10)
    y = conv(x)
    assert y.shape == (3, 4, 7, 5)
    spatial = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), conv.conv.weight, conv.conv.bias, 2)
    # same float32 ops in a different grouping
    assert_close(y, spatial + conv.spectral(x, out_size=(7, 5)), rtol=1e-5, atol=1e-5)


def test_float64_and_odd_sizes():
    layer = SpectralConv2d(1, 2, (4, 3), seed=0).double()
    y = layer(torch.randn(2, 1, 7, 9, dtype=torch.float64), out_size=(13, 5))
    assert y.shape == (2, 2, 13, 5) and y.dtype == torch.float64


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"SpectralConv2d: expected modes >= 1, got \(0, 3\)"):
        SpectralConv2d(1, 1, (0, 3))
    with pytest.raises(TypeError, match="SpectralConv2d: expected modes as an int or a pair"):
        SpectralConv2d(1, 1, (1, 2, 3))
    with pytest.raises(ValueError, match="SpectralConv2d: expected in_channels >= 1, got 0"):
        SpectralConv2d(0, 1, 2)
    with pytest.raises(TypeError, match="SpectralConv2d: expected out_channels as an int, got 2.0"):
        SpectralConv2d(1, 2.0, 2)
    layer = SpectralConv2d(2, 1, 2)
    with pytest.raises(
        ValueError,
        match=r"SpectralConv2d.forward: expected x of shape \(N, 2, H, W\), got \(1, 3, 4, 4\)",
    ):
        layer(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="SpectralConv2d.forward: expected out_size >= 1"):
        layer(torch.randn(1, 2, 4, 4), out_size=(0, 4))
    with pytest.raises(TypeError, match="SpectralConv2d: expected seed as an int or None"):
        SpectralConv2d(1, 1, 2, seed=1.5)
    with pytest.raises(ValueError, match=r"DualConv2d: expected stride in \[1, 2\], got 3"):
        DualConv2d(1, 1, 2, stride=3)
    with pytest.raises(TypeError, match="DualConv2d: expected stride as an int, got 1.0"):
        DualConv2d(1, 1, 2, stride=1.0)
    with pytest.raises(ValueError, match="DualConv2d: expected padding_mode 'zeros' or 'circular'"):
        DualConv2d(1, 1, 2, padding_mode="reflect")
