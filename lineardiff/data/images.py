"""Users' own PNG / JPEG images from a folder, as a square float tensor in [-1, 1]."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .._checks import check_int
from .digits import check_float_dtype

__all__ = ["image_folder_dataset"]

_CHANNELS = {1: "L", 3: "RGB", "L": "L", "RGB": "RGB"}
_FITS = ("crop", "stretch")
_RESAMPLE = ("bicubic", "bilinear", "lanczos", "box", "nearest")
# Pillow opens 16-bit greyscale PNGs in these modes; its own conversion to "L" clips at 255
# instead of rescaling, so they are rescaled by hand.
_SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def _import_pil():
    try:
        from PIL import Image, ImageOps
    except ImportError as err:
        raise ImportError(
            "image_folder_dataset: expected Pillow to be installed, got ImportError "
            f"({err}). Install it with `pip install pillow`"
        ) from err
    return Image, ImageOps


def _check_extensions(where: str, extensions) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    try:
        items = tuple(extensions)
    except TypeError:
        raise TypeError(
            f"{where}: expected extensions as a string or an iterable of strings, "
            f"got {type(extensions).__name__}"
        ) from None
    if not items:
        raise ValueError(f"{where}: expected at least one extension, got none")
    for e in items:
        if not isinstance(e, str) or not e.startswith(".") or len(e) < 2:
            raise ValueError(f"{where}: expected extensions like '.png', got {e!r}")
    return tuple(dict.fromkeys(e.lower() for e in items))


def _find_images(folder: Path, extensions: tuple[str, ...], recursive: bool) -> list[Path]:
    """Image files under ``folder``, sorted by relative POSIX path; hidden names are skipped."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = []
    for p in candidates:
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in extensions and p.is_file():
            found.append(p)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _to_mode(img, mode: str, background: int, Image):
    """Convert an opened image to ``"L"`` or ``"RGB"``, compositing transparency on a grey."""
    if img.mode in _SIXTEEN_BIT:
        a = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.rint(np.clip(a, 0, 65535) * (255 / 65535)).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (background, background, background, 255))
        img = Image.alpha_composite(base, rgba)
    return img.convert(mode)


def image_folder_dataset(
    path: str | os.PathLike,
    size: int,
    *,
    channels: int | str = 3,
    recursive: bool = False,
    extensions=(".png", ".jpg", ".jpeg"),
    fit: str = "crop",
    resample: str = "bicubic",
    background: int = 255,
    return_paths: bool = False,
    dtype: torch.dtype = torch.float32,
):
    """Load the PNG / JPEG images in a folder as a ``(n, C, size, size)`` tensor in [-1, 1].

    Parameters
    ----------
    path : str or os.PathLike
        Folder holding the images.
    size : int
        Output height and width, ``size >= 1``.
    channels : {3, 1, "RGB", "L"}, optional
        3 or ``"RGB"`` for colour, 1 or ``"L"`` for greyscale (Pillow's ITU-R 601-2 luma
        ``L = 0.299 R + 0.587 G + 0.114 B``); every image is converted, whatever its own mode.
    recursive : bool, optional
        Also search subfolders.
    extensions : str or iterable of str, optional
        File name endings to load, matched case-insensitively (``".PNG"`` matches ``".png"``).
    fit : {"crop", "stretch"}, optional
        ``"crop"`` takes the centred ``s x s`` square, ``s = min(width, height)``, with its
        top-left corner at ``((width - s) // 2, (height - s) // 2)``, then resizes it;
        ``"stretch"`` resizes the whole image, ignoring its aspect ratio.
    resample : {"bicubic", "bilinear", "lanczos", "box", "nearest"}, optional
        Pillow filter of ``Image.resize``; all but ``"nearest"`` widen with the scale factor when
        downsampling, so they antialias.
    background : int, optional
        Grey level in 0..255 that transparent pixels (RGBA, LA, palette transparency) are
        alpha-composited onto.
    return_paths : bool, optional
        Also return the list of files, in the order of the images.
    dtype : torch.dtype, optional
        Floating-point dtype of the images.

    Returns
    -------
    images : Tensor, shape (n, C, size, size)
        ``2 v / 255 - 1`` for 8-bit value ``v``, one image per file in sorted order of the path
        relative to ``path`` (``/``-separated), so the order does not depend on the file system.
    paths : list of pathlib.Path
        Only when ``return_paths`` is true.

    Notes
    -----
    Each file goes through Pillow: EXIF orientation applied (``ImageOps.exif_transpose``),
    16-bit greyscale rescaled to 8 bits, transparency composited onto ``background``,
    conversion to ``"RGB"`` or ``"L"``, the crop, then ``Image.resize`` (skipped when the image
    already has the size). Every step stays in 8 bits, so values are exact multiples of
    ``2 / 255`` minus 1 and lie in [-1, 1]. Files and folders whose names start with ``.`` (such
    as macOS ``._*`` files) are skipped. Everything is decoded into memory at once.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     Image.new("RGB", (40, 30), (255, 0, 0)).save(f"{folder}/red.png")
    ...     Image.new("L", (20, 20), 255).save(f"{folder}/white.jpg")
    ...     x = image_folder_dataset(folder, 16)
    >>> x.shape
    torch.Size([2, 3, 16, 16])
    >>> x[0, :, 0, 0].tolist(), x[1, :, 0, 0].tolist()
    ([1.0, -1.0, -1.0], [1.0, 1.0, 1.0])
    """
    where = "image_folder_dataset"
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: expected a str or os.PathLike path, got {type(path).__name__}")
    size = check_int(where, "size", size, 1)
    if isinstance(channels, bool) or channels not in tuple(_CHANNELS):
        raise ValueError(f"{where}: expected channels in (3, 1, 'RGB', 'L'), got {channels!r}")
    mode = _CHANNELS[channels]
    if not isinstance(recursive, bool):
        raise TypeError(f"{where}: expected a bool recursive, got {type(recursive).__name__}")
    extensions = _check_extensions(where, extensions)
    if not isinstance(fit, str) or fit not in _FITS:
        raise ValueError(f"{where}: expected fit in {_FITS}, got {fit!r}")
    if not isinstance(resample, str) or resample not in _RESAMPLE:
        raise ValueError(f"{where}: expected resample in {_RESAMPLE}, got {resample!r}")
    background = check_int(where, "background", background, 0, 255)
    if not isinstance(return_paths, bool):
        raise TypeError(f"{where}: expected a bool return_paths, got {type(return_paths).__name__}")
    dtype = check_float_dtype(where, dtype)

    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"{where}: expected an existing folder, got '{folder}' (not found)")
    if not folder.is_dir():
        raise NotADirectoryError(f"{where}: expected a folder, got '{folder}' (not a folder)")
    files = _find_images(folder, extensions, recursive)
    if not files:
        hint = "" if recursive else "; pass recursive=True to search subfolders"
        raise ValueError(
            f"{where}: expected at least one image with extension {', '.join(extensions)} in "
            f"'{folder}', got none{hint}"
        )

    Image, ImageOps = _import_pil()
    # Image.Resampling is Pillow >= 9.1; the module-level constants are the same enum values
    filt = getattr(getattr(Image, "Resampling", Image), resample.upper())
    c = len(mode)
    out = np.empty((len(files), c, size, size), dtype=np.uint8)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as img:
                img = ImageOps.exif_transpose(img)
                img = _to_mode(img, mode, background, Image)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise ValueError(
                f"{where}: expected a readable image, got '{file}' ({type(err).__name__}: {err})"
            ) from err
        if fit == "crop":
            w, h = img.size
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top, left + s, top + s))
        if img.size != (size, size):
            img = img.resize((size, size), resample=filt)
        a = np.asarray(img, dtype=np.uint8)
        out[i] = a[None] if c == 1 else a.transpose(2, 0, 1)
    # v / 127.5 is correctly rounded, so 0 and 255 map to exactly -1 and +1 in any float dtype
    images = torch.from_numpy(out).to(dtype).div_(127.5).sub_(1.0)
    if return_paths:
        return images, files
    return images
