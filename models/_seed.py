"""Reproducible initialisation: build modules under a local seed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ._checks import check_seed

__all__ = ["seeded"]


@contextlib.contextmanager
def seeded(seed: int | None, where: str) -> Iterator[None]:
    """Run the body with the global CPU generator seeded, then restore its state.

    Module constructors draw their initial weights from the global generator;
    forking it makes two models built with the same seed identical without
    changing the random stream the caller sees. ``seed=None`` leaves the
    global generator alone, so draws continue from it.
    """
    if seed is None:
        yield
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{where}: expected seed as an int or None, got {seed!r}")
    check_seed(where, "seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
