"""Flexi-UNet: run only the part of the UNet that the input and output resolutions need."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
from torch import Tensor

from ._checks import check_int
from ._seed import seeded
from ._unet import UNetBody

__all__ = ["FlexiUNet"]


class FlexiUNet(UNetBody):
    """UNet that enters and leaves at the pyramid level of its input and output (SSD Flexi-UNet).

    Level ``i`` of the network runs at ``image_size // 2**i`` pixels; these
    sizes form the *pyramid*. An input of pyramid size enters the encoder at
    its own level: a shared stem conv maps it to ``base_channels`` features
    and a 1x1 *input adapter* to the width of that level. The encoder runs
    from there down, then the middle block, then the decoder up to the output
    level: the input's level for a resolution-preserving step, or one level
    finer when ``out_size`` is twice the input size (a resolution-increasing
    step of Scale Space Diffusion). The skips of encoder blocks that did not
    run are zero tensors. A 1x1 *output adapter* maps the output level's width
    back to ``base_channels`` and a shared head (GroupNorm, SiLU, zero-init 3x3
    conv) produces the prediction. Only these blocks run; this is where the
    speed-up comes from (SSD paper, Sec. 4.3 and Fig. 3).

    The network at level 0 without a resolution change is exactly a
    :class:`~models.UNet` with the same configuration: level 0's width is the
    stem width, so its adapters are the identity, and module names agree, so
    ``UNet(...).load_state_dict(flexi.state_dict(), strict=False)`` copies
    every weight the UNet has. The configuration parameters mean what they
    mean for the UNet; the default ``channel_mult`` is ADM's at 64 px.

    Parameters
    ----------
    in_channels : int, default 3
    out_channels : int or None, default None
        Defaults to ``in_channels``.
    image_size : int, default 64
        The finest pyramid size (level 0); must be divisible by ``2 ** (levels - 1)``.
    base_channels : int, default 64
    channel_mult : sequence of int, default (1, 2, 3, 4)
        ``len(channel_mult)`` is the number of levels; an SSD process with ``L``
        resolutions uses ``L`` of them (usually the finest).
    num_res_blocks : int, default 2
    attention_levels : sequence of int, default (2, 3)
    num_heads : int, default 4
    dropout : float, default 0.0
    padding_mode : {"zeros", "circular"}, default "zeros"
    resample : {"conv", "fixed"}, default "conv"
    num_groups : int, default 32
    seed : int or None, default 0
        Seed for the initial weights (``None``: the global generator).

    Attributes
    ----------
    resolutions : tuple of int
        The pyramid, level 0 first, e.g. ``(64, 32, 16, 8)``.
    in_adapters, out_adapters : nn.ModuleList
        One per level; ``nn.Identity`` at level 0.

    Examples
    --------
    >>> import torch
    >>> from models import FlexiUNet
    >>> net = FlexiUNet(3, image_size=32, base_channels=8, channel_mult=(1, 2, 2),
    ...                 attention_levels=(2,), num_groups=4)
    >>> net.resolutions
    (32, 16, 8)
    >>> x = torch.randn(2, 3, 8, 8)
    >>> net(x, 900).shape                       # resolution-preserving step
    torch.Size([2, 3, 8, 8])
    >>> net(x, 900, out_size=16).shape          # resolution-increasing step
    torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        *,
        image_size: int = 64,
        base_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] = (2, 3),
        num_heads: int = 4,
        dropout: float = 0.0,
        padding_mode: str = "zeros",
        resample: str = "conv",
        num_groups: int = 32,
        seed: int | None = 0,
    ) -> None:
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
            seed=seed,
        )
        levels = self.num_levels
        factor = 2 ** (levels - 1)
        image_size = check_int("FlexiUNet", "image_size", image_size, 1)
        if image_size % factor:
            raise ValueError(
                f"FlexiUNet: expected image_size divisible by 2 ** (levels - 1) = {factor} "
                f"for {levels} levels, got {image_size}"
            )
        self.image_size = image_size
        self.resolutions = tuple(image_size // 2**i for i in range(levels))
        stem = self.widths[0]
        # Built after the body, in the same seeded scope, so that the body's weights equal
        # those of a UNet with the same configuration and seed.
        with seeded(None if seed is None else seed + 1, "FlexiUNet"):
            self.in_adapters = nn.ModuleList(
                [nn.Identity()]
                + [nn.Conv2d(stem, self.entry_widths[i], 1) for i in range(1, levels)]
            )
            self.out_adapters = nn.ModuleList(
                [nn.Identity()] + [nn.Conv2d(self.widths[i], stem, 1) for i in range(1, levels)]
            )

    def level_of(self, size: int) -> int:
        """The pyramid level of a spatial size.

        Parameters
        ----------
        size : int

        Returns
        -------
        int
            ``i`` with ``resolutions[i] == size``.

        Examples
        --------
        >>> from models import FlexiUNet
        >>> net = FlexiUNet(base_channels=8, num_groups=4)
        >>> net.level_of(16)
        2
        >>> net.level_of(24)
        Traceback (most recent call last):
            ...
        ValueError: FlexiUNet.level_of: expected a size on the pyramid (8, 16, 32, 64), got 24
        """
        return self._level(size, "FlexiUNet.level_of", "a size")

    def _level(self, size, where: str, what: str) -> int:
        if size not in self.resolutions:
            pyramid = tuple(sorted(self.resolutions))
            raise ValueError(f"{where}: expected {what} on the pyramid {pyramid}, got {size}")
        return self.resolutions.index(size)

    def route(self, in_size: int, out_size: int | None = None) -> tuple[int, int]:
        """The input and output levels of a call, validated.

        Parameters
        ----------
        in_size : int
            Input size (on the pyramid).
        out_size : int or None
            Output size: ``None`` or ``in_size`` (same level), or ``2 * in_size``
            (one level finer).

        Returns
        -------
        (int, int)
            ``(level_in, level_out)`` with ``level_out in (level_in, level_in - 1)``.

        Examples
        --------
        >>> from models import FlexiUNet
        >>> net = FlexiUNet(base_channels=8, num_groups=4)
        >>> net.route(16), net.route(16, 32)
        ((2, 2), (2, 1))
        """
        where = "FlexiUNet.forward"
        level_in = self._level(in_size, where, "an input size")
        if out_size is None or out_size == in_size:
            return level_in, level_in
        if out_size != 2 * in_size:
            raise ValueError(
                f"{where}: expected out_size equal to the input size {in_size} or twice it "
                f"({2 * in_size}), got {out_size}"
            )
        return level_in, self._level(out_size, where, "out_size")

    def forward(self, x: Tensor, t, out_size=None) -> Tensor:
        """Predict at ``out_size`` from a noisy image at a pyramid resolution.

        Parameters
        ----------
        x : Tensor, shape (N, C_in, S, S)
            ``S`` on the pyramid :attr:`resolutions`.
        t : Tensor of shape (N,) or (), or a number
            Timesteps (int or float); a scalar applies to the whole batch.
        out_size : int or (int, int), optional
            ``S`` (default) or ``2 * S``.

        Returns
        -------
        Tensor, shape (N, C_out, S_out, S_out)
        """
        where = "FlexiUNet.forward"
        self._check_input(x, where)
        height, width = x.shape[-2], x.shape[-1]
        if height != width:
            raise ValueError(f"{where}: expected a square input, got size {(height, width)}")
        if isinstance(out_size, (tuple, list)):
            if len(out_size) != 2 or out_size[0] != out_size[1]:
                raise ValueError(f"{where}: expected a square out_size, got {tuple(out_size)}")
            out_size = out_size[0]
        if out_size is not None and (isinstance(out_size, bool) or not isinstance(out_size, int)):
            raise TypeError(
                f"{where}: expected out_size as an int, a pair or None, got {out_size!r}"
            )
        level_in, level_out = self.route(height, out_size)
        emb = self._embed(x, t, where)
        skips: list[Tensor] = []
        sizes: dict = {}
        h = self.in_adapters[level_in](self.stem(x))
        if level_out < level_in:
            size = (2 * height, 2 * width)
            skips.extend(self._zero_skips(level_out, h, size))
            sizes[level_out] = size
        h = self._encode(h, emb, level_in, skips, sizes)
        h = self._decode(h, emb, level_out, skips, sizes)
        return self.head(self.out_adapters[level_out](h))
