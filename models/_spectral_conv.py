"""Fourier-layer convolution with a fixed number of modes, and its sum with a 3x3 conv."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from ._checks import check_input_like, check_int, check_int_pair
from ._seed import seeded

__all__ = ["DualConv2d", "SpectralConv2d", "kept_modes"]


def kept_modes(
    modes: tuple[int, int], in_size: tuple[int, int], out_size: tuple[int, int]
) -> tuple[int, int, int]:
    """How many Fourier modes a :class:`SpectralConv2d` uses between two grids.

    A mode is kept when it is among the configured low modes *and* both grids
    represent it without aliasing: ``|k| <= (n - 1) // 2`` on a grid of ``n``
    points. The Nyquist frequency of an even grid is therefore never used (its
    sign is ambiguous, so it does not mean the same function on a finer grid).

    Parameters
    ----------
    modes : (int, int)
        Configured modes ``(m1, m2)``: frequencies ``-m1 .. m1 - 1`` along the
        first spatial axis and ``0 .. m2 - 1`` along the second.
    in_size, out_size : (int, int)
        Spatial sizes ``(H, W)`` of the input and output grids.

    Returns
    -------
    (int, int, int)
        ``(n_pos, n_neg, n_col)``: frequencies ``0 .. n_pos - 1`` and
        ``-n_neg .. -1`` along the first axis, ``0 .. n_col - 1`` along the second.

    Examples
    --------
    >>> from models import kept_modes
    >>> kept_modes((8, 5), (32, 32), (32, 32))   # a large grid keeps all configured modes
    (8, 8, 5)
    >>> kept_modes((8, 5), (8, 8), (16, 16))     # an 8-px grid resolves |k| <= 3 only
    (4, 3, 4)
    """
    m1, m2 = check_int_pair("kept_modes", "modes", modes)
    in_size = check_int_pair("kept_modes", "in_size", in_size)
    out_size = check_int_pair("kept_modes", "out_size", out_size)
    k1 = (min(in_size[0], out_size[0]) - 1) // 2
    k2 = (min(in_size[1], out_size[1]) - 1) // 2
    return min(m1, k1 + 1), min(m1, k1), min(m2, k2 + 1)


class SpectralConv2d(nn.Module):
    """Fourier layer: learned complex weights on a fixed number of low modes.

    The input is transformed with ``rfft2``; the low modes (both signs along
    the first spatial axis, non-negative along the second) are mixed across
    channels by learned complex weights; all other modes are set to zero and
    the result is transformed back with ``irfft2`` at the requested output
    size. The number of modes does not depend on the grid, so one set of
    weights acts on any resolution, odd sizes included, and can change the
    resolution on the way (Fourier neural operator, Li et al. 2021; the
    spectral half of DFU's Dual-FNO block).

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts ``C_in`` and ``C_out``.
    modes : int or (int, int)
        ``(m1, m2)``: frequencies ``-m1 .. m1 - 1`` along the first spatial axis
        and ``0 .. m2 - 1`` along the second (the ``rfft`` axis). DFU's small
        configuration uses ``(16, 9)``, ``(8, 5)`` and ``(4, 3)`` at its first
        three levels.
    seed : int or None, default None
        Seed for the initial weights; ``None`` draws from the global generator
        (what a network does when it builds this layer inside its own seeded
        scope).

    Notes
    -----
    With the transforms normalised so that the forward transform averages,

    .. math::

        \\hat x_c(k) = \\frac{1}{HW} \\sum_{n} x_c(n)\\,
            e^{-2\\pi i (k_1 n_1 / H + k_2 n_2 / W)},

    the output on an ``H' x W'`` grid is

    .. math::

        y_o(n) = \\sum_{k \\in K} a_{k_2}\\, \\mathrm{Re}\\Big[
            \\sum_c W_{c o}(k)\\, \\hat x_c(k)\\,
            e^{2\\pi i (k_1 n_1 / H' + k_2 n_2 / W')} \\Big],

    with ``a_0 = 1`` and ``a_{k_2} = 2`` otherwise (the Hermitian half the
    ``rfft`` leaves out), and ``K`` the configured modes that both grids resolve
    (:func:`kept_modes`). Because ``\\hat x`` is an average, a smooth function
    sampled on two grids gives the same coefficients, and the output samples
    the same function on the new grid: this normalisation is what makes the
    layer resolution-independent (the default ``"backward"`` FFT normalisation
    would scale the output by the ratio of grid sizes).

    The complex weights ``W`` of shape ``(C_in, C_out, m1, m2)`` are stored as
    two real parameters with a trailing axis of size 2 (real and imaginary
    part), one for ``k_1 >= 0`` and one for ``k_1 < 0``, so that ``.double()``
    and optimisers treat them like any other weight.

    Examples
    --------
    >>> import torch
    >>> from models import SpectralConv2d
    >>> layer = SpectralConv2d(3, 4, modes=(4, 3), seed=0)
    >>> x = torch.randn(2, 3, 16, 16)
    >>> layer(x).shape
    torch.Size([2, 4, 16, 16])
    >>> layer(x, out_size=(24, 23)).shape      # any output grid, odd sizes too
    torch.Size([2, 4, 24, 23])
    """

    def __init__(
        self, in_channels: int, out_channels: int, modes, *, seed: int | None = None
    ) -> None:
        super().__init__()
        where = "SpectralConv2d"
        self.in_channels = check_int(where, "in_channels", in_channels, 1)
        self.out_channels = check_int(where, "out_channels", out_channels, 1)
        self.modes = check_int_pair(where, "modes", modes)
        m1, m2 = self.modes
        shape = (self.in_channels, self.out_channels, m1, m2, 2)
        self.weight_pos = nn.Parameter(torch.empty(shape))
        self.weight_neg = nn.Parameter(torch.empty(shape))
        with seeded(seed, where):
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw real and imaginary parts uniformly in ``[-b, b]``, ``b = 1/sqrt(2 C_in)``.

        Then ``E|W|^2 = 1/(3 C_in)``, the variance PyTorch's default init gives a
        conv weight with fan-in ``C_in``.
        """
        bound = 1.0 / math.sqrt(2 * self.in_channels)
        nn.init.uniform_(self.weight_pos, -bound, bound)
        nn.init.uniform_(self.weight_neg, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"

    def forward(self, x: Tensor, out_size=None) -> Tensor:
        """Apply the layer.

        Parameters
        ----------
        x : Tensor, shape (N, C_in, H, W)
        out_size : int or (int, int), optional
            Output grid ``(H', W')``; default the input grid.

        Returns
        -------
        Tensor, shape (N, C_out, H', W')
        """
        where = "SpectralConv2d.forward"
        if not isinstance(x, Tensor):
            raise TypeError(f"{where}: expected x as a Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{where}: expected x of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{where}: expected x with a floating dtype, got {x.dtype}")
        check_input_like(where, "x", x, self)
        in_size = (x.shape[-2], x.shape[-1])
        out_hw = in_size if out_size is None else check_int_pair(where, "out_size", out_size)
        if x.shape[0] == 0:  # no sample: nothing to transform (an empty FFT is an error)
            return x.new_zeros(0, self.out_channels, *out_hw)
        n_pos, n_neg, n_col = kept_modes(self.modes, in_size, out_hw)
        m1 = self.modes[0]
        x_ft = torch.fft.rfft2(x, norm="forward")
        w_pos = torch.view_as_complex(self.weight_pos)
        w_neg = torch.view_as_complex(self.weight_neg)
        out_ft = x_ft.new_zeros(x.shape[0], self.out_channels, out_hw[0], out_hw[1] // 2 + 1)
        out_ft[:, :, :n_pos, :n_col] = torch.einsum(
            "nihw,iohw->nohw", x_ft[:, :, :n_pos, :n_col], w_pos[:, :, :n_pos, :n_col]
        )
        if n_neg:
            # weight_neg[..., j, :] holds frequency j - m1, so -n_neg..-1 are its last rows.
            out_ft[:, :, out_hw[0] - n_neg :, :n_col] = torch.einsum(
                "nihw,iohw->nohw",
                x_ft[:, :, in_size[0] - n_neg :, :n_col],
                w_neg[:, :, m1 - n_neg :, :n_col],
            )
        return torch.fft.irfft2(out_ft, s=out_hw, norm="forward")


class DualConv2d(nn.Module):
    """DFU's dual convolution: a 3x3 conv plus a :class:`SpectralConv2d`, summed.

    The spatial conv sees local detail, the spectral layer global low-frequency
    structure at any resolution. The spectral layer reads the input grid and
    writes the conv's output grid, so a strided (downsampling) dual conv is
    consistent on both branches.

    Parameters
    ----------
    in_channels, out_channels : int
    modes : int or (int, int)
        Fourier modes of the spectral branch, see :class:`SpectralConv2d`.
    stride : {1, 2}, default 1
        Stride of the 3x3 conv (padding 1, so the output has ``ceil(H / stride)``
        rows).
    padding_mode : {"zeros", "circular"}, default "zeros"
        Padding of the 3x3 conv; the spectral branch is periodic either way.
    seed : int or None, default None
        As for :class:`SpectralConv2d`.

    Examples
    --------
    >>> import torch
    >>> from models import DualConv2d
    >>> conv = DualConv2d(3, 8, modes=(4, 3), stride=2, seed=0)
    >>> conv(torch.randn(1, 3, 15, 15)).shape
    torch.Size([1, 8, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes,
        *,
        stride: int = 1,
        padding_mode: str = "zeros",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        where = "DualConv2d"
        stride = check_int(where, "stride", stride, 1, 2)
        if padding_mode not in ("zeros", "circular"):
            raise ValueError(
                f"{where}: expected padding_mode 'zeros' or 'circular', got {padding_mode!r}"
            )
        with seeded(seed, where):
            self.conv = nn.Conv2d(
                in_channels, out_channels, 3, stride=stride, padding=1, padding_mode=padding_mode
            )
            self.spectral = SpectralConv2d(in_channels, out_channels, modes)

    def forward(self, x: Tensor) -> Tensor:
        """Apply both branches and add them.

        Parameters
        ----------
        x : Tensor, shape (N, C_in, H, W)

        Returns
        -------
        Tensor, shape (N, C_out, ceil(H / stride), ceil(W / stride))
        """
        y = self.conv(x)
        return y + self.spectral(x, out_size=(y.shape[-2], y.shape[-1]))
