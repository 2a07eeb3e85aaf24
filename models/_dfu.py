"""Dual-FNO UNet (DFU): the UNet with every conv of the chosen levels made spectral + spatial."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ._checks import check_int_pair
from ._unet import UNetBody

__all__ = ["DualFNOUNet"]


class DualFNOUNet(UNetBody):
    """Resolution-robust UNet whose convs at the chosen levels are :class:`~models.DualConv2d`.

    At each level ``i`` with ``modes[i]`` given, every 3x3 conv (both convs of
    each ResBlock, the resampling convs, and the stem and head at level 0) is a
    3x3 conv plus a :class:`~models.SpectralConv2d` keeping ``modes[i]`` low
    Fourier modes (Havrilla et al., DFU, Fig. 4). The fixed number of modes
    lets one set of weights act at any resolution: train on several (e.g.
    16-32 px) and sample zero-shot at larger sizes. Otherwise the network is
    the plain :class:`~models.UNet` (same blocks, same module names, and the
    configuration parameters mean the same), with output size = input size,
    odd sizes included.

    Parameters
    ----------
    in_channels : int, default 3
    out_channels : int or None, default None
        Defaults to ``in_channels``.
    modes : sequence of (int, int) or None, default ((16, 9), (8, 5), (4, 3))
        Entry ``i`` gives the modes ``(m1, m2)`` of level ``i`` (frequencies
        ``-m1 .. m1 - 1`` along the height, ``0 .. m2 - 1`` along the width), or
        ``None`` for a plain conv there; levels past the end are plain. The
        default is DFU's small configuration (spectral branch on the three
        finest levels).
    base_channels : int, default 64
    channel_mult : sequence of int, default (1, 2, 2, 2)
    num_res_blocks : int, default 2
    attention_levels : sequence of int, default (2,)
    num_heads : int, default 4
    dropout : float, default 0.0
    padding_mode : {"zeros", "circular"}, default "zeros"
    resample : {"conv", "fixed"}, default "conv"
    num_groups : int, default 32
    seed : int or None, default 0
        Seed for the initial weights (``None``: the global generator).

    Notes
    -----
    The ``modes`` are a fixed number of frequencies *per unit domain*, not per
    pixel: on a grid too coarse to resolve some of them they are dropped (see
    :func:`~models.kept_modes`). DFU's SpectralConv2d uses the unnormalised
    ``irfft2`` of the original FNO; here the transforms average (``norm="forward"``)
    so the spectral branch outputs the same function at every resolution.

    Examples
    --------
    >>> import torch
    >>> from models import DualFNOUNet
    >>> net = DualFNOUNet(1, modes=((6, 4), (3, 2)), base_channels=8, channel_mult=(1, 2),
    ...                   attention_levels=(), num_groups=4)
    >>> net(torch.randn(2, 1, 16, 16), 0.5).shape
    torch.Size([2, 1, 16, 16])
    >>> net(torch.randn(2, 1, 23, 23), 0.5).shape      # same weights, another size
    torch.Size([2, 1, 23, 23])
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        *,
        modes: Sequence[tuple[int, int] | None] = ((16, 9), (8, 5), (4, 3)),
        base_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] = (2,),
        num_heads: int = 4,
        dropout: float = 0.0,
        padding_mode: str = "zeros",
        resample: str = "conv",
        num_groups: int = 32,
        seed: int | None = 0,
    ) -> None:
        where = "DualFNOUNet"
        if isinstance(modes, (str, bytes)) or not isinstance(modes, Sequence):
            raise TypeError(
                f"{where}: expected modes as a sequence of pairs or None, got {modes!r}"
            )
        checked = tuple(
            None if m is None else check_int_pair(where, f"modes[{i}]", m)
            for i, m in enumerate(modes)
        )
        super().__init__(
            in_channels,
            out_channels,
            base_channels=base_channels,
            channel_mult=channel_mult,
            num_res_blocks=num_res_blocks,
            attention_levels=attention_levels,
            num_heads=num_heads,
            dropout=dropout,
            padding_mode=padding_mode,
            resample=resample,
            num_groups=num_groups,
            modes=checked,
            seed=seed,
        )
        self.modes = checked + (None,) * (self.num_levels - len(checked))

    def forward(self, x: Tensor, t) -> Tensor:
        """Predict from a noisy image at any resolution.

        Parameters
        ----------
        x : Tensor, shape (N, C_in, H, W)
            Any ``H, W >= 1``.
        t : Tensor of shape (N,) or (), or a number
            Timesteps or noise levels (int or float); a scalar applies to the
            whole batch.

        Returns
        -------
        Tensor, shape (N, C_out, H, W)
        """
        return self._full_path(x, t, "DualFNOUNet.forward")
