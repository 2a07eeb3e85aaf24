"""Files the command line reads and writes: low-resolution inputs (.npy arrays, PNG/JPEG
images), their scale, and output arrays that are never written with NaN or inf."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .._checks import check_finite, check_finite_array

__all__ = ["UsageError", "WorkFailed", "block_calibration_for", "block_variance_for",
           "check_input_range", "input_scale", "load_inputs", "save_outputs"]

#: Inputs of ``upscale`` (after ``--input-scale``) are images in the data range [-1, 1];
#: low-pass views overshoot it a little, so up to INPUT_WARN passes silently, up to
#: INPUT_LIMIT with a warning, and beyond it the inputs are refused: 100 times the data
#: range is not a scaling slip but other data (raw pixel counts, unnormalised fields), and
#: from about 1e19 the network's float32 normalisations overflow to NaN.
INPUT_WARN = 2.0
INPUT_LIMIT = 100.0

_NPY_MAGIC = b"\x93NUMPY"


class UsageError(ValueError):
    """A bad option or input file found by the command line itself (exit code 2)."""


class WorkFailed(RuntimeError):
    """The work ran but failed: non-finite outputs, an unwritable result (exit code 1)."""


def load_inputs(path: str, n: int, channels: int):
    """The ``--input`` images as a float32 tensor ``(n, C, h, h)``; every problem a UsageError."""
    import torch

    p = Path(path)
    if not p.exists():
        raise UsageError(f"--input: no file or folder {path!r}")
    if p.is_file() and (p.suffix.lower() == ".npy" or _is_npy(p)):
        x = torch.from_numpy(_read_npy(p).astype("float32"))
        if x.ndim == 3:
            x = x[:, None]
    else:
        x = _read_images(p, channels)
    if n > x.shape[0]:
        raise UsageError(f"--n: expected at most {x.shape[0]} (the inputs in {path}), got {n}")
    return x[:n] if n else x


def _is_npy(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(len(_NPY_MAGIC)) == _NPY_MAGIC


def _read_npy(p: Path):
    """A real array (n, h, w) or (n, C, h, w) of square, finite images from a .npy file."""
    import numpy as np

    where = f"--input {p}"
    if not _is_npy(p):
        # numpy would call it pickled data and suggest allow_pickle=True: never here
        raise UsageError(f"{where}: expected a NumPy array file (written by numpy.save), got a "
                         "file without the .npy signature: it is not a NumPy array file")
    try:
        a = np.load(p, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err):
            raise UsageError(f"{where}: expected a numeric array, got Python objects (dtype "
                             "object), which are not loaded: unpickling can run code") from None
        raise UsageError(f"{where}: expected a readable .npy file, got {err}") from None
    except EOFError:
        raise UsageError(f"{where}: expected a readable .npy file, got a truncated one") from None
    if np.iscomplexobj(a):
        raise UsageError(f"{where}: expected real values, got a {a.dtype} array; pass its real "
                         "part (numpy.real) or its magnitude (numpy.abs) explicitly")
    if a.dtype.kind not in "fiu":
        hint = "; map 0/1 values with 2 * x - 1" if a.dtype.kind == "b" else ""
        raise UsageError(f"{where}: expected a numeric array, got dtype {a.dtype}{hint}")
    if a.ndim not in (3, 4):
        raise UsageError(f"--input: expected an array (n, h, w) or (n, C, h, w), got {a.shape}")
    if a.shape[0] == 0:
        raise UsageError(f"{where}: expected at least one input, got an array of shape {a.shape}")
    if min(a.shape[1:]) == 0:
        raise UsageError(f"{where}: expected images of at least 1 x 1 pixels, got an array of "
                         f"shape {a.shape}")
    if a.shape[-1] != a.shape[-2]:
        raise UsageError(f"{where}: expected square images (h = w), got an array of shape "
                         f"{a.shape}")
    return check_finite_array(where, "values", a)


def _read_images(p: Path, channels: int):
    from ..data import image_folder_dataset

    mode = 1 if channels == 1 else 3
    try:
        if p.is_dir():
            return image_folder_dataset(p, _image_size(p), channels=mode)
        # one image: load it through a folder that holds only a link to it
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / p.name).symlink_to(p.resolve())
            return image_folder_dataset(tmp, _image_size(p), channels=mode)
    except OSError as err:  # PIL: not an image, truncated, unreadable
        raise UsageError(f"--input: expected a .npy array, a PNG/JPEG image or a folder of "
                         f"them, got {str(p)!r} ({err})") from None


def _image_size(p: Path) -> int:
    from PIL import Image

    f = p if p.is_file() else next(iter(sorted(p.glob("*.png")) + sorted(p.glob("*.jp*g"))), None)
    if f is None:
        raise UsageError(f"--input: no PNG or JPEG images in {p}")
    with Image.open(f) as im:
        return min(im.size)


def check_input_range(y, scale: float) -> None:
    """Refuse inputs far outside the data range [-1, 1] (see INPUT_LIMIT); warn nearer."""
    peak = y.abs().amax(dim=(1, 2, 3)) * abs(scale)
    top = float(peak.max())
    if top <= INPUT_WARN:
        return
    bound = INPUT_LIMIT if top > INPUT_LIMIT else INPUT_WARN
    first = int((peak > bound).nonzero()[0, 0])
    scaled = "" if scale == 1 else f" after --input-scale {scale:.4g}"
    if top > INPUT_LIMIT:
        raise UsageError(
            f"--input: expected values in the data range [-1, 1] (at most {INPUT_LIMIT:g} in "
            f"magnitude), got magnitudes up to {top:.3g}{scaled} (the first such input: "
            f"{first}); rescale the inputs or set --input-scale"
        )
    print(f"lineardiff upscale: warning: --input: values reach {top:.3g}{scaled} (the first "
          f"such input: {first}), outside the data range [-1, 1]; the outputs may be poor",
          file=sys.stderr)


def save_outputs(where: str, x, files: dict) -> None:
    """Write the output files of a finite result ``x``, each atomically.

    ``files`` maps each path to a function that writes it. A result holding NaN or inf writes
    none of them and removes earlier files of those names, so that the folder cannot pass
    for this command's result.
    """
    try:
        check_finite(where, "outputs", x)
    except ValueError as err:
        removed = [f.name for f in files if f.exists()]
        for f in files:
            f.unlink(missing_ok=True)
        names = " and ".join(f.name for f in files)
        raise WorkFailed(f"{err}; {names} not written" + (
            f" (the earlier {' and '.join(removed)} removed)" if removed else "")) from None
    for f, write in files.items():
        fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=f".{f.stem}.", suffix=f.suffix)
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, f)
        except OSError as err:
            raise WorkFailed(f"{where}: could not write {f} ({err.strerror or err})") from None
        finally:
            Path(tmp).unlink(missing_ok=True)


def block_calibration_for(model, y, scale: float, calibrated: bool | None):
    """The entry calibration for majority-block inputs like ``y``: with ``--calibrated``,
    and by default (``calibrated=None``) for SSD models of Ising data; None otherwise."""
    from ..data import wolff_configurations
    from .ising_eval import MC_HELDOUT_SEED, block_calibration, calibrated_by_default

    ising_blocks = model.config["data"]["name"] == "ising" and model.size % y.shape[-1] == 0
    if calibrated is None:
        calibrated = calibrated_by_default(model.process, ising_blocks)
    if not calibrated:
        return None
    if not ising_blocks:
        raise ValueError(
            "upscale: --calibrated is for models of Ising data with majority-block inputs "
            f"(a size dividing {model.size}), got a {model.config['process']['name']} model of "
            f"{model.config['data']['name']} data and inputs of size {y.shape[-1]}"
        )
    fine = wolff_configurations(model.size, 2000, seed=MC_HELDOUT_SEED + 1)
    return block_calibration(model.process, fine, model.size // y.shape[-1], scale)


def block_variance_for(model, y, guidance: float, plain: bool):
    """``--guidance`` without ``--plain-likelihood``: the measured posterior variance of a block
    mean for an Ising model with majority-block inputs (None otherwise: the plain likelihood)."""
    if plain and guidance == 0:
        raise UsageError("--plain-likelihood: expected with --guidance > 0, got --guidance 0")
    if guidance == 0 or plain or model.config["data"]["name"] != "ising" \
            or model.process.sr_sizes is None or model.size % y.shape[-1]:
        return None
    from ..data import wolff_configurations
    from .ising_eval import MC_HELDOUT_SEED, measured_block_variance

    fine = wolff_configurations(model.size, 2000, seed=MC_HELDOUT_SEED + 1)
    return measured_block_variance(model, fine, model.size // y.shape[-1])


def input_scale(scale, model, y) -> float:
    if scale != "auto":
        return float(scale)
    if model.config["data"]["name"] != "ising" or model.config["process"]["name"] not in (
            "ssd", "skild") or model.size % y.shape[-1]:
        return 1.0
    from ..data import wolff_configurations
    from .ising_eval import MC_HELDOUT_SEED, sr_input_scale

    fine = wolff_configurations(model.size, 2000, seed=MC_HELDOUT_SEED + 1)
    return sr_input_scale(model.process, fine, model.size // y.shape[-1])
