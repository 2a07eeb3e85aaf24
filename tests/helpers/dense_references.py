"""Dense reference matrices built independently of linops (scipy, numpy, closed forms)."""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.ndimage
import torch


def basis_apply(fn, shape):
    """Dense matrix of a numpy map ``fn`` on arrays of ``shape`` (columns = images of e_i)."""
    n = math.prod(shape)
    cols = []
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        cols.append(np.asarray(fn(e.reshape(shape))).reshape(-1))
    return torch.from_numpy(np.stack(cols, axis=1))


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix from its cosine formula."""
    k = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    c = np.cos(np.pi * k * (2 * j + 1) / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c


SCIPY_BOUNDARY = {
    "reflect": "mirror",
    "symmetric": "reflect",
    "circular": "wrap",
    "replicate": "nearest",
    "zeros": "constant",
}


def blur_reference(shape, sigma, boundary, truncate=4.0):
    """Dense Gaussian blur via scipy.ndimage.gaussian_filter on the basis."""
    sh, sw = sigma

    def fn(img):
        sig = (0,) * (img.ndim - 2) + (sh, sw)
        return scipy.ndimage.gaussian_filter(
            img, sig, mode=SCIPY_BOUNDARY[boundary], truncate=truncate, cval=0.0
        )

    return basis_apply(fn, shape)


def dct2_reference(shape):
    return basis_apply(lambda x: scipy.fft.dctn(x, axes=(-2, -1), norm="ortho"), shape)


def fft2_reference(shape):
    n = math.prod(shape)
    cols = []
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        cols.append(np.fft.fft2(e.reshape(shape), norm="ortho").reshape(-1))
    return torch.from_numpy(np.stack(cols, axis=1))


def _triangle(x):
    return np.maximum(0.0, 1.0 - np.abs(x))


def _cubic(x, a):
    x = np.abs(x)
    return np.where(
        x <= 1,
        ((a + 2) * x - (a + 3)) * x * x + 1,
        np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0),
    )


def resize_weights_1d(n_in: int, n_out: int, mode: str, antialias: bool) -> np.ndarray:
    """1-D interpolation matrix (n_out, n_in) from the published formulas.

    Without antialias: sample the continuous interpolant at
    ``(i + 0.5) * n_in / n_out - 0.5`` (align_corners=False), borders clamped,
    Keys' cubic with a = -0.75 for bicubic. With antialias (the Pillow filter
    PyTorch follows): the kernel is stretched by ``s = max(n_in / n_out, 1)``,
    its support is ``s`` (bilinear) or ``2 s`` (bicubic, Keys a = -0.5), taps
    are cut at the borders and renormalised.
    """
    scale = n_in / n_out
    w = np.zeros((n_out, n_in))
    if antialias:
        stretch = max(scale, 1.0)
        support = stretch * (1.0 if mode == "bilinear" else 2.0)
        for i in range(n_out):
            center = scale * (i + 0.5)
            lo = max(int(center - support + 0.5), 0)
            hi = min(int(center + support + 0.5), n_in)
            x = (np.arange(lo, hi) - center + 0.5) / stretch
            k = _triangle(x) if mode == "bilinear" else _cubic(x, -0.5)
            w[i, lo:hi] = k / k.sum()
        return w
    for i in range(n_out):
        src = max((i + 0.5) * scale - 0.5, 0.0) if mode == "bilinear" else (i + 0.5) * scale - 0.5
        base = math.floor(src)
        frac = src - base
        if mode == "bilinear":
            taps = {base: 1 - frac, base + 1: frac}
        else:
            taps = {base + d: float(_cubic(frac - d, -0.75)) for d in (-1, 0, 1, 2)}
        for j, v in taps.items():
            w[i, min(max(j, 0), n_in - 1)] += v
    return w
