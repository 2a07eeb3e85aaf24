"""Data sets: critical 2-D Ising configurations with exact reference values, and image sets.

The image loaders read scikit-learn's bundled digits or the user's own PNG / JPEG folder;
nothing is downloaded.
"""

from ._exact import T_C, exact_energy_per_site, transfer_matrix_energy
from .augment import SYMMETRIES, random_symmetries
from .digits import digits_dataset
from .images import image_folder_dataset
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
    "SYMMETRIES",
    "T_C",
    "default_spacing",
    "digits_dataset",
    "energy_per_site",
    "exact_energy_per_site",
    "image_folder_dataset",
    "ising_dataset",
    "magnetization",
    "random_symmetries",
    "transfer_matrix_energy",
    "wolff_configurations",
]
