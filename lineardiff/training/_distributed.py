"""Multi-process training: the process group under ``torchrun`` and per-step seeds."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DistributedInfo", "init_distributed"]


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process stands in a (possibly one-process) training job.

    Attributes
    ----------
    rank : int
        This process' index, ``0 .. world_size - 1``; rank 0 writes checkpoints and logs.
    world_size : int
        Number of processes (1: a plain single-process run).
    local_rank : int
        Index on this machine (``LOCAL_RANK``); picks the GPU under NCCL.
    backend : str or None
        ``"gloo"``, ``"nccl"``, ... (``None`` when single-process).
    device : torch.device
        ``cuda:LOCAL_RANK`` under NCCL, else the CPU.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"init_distributed: expected an integer environment variable {name}, got {value!r}"
        ) from None


def _info_from_group() -> DistributedInfo:
    backend = str(dist.get_backend())
    rank = dist.get_rank()
    local_rank = _env_int("LOCAL_RANK", rank)
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    return DistributedInfo(rank, dist.get_world_size(), local_rank, backend, device)


def init_distributed(*, backend: str | None = None) -> DistributedInfo:
    """Join the ``torchrun`` process group if there is one; idempotent.

    * A process group is already initialised (by the caller, e.g. with
      ``init_method="file://..."``): describe it.
    * Else ``WORLD_SIZE > 1`` in the environment (set by ``torchrun`` /
      ``python -m torch.distributed.run``, with ``RANK``, ``LOCAL_RANK``,
      ``MASTER_ADDR``, ``MASTER_PORT``): initialise the group from it
      (``init_method="env://"``). Under NCCL the current CUDA device becomes
      ``cuda:LOCAL_RANK``.
    * Else (no variables, or ``WORLD_SIZE=1``): a single-process run; nothing is set up.

    :func:`~lineardiff.train` calls this itself, so a training script needs no
    changes to run under ``torchrun``.

    Parameters
    ----------
    backend : str, optional
        Default ``"nccl"`` when CUDA is available, else ``"gloo"``.

    Returns
    -------
    DistributedInfo

    Examples
    --------
    Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment) a run is single-process:

    >>> import lineardiff
    >>> info = lineardiff.init_distributed()
    >>> info.rank, info.world_size
    (0, 1)
    """
    if backend is not None and not isinstance(backend, str):
        raise TypeError(
            f"init_distributed: expected backend as a str, got {type(backend).__name__}"
        )
    if not dist.is_available():
        return DistributedInfo()
    if dist.is_initialized():
        info = _info_from_group()
        if backend is not None and backend != info.backend:
            raise ValueError(
                f"init_distributed: expected backend {backend!r}, got a process group already "
                f"initialised with {info.backend!r}"
            )
        return info
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistributedInfo()
    rank = _env_int("RANK", -1)
    local_rank = _env_int("LOCAL_RANK", rank)
    if not 0 <= rank < world_size:
        raise ValueError(
            f"init_distributed: expected RANK in 0..{world_size - 1} with WORLD_SIZE={world_size}, "
            f"got {os.environ.get('RANK')!r}; start the job with torchrun"
        )
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size)
    return _info_from_group()


def step_seed(seed: int, *words: int) -> int:
    """A 64-bit seed for one stream, e.g. ``(seed, stream, rank, step)``; decorrelated by
    numpy's ``SeedSequence`` hashing (neighbouring seeds, ranks or steps give unrelated streams,
    unlike ``seed + rank``)."""
    entropy = [int(seed) % (1 << 64), *(int(w) for w in words)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
