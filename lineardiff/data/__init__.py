"""Embedded data sets: critical 2-D Ising configurations and their exact reference values."""

from ._exact import T_C, exact_energy_per_site, transfer_matrix_energy
from .ising import (
    SAMPLER_VERSION,
    default_spacing,
    energy_per_site,
    ising_dataset,
    magnetization,
    wolff_configurations,
)

__all__ = [
    "SAMPLER_VERSION",
    "T_C",
    "default_spacing",
    "energy_per_site",
    "exact_energy_per_site",
    "ising_dataset",
    "magnetization",
    "transfer_matrix_energy",
    "wolff_configurations",
]
