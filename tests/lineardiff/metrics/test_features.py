"""Features of image sets (lineardiff.metrics.compute_features): value ranges, quantisation,
the TF1 and torch bilinear resizes, channels, batching and the checks.

Expected values come from a "probe" network that returns its input and from numpy's
interpolation at the TF1 sampling positions.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from error_tables import raises_test
from feature_inputs import Probe, images, probe, tiny_net

from lineardiff.metrics import INCEPTION_INPUT_RANGE, FeatureExtractor, compute_features


def test_value_ranges_map_to_the_network_range():
    ext = probe((4, 4), input_range=INCEPTION_INPUT_RANGE)
    x = torch.cat([-torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4)])
    f = compute_features(x, ext)
    np.testing.assert_array_equal(f[0], -1.0)
    np.testing.assert_array_equal(f[1], 127 / 128)
    # uint8 in [0, 255]: u enters as (u - 128) / 128, the TensorFlow Inception convention
    u = torch.tensor([0, 1, 128, 255], dtype=torch.uint8).reshape(1, 1, 2, 2)
    f = compute_features(u, probe((2, 2), input_range=INCEPTION_INPUT_RANGE), value_range=(0, 255))
    np.testing.assert_allclose(f[0, :4], (np.array([0, 1, 128, 255]) - 128) / 128, atol=1e-7)


def test_slight_overshoot_is_clipped():
    x = torch.full((1, 3, 2, 2), 1.2)
    np.testing.assert_array_equal(compute_features(x, probe((2, 2))), 1.0)


def test_quantize_rounds_to_256_levels():
    x = images(3, h=4, w=4)
    f = compute_features(x, probe((4, 4)), quantize=True)
    # input_range (0, 1): 255 * feature must be an integer (up to float32 round-off)
    np.testing.assert_allclose(255 * f, np.round(255 * f), rtol=0, atol=1e-4)
    np.testing.assert_allclose(
        f, np.round(255 * ((x.numpy().reshape(3, -1) + 1) / 2)) / 255, atol=1e-6
    )
    g = compute_features(x, probe((4, 4)), quantize=False)
    np.testing.assert_allclose(g, (x.numpy().reshape(3, -1) + 1) / 2, atol=1e-6)


def bilinear_tf1(img, H, W):
    """Separable linear interpolation at positions i * h / H (clamped), with numpy.interp."""
    h, w = img.shape
    rows = np.stack([np.interp(np.arange(W) * w / W, np.arange(w), r) for r in img])
    return np.stack([np.interp(np.arange(H) * h / H, np.arange(h), c) for c in rows.T], axis=1)


@pytest.mark.parametrize("src, dst", [((3, 5), (7, 11)), ((9, 13), (4, 5)), ((6, 6), (6, 9))])
def test_tf1_bilinear_resize_matches_the_index_formula(src, dst):
    rng = np.random.default_rng(1)
    img = rng.uniform(size=src)
    x = torch.from_numpy(img).reshape(1, 1, *src)
    ext = probe(dst, in_channels=1)
    f = compute_features(x, ext, value_range=(0, 1), quantize=False).reshape(dst)
    np.testing.assert_allclose(f, bilinear_tf1(img, *dst), rtol=0, atol=1e-6)


def test_bilinear_mode_is_torch_interpolate():
    x = images(2, h=5, w=7)
    f = compute_features(x, probe((9, 8), resize="bilinear"), quantize=False)
    expected = F.interpolate((x + 1) / 2, size=(9, 8), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(f, expected.reshape(2, -1).numpy(), atol=1e-6)


def test_grayscale_is_repeated_to_three_channels():
    ext = FeatureExtractor(tiny_net(), input_size=(16, 16))
    gray = images(4, c=1)
    np.testing.assert_array_equal(
        compute_features(gray, ext), compute_features(gray.expand(-1, 3, -1, -1), ext)
    )


def test_batching_numpy_and_torch_agree():
    ext = FeatureExtractor(tiny_net(), input_size=(16, 16))
    x = images(11)
    ref = compute_features(x, ext, batch_size=100)
    for bs in (1, 4):
        np.testing.assert_allclose(compute_features(x, ext, batch_size=bs), ref, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(compute_features(x.numpy(), ext, batch_size=100), ref)



def _with_nan(n, i):
    x = torch.zeros(n, 3, 4, 4)
    x[i, 0, 1, 1] = float("nan")
    return x


EXT = probe((4, 4))

test_compute_features_errors = raises_test(
    [
        (
            lambda: compute_features(torch.zeros(2, 4, 4), EXT),
            ValueError,
            r"compute_features: expected images of shape \(n, C, H, W\) .*got \(2, 4, 4\) \(add a channel axis: images\[:, None\]\)",
        ),
        (
            lambda: compute_features(torch.zeros(2, 2, 4, 4), EXT),
            ValueError,
            r"compute_features: .*C in \[1, 3\], got \(2, 2, 4, 4\)",
        ),
        (
            lambda: compute_features(torch.zeros(0, 3, 4, 4), EXT),
            ValueError,
            r"compute_features: .*with n >= 1 .*got \(0, 3, 4, 4\)",
        ),
        (
            lambda: compute_features(_with_nan(6, 4), EXT, batch_size=3),
            ValueError,
            r"compute_features: expected finite images, got 1 NaN or inf value in images\[3:6\] "
            r"\(the first at index \(4, 0, 1, 1\)\)",
        ),
        (
            lambda: compute_features(
                torch.full((1, 3, 4, 4), 255.0).index_fill_(2, torch.tensor([0]), 0.0), EXT
            ),
            ValueError,
            r"compute_features: expected images in value_range \(-1, 1\) .*got values in \[0, 255\].*value_range=\(0, 255\)",
        ),
        (
            lambda: compute_features(torch.zeros(1, 3, 4, 4, dtype=torch.bool), EXT),
            TypeError,
            "compute_features: expected real images, got dtype torch.bool",
        ),
        (
            lambda: compute_features([[0.0]], EXT),
            TypeError,
            "compute_features: expected images as a Tensor or numpy array, got list",
        ),
        (
            lambda: compute_features(torch.zeros(1, 3, 4, 4), Probe()),
            TypeError,
            "compute_features: expected extractor as a FeatureExtractor .*got Probe",
        ),
        (
            lambda: compute_features(torch.zeros(1, 3, 4, 4), EXT, batch_size=0),
            ValueError,
            "compute_features: expected batch_size >= 1, got 0",
        ),
        (
            lambda: compute_features(torch.zeros(1, 3, 4, 4), EXT, batch_size=2.0),
            TypeError,
            "compute_features: expected batch_size as an int, got 2.0",
        ),
        (
            lambda: compute_features(torch.zeros(1, 3, 4, 4), EXT, value_range=(1, -1)),
            ValueError,
            r"compute_features: expected value_range with finite low < high, got \(1, -1\)",
        ),
    ]
)
