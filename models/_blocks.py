"""ADM-style building blocks: time embedding, ResBlock, self-attention, resampling.

The blocks follow the Ablated Diffusion Model UNet (Dhariwal and Nichol 2021):
GroupNorm and SiLU before each conv, FiLM scale-shift from the time embedding,
zero-initialised output convs so that every residual branch starts as the
identity. Each 3x3 conv can be replaced by a :class:`~models.DualConv2d` (pass
``modes``), which is how the Dual-FNO UNet is built from the same blocks.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ._spectral_conv import DualConv2d

__all__ = [
    "PADDING_MODES",
    "RESAMPLE_MODES",
    "AttentionBlock",
    "Downsample",
    "ResBlock",
    "TimestepEmbedding",
    "Upsample",
    "as_timesteps",
    "conv3x3",
    "timestep_embedding",
    "zero_init",
]

PADDING_MODES = ("zeros", "circular")
RESAMPLE_MODES = ("conv", "fixed")


def timestep_embedding(t: Tensor, dim: int, *, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps.

    Parameters
    ----------
    t : Tensor, shape (N,)
        Timesteps, integer or float.
    dim : int
        Embedding width; the first ``dim // 2`` entries are cosines, the next
        ``dim // 2`` sines, and a zero is appended when ``dim`` is odd.
    max_period : float, default 10000
        Longest period; frequencies are ``max_period ** (-j / (dim // 2))``.

    Returns
    -------
    Tensor, shape (N, dim)
        In ``t``'s dtype when it is floating point, float32 otherwise.

    Examples
    --------
    >>> import torch
    >>> from models._blocks import timestep_embedding
    >>> e = timestep_embedding(torch.tensor([0, 10]), 4)
    >>> e.shape
    torch.Size([2, 4])
    >>> e[0]                                   # cos(0) = 1, sin(0) = 0
    tensor([1., 1., 0., 0.])
    """
    half = dim // 2
    dtype = t.dtype if t.is_floating_point() else torch.float32
    exponent = torch.arange(half, dtype=dtype, device=t.device) / half
    freqs = torch.exp(-math.log(max_period) * exponent)
    args = t.to(dtype)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def as_timesteps(t, batch: int, where: str, *, device=None) -> Tensor:
    """Validate ``t`` and broadcast a scalar to the batch.

    Parameters
    ----------
    t : Tensor of shape (N,) or (), or a Python number
        Timesteps (int or float). A scalar applies to every sample.
    batch : int
        The batch size ``N`` of the input images.
    where : str
        Caller name for error messages.

    Returns
    -------
    Tensor, shape (N,)
    """
    if isinstance(t, numbers.Real) and not isinstance(t, bool):
        t = torch.tensor(t, device=device)
    if not isinstance(t, Tensor):
        raise TypeError(f"{where}: expected t as a Tensor or a number, got {type(t).__name__}")
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{where}: expected t with a real dtype, got {t.dtype}")
    if t.ndim == 0:
        return t.reshape(1).expand(batch)
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(
            f"{where}: expected t of shape ({batch},) or a scalar, got shape {tuple(t.shape)}"
        )
    return t


class TimestepEmbedding(nn.Module):
    """Sinusoidal time features followed by a two-layer MLP (ADM's ``time_embed``).

    Parameters
    ----------
    channels : int
        Width of the sinusoidal features (ADM: the base channel count).
    emb_dim : int
        Output width (ADM: four times the base channel count).

    Examples
    --------
    >>> import torch
    >>> from models._blocks import TimestepEmbedding
    >>> TimestepEmbedding(16, 64)(torch.tensor([0.5, 999.0])).shape
    torch.Size([2, 64])
    """

    def __init__(self, channels: int, emb_dim: int) -> None:
        super().__init__()
        self.channels = channels
        self.mlp = nn.Sequential(
            nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        """Embed timesteps.

        Parameters
        ----------
        t : Tensor, shape (N,)

        Returns
        -------
        Tensor, shape (N, emb_dim)
        """
        dtype = self.mlp[0].weight.dtype
        return self.mlp(timestep_embedding(t.to(dtype), self.channels))


def zero_init(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero and return it (ADM's ``zero_module``)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def conv3x3(
    in_channels: int,
    out_channels: int,
    *,
    padding_mode: str = "zeros",
    stride: int = 1,
    modes: tuple[int, int] | None = None,
) -> nn.Module:
    """A 3x3 conv with padding 1, or a :class:`~models.DualConv2d` when ``modes`` is given."""
    if modes is None:
        return nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=1, padding_mode=padding_mode
        )
    return DualConv2d(in_channels, out_channels, modes, stride=stride, padding_mode=padding_mode)


class ResBlock(nn.Module):
    """Residual block with FiLM scale-shift conditioning on the time embedding.

    ``h = conv(SiLU(GN(x)))``, ``h = GN(h) * (1 + scale) + shift`` with
    ``(scale, shift) = Linear(SiLU(emb))``, ``h = conv0(dropout(SiLU(h)))`` and
    the output ``skip(x) + h``; ``conv0`` starts at zero and ``skip`` is a 1x1
    conv when the width changes (identity otherwise).

    Parameters
    ----------
    in_channels, out_channels : int
    emb_dim : int
        Width of the time embedding.
    dropout : float, default 0.0
    padding_mode : {"zeros", "circular"}, default "zeros"
    num_groups : int, default 32
        GroupNorm groups; must divide both widths.
    modes : (int, int) or None, default None
        Fourier modes: when given, both 3x3 convs are :class:`~models.DualConv2d`.

    Examples
    --------
    >>> import torch
    >>> from models._blocks import ResBlock
    >>> block = ResBlock(8, 16, 32, num_groups=4)
    >>> block(torch.randn(2, 8, 10, 10), torch.randn(2, 32)).shape
    torch.Size([2, 16, 10, 10])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        *,
        dropout: float = 0.0,
        padding_mode: str = "zeros",
        num_groups: int = 32,
        modes: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, padding_mode=padding_mode, modes=modes)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(num_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(
            conv3x3(out_channels, out_channels, padding_mode=padding_mode, modes=modes)
        )
        if in_channels == out_channels:
            self.skip: nn.Module = nn.Identity()
        else:
            self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Apply the block.

        Parameters
        ----------
        x : Tensor, shape (N, C_in, H, W)
        emb : Tensor, shape (N, emb_dim)

        Returns
        -------
        Tensor, shape (N, C_out, H, W)
        """
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb_proj(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all pixels, with a residual connection.

    Uses :func:`torch.nn.functional.scaled_dot_product_attention`; the output
    projection starts at zero, so the block starts as the identity. The cost is
    quadratic in the number of pixels: use it only at low resolutions.

    Parameters
    ----------
    channels : int
    num_heads : int, default 4
        Must divide ``channels``.
    num_groups : int, default 32

    Examples
    --------
    >>> import torch
    >>> from models._blocks import AttentionBlock
    >>> attn = AttentionBlock(16, num_heads=2, num_groups=4)
    >>> x = torch.randn(2, 16, 4, 4)
    >>> torch.equal(attn(x), x)               # zero-initialised output projection
    True
    """

    def __init__(self, channels: int, *, num_heads: int = 4, num_groups: int = 32) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(
                f"AttentionBlock: expected num_heads dividing channels={channels}, got {num_heads}"
            )
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(num_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Parameters
        ----------
        x : Tensor, shape (N, C, H, W)

        Returns
        -------
        Tensor, shape (N, C, H, W)
        """
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (N, heads, HW, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class Downsample(nn.Module):
    """Halve the resolution: a stride-2 3x3 conv, or 2x2 average pooling.

    Odd sizes round up (``ceil(H / 2)``) in both modes, so a decoder can
    upsample back to the recorded size.

    Parameters
    ----------
    channels : int
    resample : {"conv", "fixed"}, default "conv"
        ``"conv"``: learned stride-2 conv; ``"fixed"``: parameter-free average pooling.
    padding_mode : {"zeros", "circular"}, default "zeros"
    modes : (int, int) or None, default None
        With ``resample="conv"``, use a :class:`~models.DualConv2d`.

    Examples
    --------
    >>> import torch
    >>> from models._blocks import Downsample
    >>> Downsample(4)(torch.randn(1, 4, 15, 16)).shape
    torch.Size([1, 4, 8, 8])
    """

    def __init__(
        self,
        channels: int,
        *,
        resample: str = "conv",
        padding_mode: str = "zeros",
        modes: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.resample = resample
        if resample == "conv":
            self.conv: nn.Module | None = conv3x3(
                channels, channels, padding_mode=padding_mode, stride=2, modes=modes
            )
        else:
            self.conv = None

    def forward(self, x: Tensor) -> Tensor:
        """Downsample ``x`` of shape (N, C, H, W) to (N, C, ceil(H/2), ceil(W/2))."""
        if self.conv is not None:
            return self.conv(x)
        return F.avg_pool2d(x, 2, ceil_mode=True)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to a given size, optionally followed by a 3x3 conv.

    Parameters
    ----------
    channels : int
    resample : {"conv", "fixed"}, default "conv"
        ``"conv"``: follow the interpolation with a learned 3x3 conv.
    padding_mode : {"zeros", "circular"}, default "zeros"
    modes : (int, int) or None, default None
        With ``resample="conv"``, use a :class:`~models.DualConv2d`.

    Examples
    --------
    >>> import torch
    >>> from models._blocks import Upsample
    >>> Upsample(4)(torch.randn(1, 4, 8, 8), (15, 16)).shape
    torch.Size([1, 4, 15, 16])
    """

    def __init__(
        self,
        channels: int,
        *,
        resample: str = "conv",
        padding_mode: str = "zeros",
        modes: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.resample = resample
        if resample == "conv":
            self.conv: nn.Module | None = conv3x3(
                channels, channels, padding_mode=padding_mode, modes=modes
            )
        else:
            self.conv = None

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """Upsample ``x`` of shape (N, C, h, w) to (N, C, *size)."""
        x = F.interpolate(x, size=tuple(size), mode="nearest")
        return x if self.conv is None else self.conv(x)
