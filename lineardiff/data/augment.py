"""Random exact symmetries of a batch: sign flip, the 8 lattice symmetries, periodic shifts.

For data whose law is invariant under a group of transformations - critical Ising on a
periodic square lattice is invariant under all three below - each training sample can be
replaced by a random image of itself under the group at no cost in correctness: the
network sees the same distribution, with every orbit filled. Which groups apply is the
user's statement about the data (photographs are not invariant under sign flip or rotation).
"""

from __future__ import annotations

import torch

from .._checks import check_generator

__all__ = ["SYMMETRIES", "check_symmetries", "random_symmetries"]

#: the groups :func:`random_symmetries` knows, in the order they are applied
SYMMETRIES = ("sign", "dihedral", "translate")


def check_symmetries(where: str, name: str, value) -> tuple[str, ...]:
    """``value`` as a tuple of distinct names from :data:`SYMMETRIES`, in their order."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{where}: expected {name} as a list of names from {list(SYMMETRIES)}, got "
            f"{type(value).__name__} {value!r}"
        )
    for v in value:
        if v not in SYMMETRIES:
            raise ValueError(f"{where}: expected {name} entries from {list(SYMMETRIES)}, got {v!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{where}: expected each entry of {name} once, got {list(value)}")
    return tuple(s for s in SYMMETRIES if s in value)


def random_symmetries(x: torch.Tensor, symmetries, *, generator=None) -> torch.Tensor:
    """Each sample of ``x`` under an independent uniformly random element of the groups.

    Parameters
    ----------
    x : Tensor, shape (N, C, H, W)
    symmetries : list of str
        Any of ``"sign"`` (``x -> -x``, probability 1/2), ``"dihedral"`` (one of the 4
        rotations by 90 degrees, each with or without a mirror; needs ``H == W``) and
        ``"translate"`` (a periodic shift by a uniform ``(dy, dx)``).
    generator : torch.Generator, optional
        On ``x``'s device; torch's global generator when omitted.

    Returns
    -------
    Tensor, shape (N, C, H, W)
        A new tensor (``x`` is not modified).

    Raises
    ------
    ValueError
        For an unknown group name, ``x`` not 4-D, or ``"dihedral"`` on non-square images.

    Examples
    --------
    >>> import torch
    >>> from lineardiff.data import random_symmetries
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> y = random_symmetries(x, ["dihedral"], generator=torch.Generator().manual_seed(0))
    >>> sorted(y.flatten().tolist())  # the same values, possibly moved
    [0.0, 1.0, 2.0, 3.0]
    """
    where = "random_symmetries"
    groups = check_symmetries(where, "symmetries", symmetries)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{where}: expected x of shape (N, C, H, W), got {got}")
    check_generator(where, "generator", generator)
    n, _, h, w = x.shape
    if "dihedral" in groups and h != w:
        raise ValueError(f"{where}: 'dihedral' needs square images, got H x W = {h} x {w}")
    dev = x.device

    def draw(high, size):
        return torch.randint(0, high, size, generator=generator, device=dev)

    out = x.clone()
    if "sign" in groups:
        out = out * (1 - 2 * draw(2, (n,))).to(x.dtype).reshape(n, 1, 1, 1)
    if "dihedral" in groups:
        element = draw(8, (n,))
        moved = out.clone()
        for e in range(1, 8):
            sel = (element == e).nonzero().flatten()
            if sel.numel():
                part = out[sel]
                if e >= 4:
                    part = part.flip(-1)
                moved[sel] = torch.rot90(part, e % 4, dims=(-2, -1))
        out = moved
    if "translate" in groups:
        dy, dx = draw(h, (n,)), draw(w, (n,))
        rows = (torch.arange(h, device=dev) + dy[:, None]) % h  # (N, H)
        cols = (torch.arange(w, device=dev) + dx[:, None]) % w  # (N, W)
        out = out.gather(2, rows[:, None, :, None].expand(out.shape))
        out = out.gather(3, cols[:, None, None, :].expand(out.shape))
    return out
