"""Image resizing with exactly ``torch.nn.functional.interpolate`` semantics."""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from ._kronecker import Kronecker
from ._utils import as_shape, dense_copy, format_shape
from ._vjp import VJPAdjoint

__all__ = ["Resize"]

_MODES = ("bilinear", "bicubic", "nearest", "nearest-exact", "area")
_ANTIALIAS_MODES = ("bilinear", "bicubic")
_INTERP_MODES = ("bilinear", "bicubic")  # the modes that take align_corners


class Resize(Kronecker):
    """Resize images exactly as :func:`torch.nn.functional.interpolate` does.

    The forward map *is* ``F.interpolate(x, size=out_size, mode=mode,
    antialias=antialias, align_corners=align_corners)``. Every mode of
    ``interpolate`` acts separably, so the operator is also the Kronecker
    product ``R_h (x) R_w`` of two 1-D interpolation matrices
    (:meth:`factors`), obtained by interpolating identity columns with the same
    settings. The adjoint uses those factors (``R_h^T Y R_w``, two small
    matrix products) or, as a reference, autograd's vector-Jacobian product.

    Parameters
    ----------
    in_shape : (C, H, W) or (H, W)
        Per-sample input shape.
    out_size : int or (int, int)
        Output spatial size ``(h, w)``; any size, up or down, integer or
        non-integer factor.
    mode : {"bilinear", "bicubic", "nearest", "nearest-exact", "area"}, default "bilinear"
    antialias : bool, default True
        Anti-aliasing when downsampling (bilinear and bicubic only; it has no
        effect when upsampling).
    align_corners : bool, default False
        As in ``interpolate`` (bilinear and bicubic only).
    adjoint : {"factors", "vjp"}, default "factors"
        How :meth:`apply_adjoint` is computed. ``"vjp"`` linearises
        ``interpolate`` with :func:`torch.func.vjp` (the SSD paper's Algorithm 2).

    Notes
    -----
    PyTorch's antialiased kernel is wrong when the output is one pixel wide
    and the height changes (every output row gets the first row's weights);
    in that configuration the forward map uses the factors, which follow the
    separable definition. Everywhere else the forward map is bit-for-bit
    ``interpolate``.

    ``interpolate`` computes one set of 1-D weights per axis from the input
    and output lengths and applies them in two passes, so the dense matrix
    equals ``kron(R_h, R_w)`` entry for entry; applied to a tensor the two
    routes differ only by the order of floating-point additions.

    Examples
    --------
    >>> import torch, linops
    >>> R = linops.Resize((3, 8, 8), (4, 4))
    >>> x = torch.randn(2, 3, 8, 8)
    >>> y = torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", antialias=True)
    >>> torch.equal(R.apply(x), y)
    True
    >>> R_h, R_w = R.factors()
    >>> R_h.shape
    torch.Size([4, 8])
    """

    def __init__(
        self,
        in_shape,
        out_size,
        *,
        mode: str = "bilinear",
        antialias: bool = True,
        align_corners: bool = False,
        adjoint: str = "factors",
    ) -> None:
        in_shape = as_shape(in_shape, "Resize: in_shape")
        if len(in_shape) not in (2, 3):
            raise ValueError(
                f"Resize: expected in_shape (C, H, W) or (H, W), got {format_shape(in_shape)}"
            )
        if isinstance(out_size, numbers.Integral) and not isinstance(out_size, bool):
            out_size = (int(out_size), int(out_size))
        out_size = as_shape(out_size, "Resize: out_size")
        if len(out_size) != 2:
            raise ValueError(f"Resize: expected out_size (h, w), got {format_shape(out_size)}")
        if mode not in _MODES:
            raise ValueError(f"Resize: expected mode in {_MODES}, got {mode!r}")
        if not isinstance(antialias, bool) or not isinstance(align_corners, bool):
            raise TypeError(
                f"Resize: expected bool antialias and align_corners, got {antialias!r} and "
                f"{align_corners!r}"
            )
        if antialias and mode not in _ANTIALIAS_MODES:
            raise ValueError(
                f"Resize: antialias=True needs mode in {_ANTIALIAS_MODES}, got {mode!r}. "
                "Pass antialias=False"
            )
        if align_corners and mode not in _INTERP_MODES:
            raise ValueError(
                f"Resize: align_corners=True needs mode in {_INTERP_MODES}, got {mode!r}"
            )
        if adjoint not in ("factors", "vjp"):
            raise ValueError(f"Resize: expected adjoint 'factors' or 'vjp', got {adjoint!r}")
        self.mode = mode
        self.antialias = antialias
        self.align_corners = align_corners
        self.adjoint = adjoint
        self.out_size = out_size
        self._init_kronecker(in_shape[-2:], out_size, in_shape[:-2])
        # interpolate to the same size is the identity in every mode
        self.is_self_adjoint = in_shape[-2:] == out_size
        self._vjp = VJPAdjoint(self._interpolate, self.in_shape)

    def __repr__(self) -> str:
        return (
            f"Resize(in_shape={format_shape(self.in_shape)}, "
            f"out_size={format_shape(self.out_size)}, "
            f"mode={self.mode!r}, antialias={self.antialias})"
        )

    def _kwargs(self) -> dict:
        kwargs = {"size": self.out_size, "mode": self.mode}
        if self.mode in _INTERP_MODES:
            kwargs["align_corners"] = self.align_corners
            kwargs["antialias"] = self.antialias
        return kwargs

    def _torch_kernel_is_wrong(self) -> bool:
        # PyTorch's antialiased CPU kernel (checked on 2.13) returns the weights of output
        # row 0 for every output row when the output is one pixel wide and the height
        # changes; the separable definition is computed with the factors instead.
        h, w = self.in_shape[-2:]
        return self.antialias and self.out_size[1] == 1 and self.out_size[0] != h

    def _interpolate(self, x: torch.Tensor) -> torch.Tensor:
        if self._torch_kernel_is_wrong():
            return Kronecker._apply(self, x)
        n = x.shape[0]
        h, w = self.in_shape[-2:]
        out = F.interpolate(x.reshape(-1, 1, h, w), **self._kwargs())
        return out.reshape(n, *self.out_shape)

    def _build_factors(self, dtype, device):
        mats = []
        for axis in (0, 1):
            n, m = self.in_shape[-2 + axis], self.out_size[axis]
            # Identity columns laid out along the width axis, height 1 kept fixed: the
            # weights of one axis depend only on its own in/out lengths and settings.
            eye = torch.eye(n, dtype=dtype, device=device).reshape(n, 1, 1, n)
            kwargs = self._kwargs()
            kwargs["size"] = (1, m)
            cols = F.interpolate(eye, **kwargs).reshape(n, m)
            mats.append(dense_copy(cols.transpose(0, 1)))
        return mats[0], mats[1]

    def factors(self, *, dtype: torch.dtype = torch.float64, device=None):
        """The 1-D interpolation matrices ``(R_h, R_w)``, so that ``R = R_h (x) R_w``.

        Parameters
        ----------
        dtype : torch.dtype, default float64
        device : torch.device or str, optional

        Returns
        -------
        R_h : Tensor, shape (h, H)
        R_w : Tensor, shape (w, W)
        """
        return self.factor_matrices(dtype=dtype, device=device)

    def as_kronecker(self) -> Kronecker:
        """An explicit :class:`Kronecker` operator built from :meth:`factors` (float64)."""
        r_h, r_w = self.factors()
        return Kronecker(r_h, r_w, lead_shape=self.lead_shape)

    def _supports_complex(self) -> bool:
        return False

    def _apply(self, x):
        return self._interpolate(x)

    def _apply_adjoint(self, y):
        if self.adjoint == "vjp":
            return self._vjp(y)
        return super()._apply_adjoint(y)

    def apply_adjoint_vjp(self, y: torch.Tensor) -> torch.Tensor:
        """The adjoint by autograd VJP regardless of the ``adjoint`` setting (a reference).

        Parameters
        ----------
        y : Tensor, shape (\\*batch, \\*out_shape)

        Returns
        -------
        Tensor, shape (\\*batch, \\*in_shape)
        """
        return self._call(y, adjoint=True, impl=self._vjp)
