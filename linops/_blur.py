"""Separable Gaussian blur with a stated boundary rule."""

from __future__ import annotations

import math
import numbers

import torch

from ._kronecker import Kronecker
from ._utils import as_shape, check_device, check_dtype, format_shape

__all__ = ["GaussianBlur", "gaussian_blur_matrix"]

_BOUNDARIES = ("reflect", "symmetric", "circular", "replicate", "zeros")


def _fold(index: torch.Tensor, n: int, boundary: str) -> torch.Tensor:
    """Map out-of-range sample positions into ``[0, n)``; -1 marks a zero sample."""
    if boundary == "circular":
        return torch.remainder(index, n)
    if boundary == "replicate":
        return index.clamp(0, n - 1)
    if boundary == "zeros":
        return torch.where((index >= 0) & (index < n), index, torch.full_like(index, -1))
    if boundary == "reflect":  # d c b | a b c d | c b a : edge sample not repeated
        if n == 1:
            return torch.zeros_like(index)
        period = 2 * (n - 1)
        r = torch.remainder(index, period)
        return torch.where(r < n, r, period - r)
    # symmetric: c b a | a b c | c b a : edge sample repeated
    period = 2 * n
    r = torch.remainder(index, period)
    return torch.where(r < n, r, period - 1 - r)


def _check_truncate(truncate, where: str) -> None:
    ok = isinstance(truncate, numbers.Real) and not isinstance(truncate, bool)
    if not (ok and truncate > 0):
        raise ValueError(f"{where}: expected truncate > 0, got {truncate!r}")
    if not math.isfinite(truncate):
        raise ValueError(f"{where}: expected a finite truncate, got {truncate!r}")


def gaussian_blur_matrix(
    n: int,
    sigma: float,
    *,
    boundary: str = "reflect",
    truncate: float = 4.0,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> torch.Tensor:
    """The ``n x n`` matrix of a 1-D Gaussian blur with a boundary rule.

    Parameters
    ----------
    n : int
        Signal length.
    sigma : float
        Standard deviation in samples; ``0`` gives the identity.
    boundary : {"reflect", "symmetric", "circular", "replicate", "zeros"}
        How the signal continues past its ends (see :class:`GaussianBlur`).
    truncate : float, default 4.0
        The kernel has radius ``int(truncate * sigma + 0.5)``.
    dtype, device
        Of the result.

    Returns
    -------
    Tensor, shape (n, n)
        Row ``i`` holds the weights of the output sample ``i``.
    """
    where = "gaussian_blur_matrix"
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{where}: expected n >= 1 (an int), got {n!r}")
    n = int(n)
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not math.isfinite(sigma) \
            or sigma < 0:
        raise ValueError(f"{where}: expected sigma >= 0 (a finite real number), got {sigma!r}")
    if boundary not in _BOUNDARIES:
        raise ValueError(f"{where}: expected boundary in {_BOUNDARIES}, got {boundary!r}")
    _check_truncate(truncate, where)
    check_dtype(dtype, where)
    device = check_device(device, where)
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    if sigma > 0:
        weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
        weights = weights / weights.sum()
    else:
        weights = torch.ones(1, dtype=torch.float64)
    rows = torch.arange(n).unsqueeze(1).expand(n, 2 * radius + 1)
    source = _fold(rows + torch.arange(-radius, radius + 1), n, boundary)
    vals = weights.expand(n, -1).clone()
    keep = source >= 0
    mat = torch.zeros(n, n, dtype=torch.float64)
    mat.index_put_((rows[keep], source[keep]), vals[keep], accumulate=True)
    return mat.to(dtype=dtype, device=device)


class GaussianBlur(Kronecker):
    """Separable Gaussian blur of images, ``B_h (x) B_w``.

    Each axis is convolved with the sampled, normalised Gaussian
    ``w_k ∝ exp(-k^2 / (2 sigma^2))``, ``|k| <= int(truncate * sigma + 0.5)``
    (the kernel of :func:`scipy.ndimage.gaussian_filter`), and the signal is
    continued past its ends by the ``boundary`` rule. The operator is stored
    as its two 1-D blur matrices, so the adjoint is exact and any kernel
    radius works on any image size.

    Parameters
    ----------
    shape : (C, H, W) or (H, W)
        Per-sample shape.
    sigma : float or (float, float)
        Standard deviation in pixels, for both axes or ``(sigma_h, sigma_w)``.
    boundary : {"reflect", "symmetric", "circular", "replicate", "zeros"}, default "reflect"
        ``reflect``: mirror about the edge sample, ``d c b | a b c d`` (PyTorch's
        and NumPy's ``reflect``, SciPy's ``mirror``). ``symmetric``: mirror
        repeating the edge, ``b a | a b`` (SciPy's ``reflect``). ``circular``:
        periodic (SciPy's ``wrap``). ``replicate``: repeat the edge sample
        (SciPy's ``nearest``). ``zeros``: zero outside.
    truncate : float, default 4.0
        Kernel radius in standard deviations.

    Notes
    -----
    The ``circular``, ``symmetric`` and ``zeros`` blurs are symmetric matrices
    (``is_self_adjoint``): the kernel is even, and the half-sample mirror of
    ``symmetric`` folds ``i + k`` onto ``j`` exactly when it folds ``j + k``
    onto ``i`` (it is the extension the DCT-II diagonalises). ``reflect`` and
    ``replicate`` are not symmetric.

    Examples
    --------
    >>> import torch, linops
    >>> B = linops.GaussianBlur((16, 16), 1.5, boundary="circular")
    >>> B.is_self_adjoint
    True
    >>> x = torch.ones(16, 16)
    >>> torch.allclose(B.apply(x), x)  # rows sum to one
    True
    """

    def __init__(self, shape, sigma, *, boundary: str = "reflect", truncate: float = 4.0) -> None:
        shape = as_shape(shape, "GaussianBlur: shape")
        if len(shape) not in (2, 3):
            raise ValueError(
                f"GaussianBlur: expected shape (C, H, W) or (H, W), got {format_shape(shape)}"
            )
        given = sigma
        if isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
            sigma = (float(sigma), float(sigma))
        if (
            not isinstance(sigma, (tuple, list))
            or len(sigma) != 2
            or not all(isinstance(s, numbers.Real) and math.isfinite(s) and s >= 0 for s in sigma)
        ):
            raise ValueError(
                f"GaussianBlur: expected sigma >= 0 as a float or (sigma_h, sigma_w), got {given!r}"
            )
        if boundary not in _BOUNDARIES:
            raise ValueError(f"GaussianBlur: expected boundary in {_BOUNDARIES}, got {boundary!r}")
        _check_truncate(truncate, "GaussianBlur")
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.boundary = boundary
        self.truncate = float(truncate)
        self._init_kronecker(shape[-2:], shape[-2:], shape[:-2])
        self.is_self_adjoint = boundary in ("circular", "symmetric", "zeros")

    def __repr__(self) -> str:
        return (
            f"GaussianBlur(shape={format_shape(self.in_shape)}, sigma={self.sigma}, "
            f"boundary={self.boundary!r})"
        )

    def _build_factors(self, dtype, device):
        h, w = self.in_shape[-2:]
        kw = {
            "boundary": self.boundary,
            "truncate": self.truncate,
            "dtype": dtype,
            "device": device,
        }
        return gaussian_blur_matrix(h, self.sigma[0], **kw), gaussian_blur_matrix(
            w, self.sigma[1], **kw
        )
