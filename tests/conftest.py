"""Shared pytest configuration."""

import os

import torch
from hypothesis import HealthCheck, settings

# Two cores: one intra-op thread per test process keeps runs predictable.
torch.set_num_threads(int(os.environ.get("LINEARDIFF_TEST_THREADS", "1")))

# The default run (and CI) draws the same examples every time, so a red run is reproducible;
# HYPOTHESIS_PROFILE=thorough explores 300 fresh examples per property.
settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
