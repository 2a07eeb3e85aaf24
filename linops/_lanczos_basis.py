"""The storage of the Krylov basis of a batched Lanczos run.

In-place chunks reused from one run to the next (and :func:`clear_workspace` to free
them) for runs that autograd does not record, and a list of tensors that it records for
runs whose operator's tensors require grad.
"""

from __future__ import annotations

import torch

#: the chunks of the last finished basis, reused by the next run of the same (B, n, dtype,
#: device): first writes to fresh memory page-fault, which cost as much as the matvec at 64 px
_SPARE: dict[tuple, list[torch.Tensor]] = {}
SPARE_BYTES = 1 << 30  # a finished basis larger than this is freed, not kept


def clear_workspace() -> None:
    """Free the Krylov-basis memory that Lanczos keeps for its next call.

    :func:`linops.funm` (method ``"lanczos"``) keeps the storage of its last Krylov basis
    (at most 1 GiB) and reuses it when the next call has the same batch shape, dtype and
    device: writing to freshly allocated memory page-faults, which on a CPU costs as much
    as the structured matvec itself. Call this to give the memory back. Runs that record
    gradients never use or keep this storage.

    Examples
    --------
    >>> import linops
    >>> linops.clear_workspace()
    """
    _SPARE.clear()


class _Basis:
    """The Krylov vectors of every right-hand side, in chunks that are never copied.

    Chunk ``i`` is a ``(c_i, B, n)`` tensor, so each vector slot is one contiguous
    ``(B, n)`` block: the matvec and the three-term update read and write unit-stride
    rows (a ``(B, c_i, n)`` layout made every slot strided, and torch's ``vecdot`` ran 6x
    slower on it). The reorthogonalisation and the final combination contract over the
    chunks. Chunks double the capacity, so there are ``O(log k)`` of them. Vectors are
    written in place: this storage is for runs that autograd does not record.
    """

    def __init__(self, first: torch.Tensor, capacity: int):
        self.capacity = capacity
        B, n = first.shape
        self.key = (B, n, first.dtype, first.device)
        # reused storage, taken so no one else shares it; never storage that joined a graph
        self.spare = [c for c in _SPARE.pop(self.key, []) if not c.requires_grad]
        self.chunks: list[torch.Tensor] = [self._new_chunk(min(16, capacity))]
        self.size = 0
        self.append(first)

    def _new_chunk(self, grow: int) -> torch.Tensor:
        if self.spare and self.spare[0].shape[0] == grow:
            return self.spare.pop(0)
        self.spare = []  # a different growth pattern: allocate from here on
        B, n, dtype, device = self.key
        return torch.empty((grow, B, n), dtype=dtype, device=device)

    def release(self) -> None:
        """Hand the storage to the next run (see :func:`clear_workspace`)."""
        chunks = [c for c in self.chunks if c.device.type == "cpu"]  # CUDA has a caching allocator
        if (
            chunks
            and not any(c.requires_grad for c in chunks)
            and sum(c.numel() * c.element_size() for c in chunks) <= SPARE_BYTES
        ):
            _SPARE.clear()
            _SPARE[self.key] = chunks
        self.chunks = []

    def append(self, q: torch.Tensor) -> None:
        self.next_slot().copy_(q)

    def last(self) -> torch.Tensor:
        """The ``(B, n)`` view of the newest vector."""
        start = 0
        for c in self.chunks:
            if self.size - 1 < start + c.shape[0]:
                return c[self.size - 1 - start]
            start += c.shape[0]
        raise IndexError("empty basis")

    def next_slot(self) -> torch.Tensor:
        """The ``(B, n)`` view that holds the next vector (counted as appended)."""
        used = sum(c.shape[0] for c in self.chunks)
        if self.size == used:
            grow = min(max(16, used), self.capacity - used)
            self.chunks.append(self._new_chunk(grow))
            used += grow
        last = self.chunks[-1]
        slot = last[self.size - (used - last.shape[0])]
        self.size += 1
        return slot

    def views(self, k: int):
        """``(chunk, start)`` pairs covering the first ``k`` vectors, chunks ``(m, B, n)``."""
        start = 0
        for c in self.chunks:
            if start >= k:
                break
            yield c[: min(c.shape[0], k - start)], start
            start += c.shape[0]

    def orthogonalise(self, w: torch.Tensor, k: int) -> torch.Tensor:
        """``w - Q_k Q_k^T w`` (classical Gram-Schmidt, one pass)."""
        # bmm on the (B, m, n) transposed views: no copy, ~1.6x einsum's speed
        hs = [torch.bmm(c.transpose(0, 1), w.unsqueeze(2)) for c, _ in self.views(k)]
        for (c, _), h in zip(self.views(k), hs, strict=True):
            w = w - torch.bmm(h.transpose(1, 2), c.transpose(0, 1)).squeeze(1)
        return w

    def combine(self, coef: torch.Tensor) -> torch.Tensor:
        """``Q_k c`` for coefficients ``(B, k)``."""
        out = None
        for c, start in self.views(coef.shape[1]):
            part = torch.bmm(
                coef[:, start : start + c.shape[0]].unsqueeze(1), c.transpose(0, 1)
            ).squeeze(1)
            out = part if out is None else out.add_(part)
        return out


class _GraphBasis:
    """The Krylov vectors as a list of tensors that autograd records (no in-place writes).

    Used when the operator's tensors require grad: the run is backpropagated through, so
    every vector stays alive for the backward pass (memory ``O(k B n)``, plus ``k B n``
    per step that orthogonalises against the whole basis).
    """

    def __init__(self, first: torch.Tensor, capacity: int):
        self.vectors = [first]

    @property
    def size(self) -> int:
        return len(self.vectors)

    def append(self, q: torch.Tensor) -> None:
        self.vectors.append(q)

    def last(self) -> torch.Tensor:
        return self.vectors[-1]

    def release(self) -> None:
        pass

    def stacked(self, k: int) -> torch.Tensor:
        return torch.stack(self.vectors[:k], 1)

    def orthogonalise(self, w: torch.Tensor, k: int) -> torch.Tensor:
        Q = self.stacked(k)  # noqa: N806
        h = torch.bmm(Q, w.unsqueeze(2))
        return w - torch.bmm(Q.transpose(1, 2), h).squeeze(2)

    def combine(self, coef: torch.Tensor) -> torch.Tensor:
        return torch.bmm(coef.unsqueeze(1), self.stacked(coef.shape[1])).squeeze(1)
