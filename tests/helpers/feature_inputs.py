"""Stand-in feature networks, images and feature sets for the FID / KID tests.

The networks are tiny (a random conv net; a "probe" that returns its input; a network with the
StyleGAN2-ADA ``return_features`` convention), saved as TorchScript where a test needs the file
route of the real Inception network.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from lineardiff.metrics import FeatureExtractor

__all__ = [
    "FlagNet",
    "Probe",
    "correlated",
    "images",
    "probe",
    "random_spd",
    "save_script",
    "tiny_net",
]


def tiny_net(seed=0, out=6):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Conv2d(8, out, 3, stride=2),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )


class Probe(torch.nn.Module):
    """Returns its input, flattened: shows exactly what the network is fed."""

    def forward(self, x):
        return x.flatten(1)


class FlagNet(torch.nn.Module):
    """The StyleGAN2-ADA / clean-fid calling convention: ``forward(img, return_features)``."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        if return_features:
            return torch.stack([img.amin(dim=(1, 2, 3)), img.amax(dim=(1, 2, 3))], dim=1)
        return torch.zeros(img.shape[0], 1008)


def save_script(module, path):
    with warnings.catch_warnings():
        # TorchScript is deprecated in torch 2.13; the feature networks in circulation are it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def images(n, c=3, h=12, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, c, h, w), generator=g) * 2 - 1


def probe(size, *, input_range=(0.0, 1.0), in_channels=3, resize="tf1_bilinear"):
    return FeatureExtractor(
        Probe(), input_size=size, input_range=input_range, in_channels=in_channels, resize=resize
    )


def random_spd(d, rng, lo=0.1, hi=3.0):
    """Symmetric positive definite matrix with a chosen spectrum in [lo, hi]."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * rng.uniform(lo, hi, d)) @ q.T


def correlated(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = np.eye(d) + 0.3 * rng.standard_normal((d, d))
    return rng.standard_normal((n, d)) @ mix + shift
