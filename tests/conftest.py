"""Shared pytest configuration."""

import os

import torch
from hypothesis import HealthCheck, settings

# Two cores: one intra-op thread per test process keeps runs predictable.
torch.set_num_threads(int(os.environ.get("LINEARDIFF_TEST_THREADS", "1")))

settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
