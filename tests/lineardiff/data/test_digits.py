"""Tests for ``digits_dataset``: scaling, padding, resizing, class filtering and argument checks.

Expected values come from scikit-learn's raw ``load_digits`` arrays by an independent route:
the first image's first row written out by hand, a hand-built antialiasing filter, and pixel
repetition for nearest-neighbour upsampling.
"""

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from lineardiff.data import digits_dataset


@pytest.fixture(scope="module")
def raw():
    d = load_digits()
    return d.images, d.target


@pytest.fixture(scope="module")
def x8():
    return digits_dataset(8)


def test_shapes_and_dtype():
    for size, padding in [(8, 0), (16, 0), (16, 2), (5, 1), (32, 4)]:
        x = digits_dataset(size, padding=padding)
        assert x.shape == (1797, 1, size, size)
        assert x.dtype == torch.float32
        assert x.is_contiguous()
    assert digits_dataset(8, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize(
    "size,padding,mode",
    [
        (8, 0, "bilinear"),
        (16, 0, "bilinear"),
        (16, 2, "bilinear"),
        (6, 1, "bilinear"),
        (24, 0, "bicubic"),
        (12, 0, "nearest-exact"),
    ],
)
def test_range_is_exactly_minus_one_to_one(size, padding, mode):
    x = digits_dataset(size, padding=padding, mode=mode)
    assert float(x.min()) == -1.0
    assert float(x.max()) == 1.0


def test_normalisation_by_hand(raw, x8):
    images, _ = raw
    # first row of the first digit (a zero) as printed by load_digits().images[0][0]
    np.testing.assert_array_equal(images[0, 0], [0, 0, 5, 13, 9, 1, 0, 0])
    expected = [2 * v / 16 - 1 for v in (0, 0, 5, 13, 9, 1, 0, 0)]
    assert x8[0, 0, 0].tolist() == expected
    # every pixel: grey level 0..16 maps affinely onto [-1, 1]
    np.testing.assert_array_equal((x8[:, 0].double().numpy() + 1) * 8, images)


def test_upsampling_equals_interpolate_on_raw_data(raw):
    images, _ = raw
    ref = torch.from_numpy(images).unsqueeze(1) / 8 - 1
    for mode in ("bilinear", "bicubic", "nearest"):
        want = F.interpolate(ref, size=(20, 20), mode=mode)
        if mode == "bicubic":
            want = want.clamp(-1, 1)
        got = digits_dataset(20, mode=mode, dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_downsampling_is_antialiased(raw):
    images, _ = raw
    ref = torch.from_numpy(images).unsqueeze(1) / 8 - 1
    got = digits_dataset(5, dtype=torch.float64)
    torch.testing.assert_close(
        got, F.interpolate(ref, size=(5, 5), mode="bilinear", antialias=True), rtol=0, atol=1e-12
    )
    plain = F.interpolate(ref, size=(5, 5), mode="bilinear", antialias=False)
    assert (got - plain).abs().max() > 0.1


def test_halving_matches_hand_built_triangle_filter(raw):
    images, _ = raw
    # antialiased bilinear at scale 2: a triangle of half-width 2 input pixels centred on
    # 2 i + 0.5, i.e. taps [1, 3, 3, 1] / 8, renormalised where they fall off the edge
    W = np.zeros((4, 8))
    for i in range(4):
        for j, w in zip(range(2 * i - 1, 2 * i + 3), (1, 3, 3, 1), strict=True):
            if 0 <= j < 8:
                W[i, j] = w
    W /= W.sum(axis=1, keepdims=True)
    want = W @ (images / 8 - 1) @ W.T
    got = digits_dataset(4, dtype=torch.float64)[:, 0].numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_nearest_upsampling_repeats_pixels(x8):
    got = digits_dataset(16, mode="nearest-exact")
    want = x8.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    assert torch.equal(got, want)


def test_padding_without_resize_places_digit_in_centre(x8):
    x = digits_dataset(16, padding=4)
    assert torch.equal(x[..., 4:12, 4:12], x8)
    border = torch.ones(16, 16, dtype=torch.bool)
    border[4:12, 4:12] = False
    assert torch.all(x[..., border] == -1)


def test_padding_is_applied_before_resizing(x8):
    # 8 + 2 * 2 = 12 pixels, doubled to 24: the padding becomes a 4-pixel background border
    x = digits_dataset(24, padding=2, mode="nearest-exact")
    assert torch.all(x[..., :4, :] == -1) and torch.all(x[..., -4:, :] == -1)
    assert torch.all(x[..., :, :4] == -1) and torch.all(x[..., :, -4:] == -1)
    inner = x8.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    assert torch.equal(x[..., 4:20, 4:20], inner)


def test_labels_match_load_digits(raw):
    _, target = raw
    x, y = digits_dataset(8, return_labels=True)
    assert y.dtype == torch.int64 and y.shape == (1797,)
    np.testing.assert_array_equal(y.numpy(), target)


def test_class_filter_keeps_order_and_images(raw, x8):
    _, target = raw
    for classes, wanted in [(3, [3]), ((3,), [3]), ([7, 1, 7], [1, 7]), (range(10), range(10))]:
        x, y = digits_dataset(8, classes=classes, return_labels=True)
        keep = np.isin(target, list(wanted))
        assert x.shape == (keep.sum(), 1, 8, 8)
        np.testing.assert_array_equal(y.numpy(), target[keep])
        assert torch.equal(x, x8[torch.from_numpy(keep)])
        assert set(y.tolist()) == set(wanted)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"size": 0}, ValueError, r"digits_dataset: expected size >= 1, got 0"),
        ({"size": 2.5}, TypeError, r"digits_dataset: expected size as an int, got 2.5"),
        ({"size": True}, TypeError, r"digits_dataset: expected size as an int, got True"),
        ({"padding": -1}, ValueError, r"digits_dataset: expected padding >= 0, got -1"),
        ({"classes": 10}, ValueError, r"digits_dataset: expected classes in \[0, 9\], got 10"),
        ({"classes": [1, -1]}, ValueError, r"digits_dataset: expected classes in \[0, 9\], got -1"),
        (
            {"classes": []},
            ValueError,
            r"digits_dataset: expected at least one class in classes, got none",
        ),
        ({"classes": ["3"]}, TypeError, r"digits_dataset: expected classes as an int, got '3'"),
        ({"padding": 1.0}, TypeError, r"digits_dataset: expected padding as an int, got 1.0"),
        (
            {"classes": 2.0},
            TypeError,
            r"digits_dataset: expected classes to be None, an integer or an iterable of integers, got float",
        ),
        (
            {"mode": "linear"},
            ValueError,
            r"digits_dataset: expected mode in \('bilinear', .*\), got 'linear'",
        ),
        (
            {"return_labels": 1},
            TypeError,
            r"digits_dataset: expected a bool return_labels, got int",
        ),
        (
            {"dtype": torch.int64},
            TypeError,
            r"digits_dataset: expected a floating-point torch\.dtype, got torch\.int64",
        ),
        (
            {"dtype": np.float32},
            TypeError,
            r"digits_dataset: expected a floating-point torch\.dtype",
        ),
    ],
)
def test_argument_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        digits_dataset(**kwargs)


def test_missing_sklearn_says_how_to_install(monkeypatch):
    # a None entry in sys.modules makes ``import`` raise ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"digits_dataset: .*pip install scikit-learn"):
        digits_dataset(8)
