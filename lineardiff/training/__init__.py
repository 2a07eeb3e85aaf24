"""Training: the loop, its settings, checkpoints with exact resume, and multi-process runs.

Everything here is re-exported from :mod:`lineardiff`; this room holds the machinery, the
library root holds the maths it trains.
"""

from ._checkpoint import (
    Checkpoint,
    CheckpointError,
    capture_rng,
    check_state_matches,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from ._config import TrainConfig, TrainResult
from ._distributed import DistributedInfo, init_distributed
from ._loop import train

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DistributedInfo",
    "TrainConfig",
    "TrainResult",
    "capture_rng",
    "check_state_matches",
    "init_distributed",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
    "train",
]
