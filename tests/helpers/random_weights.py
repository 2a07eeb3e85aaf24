"""Networks with random weights, for tests that need every path of a network to matter.

A new :mod:`models` network outputs zeros (its head is zero-initialised, as in ADM), which
hides everything a test could compare; :func:`randomise` replaces every parameter by seeded
Gaussian noise.
"""

from __future__ import annotations

import torch

__all__ = ["randomise"]


def randomise(module: torch.nn.Module, *, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Replace every parameter of ``module`` by ``N(0, std^2)`` noise, in place; returns it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return module
