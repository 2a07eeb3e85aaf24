"""Tests for ``image_folder_dataset``: a round trip through PNG / JPEG files written with Pillow.

Expected values are computed independently of the loader: arrays are decoded with Pillow and
then cropped by numpy slicing, alpha-composited and converted to luma in numpy, and only the
final resize goes through ``Image.resize`` on the independently prepared array.
"""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from lineardiff.data import image_folder_dataset

RNG = np.random.default_rng(0)
BICUBIC = Image.Resampling.BICUBIC


def random_rgb(h, w):
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def decoded(path):
    """The file's pixels as Pillow decodes them (JPEG is lossy, so not the array written)."""
    with Image.open(path) as img:
        return np.asarray(img)


def centre_crop(a):
    h, w = a.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return a[top : top + s, left : left + s]


def to_unit(a):
    """uint8 (H, W[, C]) -> float64 (C, H, W) in [-1, 1]."""
    a = a.astype(np.float64) / 127.5 - 1
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def resized(a, size):
    return np.asarray(Image.fromarray(a).resize((size, size), BICUBIC))


@pytest.fixture
def mixed_folder(tmp_path):
    """Four files of different sizes, modes and formats; returns the expected RGB arrays."""
    wide = random_rgb(30, 40)
    Image.fromarray(wide).save(tmp_path / "a_wide.png")
    tall = RNG.integers(0, 256, size=(50, 20), dtype=np.uint8)
    Image.fromarray(tall, "L").save(tmp_path / "b_tall.jpg", quality=95)
    rgba = np.concatenate([random_rgb(32, 32), np.full((32, 32, 1), 255, np.uint8)], axis=-1)
    rgba[:16, :, 3] = 0  # top half fully transparent: composited onto white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c_rgba.png")
    small = random_rgb(10, 12)
    Image.fromarray(small).save(tmp_path / "d_small.jpeg", quality=95)

    tall_dec = decoded(tmp_path / "b_tall.jpg")
    over_white = np.where(rgba[..., 3:] == 255, rgba[..., :3], 255).astype(np.uint8)
    expected = [
        wide,
        np.repeat(tall_dec[..., None], 3, axis=-1),
        over_white,
        decoded(tmp_path / "d_small.jpeg"),
    ]
    return tmp_path, expected


def test_round_trip_mixed_sizes_and_modes(mixed_folder):
    folder, expected = mixed_folder
    x, paths = image_folder_dataset(folder, 16, return_paths=True, dtype=torch.float64)
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float64
    assert [p.name for p in paths] == ["a_wide.png", "b_tall.jpg", "c_rgba.png", "d_small.jpeg"]
    for got, rgb in zip(x, expected, strict=True):
        want = to_unit(resized(centre_crop(rgb), 16))
        np.testing.assert_array_equal(got.numpy(), want)
    x32 = image_folder_dataset(folder, 16)
    assert x32.dtype == torch.float32
    torch.testing.assert_close(x32, x.float(), rtol=0, atol=1e-7)


def test_values_without_resize_are_exact_and_reach_both_ends(tmp_path):
    a = random_rgb(12, 12)
    a[0, 0] = 0
    a[0, 1] = 255
    Image.fromarray(a).save(tmp_path / "x.png")
    x = image_folder_dataset(tmp_path, 12, dtype=torch.float64)
    np.testing.assert_array_equal(x[0].numpy(), a.transpose(2, 0, 1) / 127.5 - 1)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        y = image_folder_dataset(tmp_path, 12, dtype=dtype)
        assert y.dtype == dtype and float(y.min()) == -1.0 and float(y.max()) == 1.0


def test_greyscale_conversion_is_luma(tmp_path):
    a = random_rgb(9, 9)
    Image.fromarray(a).save(tmp_path / "x.png")
    luma = a.astype(np.float64) @ [0.299, 0.587, 0.114]
    for channels in (1, "L"):
        x = image_folder_dataset(tmp_path, 9, channels=channels, dtype=torch.float64)
        assert x.shape == (1, 1, 9, 9)
        # Pillow rounds its fixed-point luma: at most one grey level from the exact value
        np.testing.assert_allclose((x[0, 0].numpy() + 1) * 127.5, luma, rtol=0, atol=1.0)


def test_greyscale_file_as_rgb_repeats_channels(tmp_path):
    a = RNG.integers(0, 256, size=(7, 7), dtype=np.uint8)
    Image.fromarray(a, "L").save(tmp_path / "x.png")
    x = image_folder_dataset(tmp_path, 7, channels="RGB", dtype=torch.float64)
    for c in range(3):
        np.testing.assert_array_equal(x[0, c].numpy(), a / 127.5 - 1)


@pytest.mark.parametrize("shape,offset", [((10, 31), (0, 10)), ((25, 10), (7, 0))])
def test_crop_is_centred(tmp_path, shape, offset):
    h, w = shape
    # pixel value encodes its own position, so the crop's corner is read off the output
    a = (np.arange(h)[:, None] * 3 + np.arange(w)[None, :] * 5).astype(np.uint8)
    Image.fromarray(a, "L").save(tmp_path / "x.png")
    x = image_folder_dataset(tmp_path, 10, channels=1, dtype=torch.float64)
    top, left = offset
    np.testing.assert_array_equal(x[0, 0].numpy(), a[top : top + 10, left : left + 10] / 127.5 - 1)


def test_stretch_resizes_whole_image(tmp_path):
    a = random_rgb(10, 20)
    Image.fromarray(a).save(tmp_path / "x.png")
    x = image_folder_dataset(tmp_path, 8, fit="stretch", dtype=torch.float64)
    np.testing.assert_array_equal(x[0].numpy(), to_unit(resized(a, 8)))
    assert not np.array_equal(x[0].numpy(), to_unit(resized(centre_crop(a), 8)))


@pytest.mark.parametrize("resample", ["bilinear", "lanczos", "box", "nearest"])
def test_resample_filter_is_used(tmp_path, resample):
    a = random_rgb(24, 24)
    Image.fromarray(a).save(tmp_path / "x.png")
    x = image_folder_dataset(tmp_path, 10, resample=resample, dtype=torch.float64)
    want = np.asarray(
        Image.fromarray(a).resize((10, 10), getattr(Image.Resampling, resample.upper()))
    )
    np.testing.assert_array_equal(x[0].numpy(), to_unit(want))


def test_downsampling_antialiases(tmp_path):
    # a one-pixel checkerboard averages to mid-grey under an antialiasing filter, while point
    # sampling would keep the extremes
    a = ((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)
    Image.fromarray(a, "L").save(tmp_path / "x.png")
    x = image_folder_dataset(tmp_path, 8, channels=1, resample="box")
    assert float(x.abs().max()) <= 1 / 127.5 + 1e-6


def test_partial_alpha_and_background(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.arange(16).reshape(4, 4) * 17  # alpha 0, 17, ..., 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "x.png")
    alpha = rgba[..., 3:] / 255.0
    for background in (0, 255, 90):
        x = image_folder_dataset(tmp_path, 4, background=background, dtype=torch.float64)
        want = alpha * rgba[..., :3] + (1 - alpha) * background
        np.testing.assert_allclose((x[0].numpy().transpose(1, 2, 0) + 1) * 127.5, want, atol=1.0)


def test_palette_transparency_is_composited(tmp_path):
    idx = np.zeros((4, 4), np.uint8)
    idx[:2] = 1
    img = Image.fromarray(idx, "P")
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.save(tmp_path / "x.png", transparency=1)
    x = image_folder_dataset(tmp_path, 4, background=0)
    assert torch.all(x[0, :, :2] == -1)  # transparent green -> black background
    assert torch.equal(x[0, :, 2:, 0], torch.tensor([[1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]]))


def test_sixteen_bit_png_is_rescaled(tmp_path):
    a = np.array([[0, 257 * 128], [65535, 257 * 64]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "x.png")
    x = image_folder_dataset(tmp_path, 2, channels=1, dtype=torch.float64)
    np.testing.assert_array_equal(x[0, 0].numpy(), np.array([[0, 128], [255, 64]]) / 127.5 - 1)


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((8, 16), np.uint8)
    a[:, :8] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the left half goes on top
    Image.fromarray(a, "L").save(tmp_path / "x.jpg", exif=exif, quality=95)
    x = image_folder_dataset(tmp_path, 8, channels=1, fit="stretch")
    assert float(x[0, 0, :3].mean()) > 0.9 and float(x[0, 0, -3:].mean()) < -0.9


def test_sorted_order_recursion_extensions_and_hidden_files(tmp_path):
    names = [
        "b.png",
        "a.jpg",
        "D.PNG",
        "sub/c.png",
        "sub/deeper/e.jpeg",
        ".hidden.png",
        ".git/f.png",
        "notes.txt",
        "g.gif",
    ]
    for k, name in enumerate(names):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".txt"):
            (tmp_path / name).write_text("not an image")
        else:
            Image.new("L", (4, 4), 10 * k).save(tmp_path / name)

    def loaded(**kwargs):
        x, paths = image_folder_dataset(tmp_path, 4, channels=1, return_paths=True, **kwargs)
        rel = [p.relative_to(tmp_path).as_posix() for p in paths]
        # each file is a constant grey 10 k: the image at each position must be that file's
        levels = [round(float(v)) for v in (x[:, 0, 0, 0].double() + 1) * 127.5]
        assert levels == [10 * names.index(r) for r in rel]
        return rel

    assert loaded() == ["D.PNG", "a.jpg", "b.png"]
    assert loaded(recursive=True) == ["D.PNG", "a.jpg", "b.png", "sub/c.png", "sub/deeper/e.jpeg"]
    assert loaded(extensions=".png") == ["D.PNG", "b.png"]
    assert loaded(extensions=(".GIF", ".jpg")) == ["a.jpg", "g.gif"]


def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"expected an existing folder, got '{missing}'")
    ):
        image_folder_dataset(missing, 8)


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "x.png"
    Image.new("L", (4, 4)).save(f)
    with pytest.raises(NotADirectoryError, match=re.escape(f"expected a folder, got '{f}'")):
        image_folder_dataset(f, 8)


def test_no_images_names_the_extensions(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    (tmp_path / "sub").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "sub" / "x.png")
    msg = f"image_folder_dataset: expected at least one image with extension .png, .jpg, .jpeg in '{tmp_path}', got none; pass recursive=True"
    with pytest.raises(ValueError, match=re.escape(msg)):
        image_folder_dataset(tmp_path, 8)
    with pytest.raises(ValueError, match=r"extension \.bmp in .*, got none$"):
        image_folder_dataset(tmp_path, 8, recursive=True, extensions=[".BMP"])


def test_corrupt_image_names_the_file(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    bad = tmp_path / "b.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=re.escape(f"expected a readable image, got '{bad}'")):
        image_folder_dataset(tmp_path, 8)


def test_truncated_jpeg_names_the_file(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(random_rgb(64, 64)).save(good)
    data = good.read_bytes()
    good.unlink()
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(f"got '{bad}' (OSError")):
        image_folder_dataset(tmp_path, 8)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"size": 0}, ValueError, r"image_folder_dataset: expected size >= 1, got 0"),
        ({"size": "16"}, TypeError, r"image_folder_dataset: expected size as an int, got '16'"),
        ({"size": 16.0}, TypeError, r"image_folder_dataset: expected size as an int, got 16.0"),
        (
            {"channels": 2},
            ValueError,
            r"image_folder_dataset: expected channels in \(3, 1, 'RGB', 'L'\), got 2",
        ),
        ({"channels": "RGBA"}, ValueError, r"expected channels in .*, got 'RGBA'"),
        ({"channels": True}, ValueError, r"expected channels in .*, got True"),
        ({"channels": [3]}, ValueError, r"expected channels in .*, got \[3\]"),
        (
            {"recursive": "yes"},
            TypeError,
            r"image_folder_dataset: expected a bool recursive, got str",
        ),
        (
            {"extensions": "png"},
            ValueError,
            r"image_folder_dataset: expected extensions like '\.png', got 'png'",
        ),
        (
            {"extensions": ()},
            ValueError,
            r"image_folder_dataset: expected at least one extension, got none",
        ),
        (
            {"extensions": 5},
            TypeError,
            r"image_folder_dataset: expected extensions as a string or an iterable of strings, got int",
        ),
        (
            {"fit": "pad"},
            ValueError,
            r"image_folder_dataset: expected fit in \('crop', 'stretch'\), got 'pad'",
        ),
        (
            {"resample": "cubic"},
            ValueError,
            r"image_folder_dataset: expected resample in \('bicubic', .*\), got 'cubic'",
        ),
        (
            {"background": 256},
            ValueError,
            r"image_folder_dataset: expected background in \[0, 255\], got 256",
        ),
        ({"background": -1}, ValueError, r"image_folder_dataset: expected background in \[0, 255\], got -1"),
        (
            {"return_paths": None},
            TypeError,
            r"image_folder_dataset: expected a bool return_paths, got NoneType",
        ),
        (
            {"dtype": torch.uint8},
            TypeError,
            r"image_folder_dataset: expected a floating-point torch\.dtype, got torch\.uint8",
        ),
    ],
)
def test_argument_errors(tmp_path, kwargs, exc, match):
    Image.new("L", (4, 4)).save(tmp_path / "x.png")
    kwargs = {"size": 8, **kwargs}
    with pytest.raises(exc, match=match):
        image_folder_dataset(tmp_path, **kwargs)


def test_path_type_error():
    with pytest.raises(
        TypeError, match=r"image_folder_dataset: expected a str or os\.PathLike path, got int"
    ):
        image_folder_dataset(3, 8)
