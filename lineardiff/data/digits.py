"""Handwritten digits from scikit-learn's bundled 8x8 set, padded, resized and scaled to [-1, 1].

The images ship inside the scikit-learn wheel (``sklearn.datasets.load_digits``: 1,797 images,
integer grey levels 0..16, the UCI "Optical Recognition of Handwritten Digits" test set), so
nothing is downloaded.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_int

__all__ = ["digits_dataset"]

#: Grey levels of ``load_digits`` run from 0 (background) to this value (full ink).
_DIGITS_MAX = 16.0
_MODES = ("bilinear", "bicubic", "nearest", "nearest-exact")


def _load_digits():
    """Images (n, 8, 8) float64 and labels (n,) int64 from scikit-learn, imported lazily."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "digits_dataset: expected scikit-learn to be installed, got ImportError "
            f"({err}). Install it with `pip install scikit-learn`"
        ) from err
    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def _check_classes(where: str, classes) -> tuple[int, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, numbers.Integral) and not isinstance(classes, bool):
        classes = (classes,)
    try:
        items = tuple(classes)
    except TypeError:
        raise TypeError(
            f"{where}: expected classes to be None, an integer or an iterable of integers, "
            f"got {type(classes).__name__}"
        ) from None
    if not items:
        raise ValueError(f"{where}: expected at least one class in classes, got none")
    return tuple(sorted({check_int(where, "classes", c, 0, 9) for c in items}))


def check_float_dtype(where: str, dtype) -> torch.dtype:
    """A floating-point ``torch.dtype`` (the image loaders' ``dtype`` option)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{where}: expected a floating-point torch.dtype, got {dtype!r}")
    return dtype


def digits_dataset(
    size: int = 16,
    *,
    padding: int = 0,
    classes=None,
    mode: str = "bilinear",
    return_labels: bool = False,
    dtype: torch.dtype = torch.float32,
):
    """scikit-learn's handwritten digits as a ``(n, 1, size, size)`` tensor in [-1, 1].

    Parameters
    ----------
    size : int, optional
        Output height and width, ``size >= 1``.
    padding : int, optional
        Background pixels added on each side of the 8x8 image before resizing, so the digit fills
        the central ``8 / (8 + 2 padding)`` of the output; ``padding >= 0``.
    classes : int or iterable of int, optional
        Keep only these digits (each in 0..9); ``None`` keeps all ten.
    mode : {"bilinear", "bicubic", "nearest", "nearest-exact"}, optional
        Interpolation of :func:`torch.nn.functional.interpolate` (``align_corners=False``), with
        ``antialias=True`` when downsampling with ``"bilinear"`` or ``"bicubic"``. Bicubic
        overshoot is clamped to [-1, 1].
    return_labels : bool, optional
        Also return the digit labels.
    dtype : torch.dtype, optional
        Floating-point dtype of the images.

    Returns
    -------
    images : Tensor, shape (n, 1, size, size)
        ``2 v / 16 - 1`` for raw grey level ``v`` in 0..16, so background is -1 and full ink is
        +1, in the order of ``load_digits`` (n = 1797 with all classes).
    labels : Tensor, shape (n,), int64
        Only when ``return_labels`` is true.

    Notes
    -----
    The scaling and padding are done in float64 on the 8x8 grid (padding with the background
    value -1), then the padded ``8 + 2 padding`` square is resized to ``size`` (skipped when it
    already has that size) and cast to ``dtype``. Bilinear and nearest interpolation are convex
    combinations of the input, so the output stays in [-1, 1]. Needs scikit-learn, imported on
    the first call.

    Examples
    --------
    >>> x = digits_dataset(16, padding=2)
    >>> x.shape, x.dtype
    (torch.Size([1797, 1, 16, 16]), torch.float32)
    >>> float(x.min()), float(x.max())
    (-1.0, 1.0)
    >>> x, y = digits_dataset(8, classes=(0, 7), return_labels=True)
    >>> x.shape, y.unique().tolist()
    (torch.Size([357, 1, 8, 8]), [0, 7])
    """
    where = "digits_dataset"
    size = check_int(where, "size", size, 1)
    padding = check_int(where, "padding", padding, 0)
    classes = _check_classes(where, classes)
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"{where}: expected mode in {_MODES}, got {mode!r}")
    if not isinstance(return_labels, bool):
        raise TypeError(
            f"{where}: expected a bool return_labels, got {type(return_labels).__name__}"
        )
    dtype = check_float_dtype(where, dtype)

    raw, labels = _load_digits()
    if classes is not None:
        keep = np.isin(labels, classes)
        raw, labels = raw[keep], labels[keep]
    x = torch.from_numpy(raw).unsqueeze(1) * (2.0 / _DIGITS_MAX) - 1.0
    if padding:
        x = F.pad(x, (padding,) * 4, value=-1.0)
    side = x.shape[-1]
    if side != size:
        antialias = size < side and mode in ("bilinear", "bicubic")
        x = F.interpolate(x, size=(size, size), mode=mode, antialias=antialias)
        if mode == "bicubic":
            x = x.clamp(-1.0, 1.0)
    images = x.to(dtype).contiguous()
    if return_labels:
        return images, torch.from_numpy(labels)
    return images
