"""The ADM-style UNet: a shared body (encoder, middle, decoder) and the plain full-path UNet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ._blocks import (
    PADDING_MODES,
    RESAMPLE_MODES,
    AttentionBlock,
    Downsample,
    ResBlock,
    TimestepEmbedding,
    Upsample,
    as_timesteps,
    conv3x3,
    zero_init,
)
from ._checks import check_input_like, check_int, check_int_tuple, check_real
from ._seed import seeded

__all__ = ["UNet", "UNetBody"]


class ResAttn(nn.Module):
    """One UNet stage: a :class:`ResBlock`, followed by self-attention at chosen levels."""

    def __init__(self, res: ResBlock, attn: AttentionBlock | None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = self.res(x, emb)
        return x if self.attn is None else self.attn(x)


class EncoderLevel(nn.Module):
    """The encoder blocks of one level and the downsampling that leaves it (``None`` at the
    lowest level)."""

    def __init__(self, blocks: list[ResAttn], down: Downsample | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.down = down


class DecoderLevel(nn.Module):
    """The decoder blocks of one level and the upsampling to the next finer level (``None``
    at level 0)."""

    def __init__(self, blocks: list[ResAttn], up: Upsample | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.up = up


class MiddleBlock(nn.Module):
    """ResBlock, self-attention, ResBlock at the lowest resolution (ADM's ``middle_block``)."""

    def __init__(self, res1: ResBlock, attn: AttentionBlock, res2: ResBlock) -> None:
        super().__init__()
        self.res1 = res1
        self.attn = attn
        self.res2 = res2

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.res2(self.attn(self.res1(x, emb)), emb)


class UNetBody(nn.Module):
    """Shared construction and routing of :class:`UNet`, :class:`~models.FlexiUNet` and
    :class:`~models.DualFNOUNet` (not public).

    Level ``i`` runs at ``1 / 2**i`` of the input resolution with width
    ``c_i = base_channels * channel_mult[i]``. Module names are the same in all
    three networks, so weights can be copied between them by ``state_dict``.

    The skips follow ADM: entering level ``i`` the tensor (the stem output at
    level 0, the downsampled tensor below) is pushed, then each encoder block's
    output; decoder level ``i`` pops ``num_res_blocks + 1`` of them in reverse.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None,
        *,
        base_channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        attention_levels: Sequence[int],
        num_heads: int,
        dropout: float,
        padding_mode: str,
        resample: str,
        num_groups: int,
        modes: Sequence[tuple[int, int] | None] = (),
        seed: int | None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        in_channels = check_int(where, "in_channels", in_channels, 1)
        out_channels = in_channels if out_channels is None else out_channels
        out_channels = check_int(where, "out_channels", out_channels, 1)
        base_channels = check_int(where, "base_channels", base_channels, 1)
        num_res_blocks = check_int(where, "num_res_blocks", num_res_blocks, 1)
        num_heads = check_int(where, "num_heads", num_heads, 1)
        num_groups = check_int(where, "num_groups", num_groups, 1)
        mult = check_int_tuple(where, "channel_mult", channel_mult, 1)
        if not mult:
            raise ValueError(
                f"{where}: expected channel_mult as a non-empty sequence of ints >= 1, "
                f"got {channel_mult!r}"
            )
        levels = len(mult)
        widths = tuple(base_channels * m for m in mult)
        for i, c in enumerate(widths):
            if c % num_groups:
                raise ValueError(
                    f"{where}: expected every width base_channels * channel_mult[i] divisible "
                    f"by num_groups={num_groups}, got {c} at level {i}"
                )
        attention_levels = check_int_tuple(
            where, "attention_levels", attention_levels, 0, levels - 1
        )
        for i in sorted(set(attention_levels) | {levels - 1}):  # the middle block attends too
            if widths[i] % num_heads:
                raise ValueError(
                    f"{where}: expected the width of every level with attention divisible by "
                    f"num_heads={num_heads}, got {widths[i]} at level {i}"
                )
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"{where}: expected padding_mode in {PADDING_MODES}, got {padding_mode!r}"
            )
        if resample not in RESAMPLE_MODES:
            raise ValueError(f"{where}: expected resample in {RESAMPLE_MODES}, got {resample!r}")
        dropout = check_real(where, "dropout", dropout, low=0, high=1, open_low=False)
        modes = tuple(modes)
        if len(modes) > levels:
            raise ValueError(
                f"{where}: expected at most {levels} entries in modes (one per level), "
                f"got {len(modes)}"
            )
        level_modes = modes + (None,) * (levels - len(modes))

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.base_channels = base_channels
        self.channel_mult = mult
        self.num_res_blocks = num_res_blocks
        self.attention_levels = attention_levels
        self.padding_mode = padding_mode
        self.num_levels = levels
        self.widths = widths
        #: width of the tensor entering level i (stem output at level 0, downsampled below)
        self.entry_widths = (widths[0],) + widths[:-1]
        #: widths of the skips level i pushes, in push order
        self.skip_widths = tuple(
            (self.entry_widths[i],) + (widths[i],) * num_res_blocks for i in range(levels)
        )
        emb_dim = 4 * base_channels
        common = dict(dropout=float(dropout), padding_mode=padding_mode, num_groups=num_groups)

        def stage(cin: int, cout: int, level: int) -> ResAttn:
            res = ResBlock(cin, cout, emb_dim, modes=level_modes[level], **common)
            attn = None
            if level in attention_levels:
                attn = AttentionBlock(cout, num_heads=num_heads, num_groups=num_groups)
            return ResAttn(res, attn)

        with seeded(seed, where):
            self.time_embed = TimestepEmbedding(base_channels, emb_dim)
            self.stem = conv3x3(
                in_channels, widths[0], padding_mode=padding_mode, modes=level_modes[0]
            )
            encoder = []
            for i in range(levels):
                blocks, cin = [], self.entry_widths[i]
                for _ in range(num_res_blocks):
                    blocks.append(stage(cin, widths[i], i))
                    cin = widths[i]
                down = None
                if i < levels - 1:
                    # the spectral branch of a dual conv reads level i and writes level i + 1
                    down = Downsample(
                        widths[i],
                        resample=resample,
                        padding_mode=padding_mode,
                        modes=level_modes[i],
                    )
                encoder.append(EncoderLevel(blocks, down))
            self.encoder = nn.ModuleList(encoder)
            low = levels - 1
            self.middle = MiddleBlock(
                ResBlock(widths[low], widths[low], emb_dim, modes=level_modes[low], **common),
                AttentionBlock(widths[low], num_heads=num_heads, num_groups=num_groups),
                ResBlock(widths[low], widths[low], emb_dim, modes=level_modes[low], **common),
            )
            decoder: list[DecoderLevel | None] = [None] * levels
            cin = widths[low]
            for i in reversed(range(levels)):
                blocks = []
                for skip in reversed(self.skip_widths[i]):
                    blocks.append(stage(cin + skip, widths[i], i))
                    cin = widths[i]
                up = None
                if i > 0:
                    # the conv after the interpolation runs at level i - 1's resolution
                    up = Upsample(
                        widths[i],
                        resample=resample,
                        padding_mode=padding_mode,
                        modes=level_modes[i - 1],
                    )
                decoder[i] = DecoderLevel(blocks, up)
            self.decoder = nn.ModuleList(decoder)
            self.head = nn.Sequential(
                nn.GroupNorm(num_groups, widths[0]),
                nn.SiLU(),
                zero_init(
                    conv3x3(
                        widths[0], out_channels, padding_mode=padding_mode, modes=level_modes[0]
                    )
                ),
            )

    # -- validation -------------------------------------------------------------------------

    def _check_input(self, x, where: str) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{where}: expected x as a Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{where}: expected x of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{where}: expected x with a floating dtype, got {x.dtype}")
        check_input_like(where, "x", x, self)

    def _embed(self, x: Tensor, t, where: str) -> Tensor:
        return self.time_embed(as_timesteps(t, x.shape[0], where, device=x.device))

    # -- routing ----------------------------------------------------------------------------

    def _encode(
        self, h: Tensor, emb: Tensor, level: int, skips: list[Tensor], sizes: dict
    ) -> Tensor:
        """Run the encoder from ``level`` down and the middle block.

        ``h`` is the tensor entering ``level``; skips are appended to ``skips``
        and each level's spatial size is recorded in ``sizes``.
        """
        for i in range(level, self.num_levels):
            sizes[i] = (h.shape[-2], h.shape[-1])
            skips.append(h)
            enc = self.encoder[i]
            for block in enc.blocks:
                h = block(h, emb)
                skips.append(h)
            if enc.down is not None:
                h = enc.down(h)
        return self.middle(h, emb)

    def _decode(
        self, h: Tensor, emb: Tensor, level: int, skips: list[Tensor], sizes: dict
    ) -> Tensor:
        """Run the decoder from the lowest level up to ``level`` (inclusive)."""
        for i in reversed(range(level, self.num_levels)):
            dec = self.decoder[i]
            for block in dec.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if i > level:
                h = dec.up(h, sizes[i - 1])
        return h

    def _full_path(self, x, t, where: str) -> Tensor:
        """Validate, then run every block at the input's resolution."""
        self._check_input(x, where)
        emb = self._embed(x, t, where)
        skips: list[Tensor] = []
        sizes: dict = {}
        h = self._encode(self.stem(x), emb, 0, skips, sizes)
        return self.head(self._decode(h, emb, 0, skips, sizes))

    def _zero_skips(self, level: int, like: Tensor, size: tuple[int, int]) -> list[Tensor]:
        """Zero tensors standing in for the skips of encoder ``level`` when it did not run."""
        n = like.shape[0]
        return [like.new_zeros(n, c, *size) for c in self.skip_widths[level]]


class UNet(UNetBody):
    """The plain full-path ADM UNet: output size = input size, any input size.

    The baseline network for DDPM, Blurring Diffusion and SKILD, and the SSD
    paper's "Full UNet" ablation. Level ``i`` runs at ``1 / 2**i`` of the input
    resolution (``ceil`` at odd sizes; the decoder upsamples back to the sizes
    the encoder recorded, so odd inputs work).

    Parameters
    ----------
    in_channels : int, default 3
    out_channels : int or None, default None
        Defaults to ``in_channels``.
    base_channels : int, default 64
        Width of level 0; the time embedding has ``4 * base_channels`` features.
    channel_mult : sequence of int, default (1, 2, 3, 4)
        Level ``i`` has width ``base_channels * channel_mult[i]``; the length is
        the number of levels (ADM's configuration at 64 px).
    num_res_blocks : int, default 2
        ResBlocks per encoder level (the decoder has one more per level).
    attention_levels : sequence of int, default (2, 3)
        Levels with self-attention after each ResBlock (level ``i`` runs at
        ``1 / 2**i`` of the input size, so ADM's ``attention_resolutions=(16, 8)``
        at 64 px is ``(2, 3)``). The middle block always has attention.
    num_heads : int, default 4
    dropout : float, default 0.0
    padding_mode : {"zeros", "circular"}, default "zeros"
        ``"circular"`` for periodic data (Ising): the network then commutes with
        periodic shifts by multiples of ``2 ** (levels - 1)``.
    resample : {"conv", "fixed"}, default "conv"
        ``"conv"``: learned stride-2 conv down, nearest + 3x3 conv up;
        ``"fixed"``: average pooling down, nearest up (no parameters).
    num_groups : int, default 32
        GroupNorm groups; must divide every level's width.
    seed : int or None, default 0
        Seed for the initial weights (``None``: the global generator). Two
        networks with the same configuration and seed have identical weights.
        The output conv starts at zero, so a new network outputs zeros.

    Examples
    --------
    >>> import torch
    >>> from models import UNet
    >>> net = UNet(3, base_channels=8, channel_mult=(1, 2), attention_levels=(1,), num_groups=4)
    >>> x = torch.randn(2, 3, 15, 17)
    >>> net(x, torch.tensor([10, 500])).shape
    torch.Size([2, 3, 15, 17])
    >>> net(x, 10).abs().max().item()          # zero-initialised head
    0.0
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        *,
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

    def forward(self, x: Tensor, t) -> Tensor:
        """Predict from a noisy image.

        Parameters
        ----------
        x : Tensor, shape (N, C_in, H, W)
            Any ``H, W >= 1``.
        t : Tensor of shape (N,) or (), or a number
            Timesteps (int or float); a scalar applies to the whole batch.

        Returns
        -------
        Tensor, shape (N, C_out, H, W)
        """
        return self._full_path(x, t, "UNet.forward")
