"""Quality metrics: Ising observables with bootstrap errors and a pass/fail comparison rule."""

from .ising import (
    SCALARS,
    binarize,
    block_binder,
    compare,
    four_point_connected,
    radial_correlation,
    seam_energy,
    structure_factor,
    summary,
    two_point,
)

__all__ = [
    "SCALARS",
    "binarize",
    "block_binder",
    "compare",
    "four_point_connected",
    "radial_correlation",
    "seam_energy",
    "structure_factor",
    "summary",
    "two_point",
]
