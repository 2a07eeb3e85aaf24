"""The ``model(x_t, t, out_shape)`` interface that samplers and training call networks by."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

__all__ = ["as_denoiser"]


def takes_size(net: torch.nn.Module) -> bool:
    return "out_size" in inspect.signature(net.forward).parameters


def denoiser_of(module, takes_size: bool) -> Callable:
    def model(x, t, out_shape):
        if takes_size:
            return module(x, t, out_size=tuple(out_shape[-2:]))
        return module(x, t)

    return model


def as_denoiser(net: torch.nn.Module) -> Callable:
    """Adapt a network to the ``model(x_t, t, out_shape)`` interface of samplers and training.

    Networks with an ``out_size`` argument (``models.FlexiUNet``) get the requested output
    size; the others are called as ``net(x_t, t)`` (their output has the input's size).

    Examples
    --------
    >>> import torch, models, lineardiff
    >>> net = models.UNet(1, base_channels=8, channel_mult=(1, 2), attention_levels=(),
    ...                   num_groups=4)
    >>> lineardiff.as_denoiser(net)(torch.zeros(2, 1, 8, 8), torch.tensor([1, 2]), (1, 8, 8)).shape
    torch.Size([2, 1, 8, 8])
    """
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"as_denoiser: expected net as a torch.nn.Module, got {type(net).__name__}")
    model = denoiser_of(net, takes_size(net))
    model.net = net
    return model
