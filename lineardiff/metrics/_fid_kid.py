"""FID and KID of two image sets in one call: options checked before the expensive features."""

from __future__ import annotations

from dataclasses import dataclass

from ._features import check_images, compute_features
from ._fid import fid
from ._inception import FeatureExtractor, check_extractor
from ._kid import kid, kid_options

__all__ = ["FIDKIDResult", "fid_kid"]


@dataclass(frozen=True)
class FIDKIDResult:
    """FID and KID of two image sets, with what they were computed on.

    Attributes
    ----------
    fid : float
    kid : float
    kid_std : float
        As :attr:`KIDResult.std`.
    n_a, n_b : int
        Number of images in each set.
    feature_dim : int
    source : str
        Where the feature network came from.
    """

    fid: float
    kid: float
    kid_std: float
    n_a: int
    n_b: int
    feature_dim: int
    source: str


def fid_kid(
    images_a,
    images_b,
    extractor: FeatureExtractor,
    *,
    batch_size: int = 50,
    value_range=(-1.0, 1.0),
    quantize: bool = True,
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> FIDKIDResult:
    """FID and KID between two sets of images (e.g. model samples and training data).

    Parameters
    ----------
    images_a, images_b : Tensor or numpy.ndarray, shape (n, C, H, W)
        At least 2 images each; see :func:`compute_features`.
    extractor : FeatureExtractor
        From :func:`load_inception` for Inception FID / KID.
    batch_size, value_range, quantize, progress
        As in :func:`compute_features`.
    kid_subsets, kid_subset_size, seed
        ``subsets``, ``subset_size`` and ``seed`` of :func:`kid`.

    Returns
    -------
    FIDKIDResult

    Examples
    --------
    >>> import torch
    >>> from lineardiff.metrics import FeatureExtractor
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    >>> extractor = FeatureExtractor(net, input_size=(8, 8))
    >>> images = torch.rand(20, 3, 8, 8) * 2 - 1
    >>> r = fid_kid(images, images, extractor, kid_subsets=5)
    >>> abs(r.fid) < 1e-9, r.n_a, r.feature_dim
    (True, 20, 4)
    """
    where = "fid_kid"
    check_extractor(where, extractor)
    # Check everything cheap before the expensive features.
    sizes = []
    for name, images in (("images_a", images_a), ("images_b", images_b)):
        images = check_images(f"{where} ({name})", images, extractor.in_channels)
        if images.shape[0] < 2:
            raise ValueError(
                f"{where}: expected at least 2 images in {name}, got {images.shape[0]}"
            )
        sizes.append(images.shape[0])
    kid_options(where, kid_subsets, kid_subset_size, seed, min(sizes))
    options = dict(batch_size=batch_size, value_range=value_range, quantize=quantize)
    fa = compute_features(images_a, extractor, progress=progress, **options)
    fb = compute_features(images_b, extractor, progress=progress, **options)
    k = kid(fa, fb, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    return FIDKIDResult(
        fid=fid(fa, fb),
        kid=k.value,
        kid_std=k.std,
        n_a=fa.shape[0],
        n_b=fb.shape[0],
        feature_dim=fa.shape[1],
        source=extractor.source,
    )
