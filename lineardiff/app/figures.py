"""Figures of the application (matplotlib, Agg): sample grids, SR panels, curves, histograms.

Every function writes one PNG and returns its path; nothing is shown on screen.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["curve_figure", "histogram_figure", "sample_grid", "sr_figure"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _images(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"figures: expected images (n, C, H, W) or (n, H, W), got {a.shape}")
    return a


def _show(ax, img: np.ndarray) -> None:
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip((img.transpose(1, 2, 0) + 1) / 2, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def sample_grid(x, path, *, ncol: int | None = None, title: str | None = None) -> Path:
    """A grid of images with values in ``[-1, 1]``.

    Parameters
    ----------
    x : array_like or Tensor, shape (n, C, H, W) or (n, H, W)
    path : str or Path
        The PNG to write.
    ncol : int, optional
        Columns (default ``ceil(sqrt(n))``).
    title : str, optional
    """
    plt = _plt()
    a = _images(x)
    n = a.shape[0]
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.3 * ncol, 1.3 * nrow + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            _show(ax, a[i])
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def sr_figure(coarse, output, truth, path, *, n: int = 4) -> Path:
    """Rows of (low-resolution input, super-resolved output, held-out truth)."""
    plt = _plt()
    c, o, t = _images(coarse), _images(output), _images(truth)
    n = min(n, c.shape[0])
    fig, axes = plt.subplots(n, 3, figsize=(5.4, 1.8 * n), squeeze=False)
    for i in range(n):
        for j, (img, name) in enumerate(((c, "input"), (o, "model"), (t, "truth"))):
            _show(axes[i, j], img[i])
            if i == 0:
                axes[i, j].set_title(name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def curve_figure(x, curves: dict, path, *, xlabel: str, ylabel: str, log: bool = False,
                 title: str | None = None) -> Path:
    """Curves with error bars: ``curves = {label: (values, standard_errors or None)}``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for label, (y, se) in curves.items():
        y = np.asarray(y, dtype=float)
        if se is None:
            ax.plot(x, y, "o-", ms=3, label=label)
        else:
            ax.errorbar(x, y, yerr=np.asarray(se, dtype=float), fmt="o-", ms=3, capsize=2,
                        label=label)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def histogram_figure(samples: dict, path, *, xlabel: str, bins: int = 30) -> Path:
    """Overlaid normalised histograms: ``samples = {label: 1-D array}``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    values = [np.asarray(v, dtype=float) for v in samples.values()]
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    for label, v in zip(samples, values, strict=True):
        ax.hist(v, bins=edges, density=True, histtype="step", linewidth=1.5, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
