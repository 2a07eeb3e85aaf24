"""The argument checks of models: one argument order, TypeError for kinds, ValueError for values."""

import numpy as np
import torch
from error_tables import raises_test

import models
from models._checks import check_int, check_int_pair, check_int_tuple, check_real


def test_accepted_values_come_back_as_python_numbers():
    assert check_int("f", "n", np.int64(3), 1) == 3 and type(check_int("f", "n", np.int64(3))) is int
    assert check_int_pair("f", "modes", 4) == (4, 4)
    assert check_int_pair("f", "modes", [2, np.int32(3)]) == (2, 3)
    assert check_int_tuple("f", "levels", [0, 2], 0, 2) == (0, 2)
    assert check_int_tuple("f", "levels", ()) == ()
    assert check_real("f", "p", 1, low=0, high=1, open_high=False) == 1.0


test_errors = raises_test(
    [
        (lambda: check_int("f", "n", 2.0), TypeError, "f: expected n as an int, got 2.0"),
        (lambda: check_int("f", "n", False), TypeError, "f: expected n as an int, got False"),
        (lambda: check_int("f", "n", 0, 1), ValueError, "f: expected n >= 1, got 0"),
        (lambda: check_int("f", "n", 5, maximum=4), ValueError, "f: expected n <= 4, got 5"),
        (lambda: check_int("f", "n", 5, 1, 4), ValueError, r"f: expected n in \[1, 4\], got 5"),
        (
            lambda: check_int_pair("f", "modes", (1, 2, 3)),
            TypeError,
            r"f: expected modes as an int or a pair of ints, got \(1, 2, 3\)",
        ),
        (
            lambda: check_int_pair("f", "modes", "ab"),
            TypeError,
            "f: expected modes as an int or a pair of ints, got 'ab'",
        ),
        (
            lambda: check_int_pair("f", "modes", (2, 1.5)),
            TypeError,
            r"f: expected modes as an int or a pair of ints, got \(2, 1.5\)",
        ),
        (lambda: check_int_pair("f", "modes", (0, 3)), ValueError, r"f: expected modes >= 1, got \(0, 3\)"),
        (lambda: check_int_tuple("f", "levels", 3), TypeError, "f: expected levels as a sequence of ints, got 3"),
        (lambda: check_int_tuple("f", "levels", [1, 5], 0, 2), ValueError, r"f: expected levels\[1\] in \[0, 2\], got 5"),
        (lambda: check_real("f", "p", "0.5"), TypeError, "f: expected p as a real number, got '0.5'"),
        (lambda: check_real("f", "p", float("nan")), ValueError, r"f: expected p in \(-inf, inf\), got nan"),
        (
            lambda: check_real("f", "p", 0.0, low=0, high=1),
            ValueError,
            r"f: expected p in \(0, 1\), got 0.0",
        ),
    ]
)


# --------------------------------------------------------------------------------------------
# The networks' own bad inputs (issue 15's second probe): constructors and forward passes.

TINY = dict(base_channels=8, channel_mult=(1,), num_res_blocks=1, attention_levels=(), num_groups=4)


def _unet(**kw):
    return models.UNet(1, **{**TINY, **kw})


def _flexi():
    return models.FlexiUNet(1, image_size=8, **TINY)


def _dfu():
    return models.DualFNOUNet(1, modes=((4, 3),), **TINY)


_T = torch.tensor([3, 4])
_X = torch.randn(2, 1, 8, 8)

test_network_errors = raises_test(
    [
        (lambda: _unet(seed=-1), ValueError, r"UNet: expected seed in \[0, 9223372036854775807\], got -1"),
        (lambda: _unet(seed=2**64), ValueError, r"UNet: expected seed in \[0, 9223372036854775807\], got 18446744073709551616"),
        (lambda: _unet(seed=1.5), TypeError, r"UNet: expected seed as an int or None, got 1.5"),
        (lambda: _unet(dropout=float("nan")), ValueError, r"UNet: expected dropout in \[0, 1\), got nan"),
        (lambda: _unet(num_heads=0), ValueError, r"UNet: expected num_heads >= 1, got 0"),
        (lambda: models.FlexiUNet(1, image_size=8, seed=-1, **TINY), ValueError, r"FlexiUNet: expected seed in \[0, 9223372036854775807\], got -1"),
        (lambda: _unet()(_X.half(), _T), TypeError, r"UNet.forward: expected x as torch.float32 \(the parameters' dtype\), got torch.float16"),
        (lambda: _unet()(_X.double(), _T), TypeError, r"UNet.forward: expected x as torch.float32 \(the parameters' dtype\), got torch.float64"),
        (lambda: _unet()(_X.to("meta"), _T), ValueError, r"UNet.forward: expected x with data, got a meta tensor"),
        (lambda: _unet()(_X.numpy(), _T), TypeError, r"UNet.forward: expected x as a Tensor, got ndarray"),
        (lambda: _unet()(torch.ones(2, 1, 8, 8, dtype=torch.long), _T), TypeError, r"UNet.forward: expected x with a floating dtype, got torch.int64"),
        (lambda: _unet()(_X, torch.tensor([1, 2, 3])), ValueError, r"UNet.forward: expected t of shape \(2,\) or a scalar, got shape \(3,\)"),
        (lambda: _flexi()(_X.bfloat16(), _T), TypeError, r"FlexiUNet.forward: expected x as torch.float32 \(the parameters' dtype\), got torch.bfloat16"),
        (lambda: _flexi()(torch.randn(2, 1, 7, 7), _T), ValueError, r"FlexiUNet.forward: expected an input size on the pyramid \(8,\), got 7"),
        (lambda: _flexi()(_X, _T, 2.5), TypeError, r"FlexiUNet.forward: expected out_size as an int, a pair or None, got 2.5"),
        (lambda: _dfu()(_X.half(), _T), TypeError, r"DualFNOUNet.forward: expected x as torch.float32 \(the parameters' dtype\), got torch.float16"),
        (lambda: _dfu()(_X.to("meta"), _T), ValueError, r"DualFNOUNet.forward: expected x with data, got a meta tensor"),
        (lambda: models.SpectralConv2d(1, 1, 2)(_X.half()), TypeError, r"SpectralConv2d.forward: expected x as torch.float32 \(the parameters' dtype\), got torch.float16"),
        (lambda: models.SpectralConv2d(1, 1, 2)(torch.ones(1, 1, 8, 8, dtype=torch.long)), TypeError, r"SpectralConv2d.forward: expected x with a floating dtype, got torch.int64"),
        (lambda: models.SpectralConv2d(1, 1, (2, 2, 2)), TypeError, r"SpectralConv2d: expected modes as an int or a pair of ints, got \(2, 2, 2\)"),
        (lambda: models.kept_modes((0, 2), (8, 8), (8, 8)), ValueError, r"kept_modes: expected modes >= 1, got \(0, 2\)"),
        (lambda: models.kept_modes((2, 2), (0, 8), (8, 8)), ValueError, r"kept_modes: expected in_size >= 1, got \(0, 8\)"),
        (lambda: models.count_parameters(3), TypeError, r"count_parameters: expected an nn.Module, got int"),
    ]
)


def test_accepted_network_inputs():
    """Empty batches run (the spectral layer skips its FFT); a network in float64 takes float64."""
    assert _dfu()(torch.randn(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)).shape == (0, 1, 8, 8)
    assert _unet().double()(_X.double(), _T).dtype == torch.float64
