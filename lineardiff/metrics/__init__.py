"""Quality metrics: Ising observables with bootstrap errors and a pass/fail comparison rule;
FID and KID for image data."""

from ._blocks import block_consistency, majority_blocks
from ._curves import (
    CURVES,
    CurveEstimate,
    HotellingResult,
    curve_estimates,
    hotelling,
    hotelling_statistic,
)
from ._features import compute_features
from ._fid import feature_statistics, fid, frechet_distance
from ._fid_kid import FIDKIDResult, fid_kid
from ._inception import (
    INCEPTION_INPUT_RANGE,
    INCEPTION_INPUT_SIZE,
    FeatureExtractor,
    load_inception,
)
from ._kid import KIDResult, kid
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
    "INCEPTION_INPUT_RANGE",
    "INCEPTION_INPUT_SIZE",
    "CURVES",
    "SCALARS",
    "CurveEstimate",
    "FIDKIDResult",
    "FeatureExtractor",
    "HotellingResult",
    "KIDResult",
    "binarize",
    "block_consistency",
    "block_binder",
    "compare",
    "compute_features",
    "curve_estimates",
    "feature_statistics",
    "fid",
    "fid_kid",
    "four_point_connected",
    "frechet_distance",
    "hotelling",
    "hotelling_statistic",
    "kid",
    "load_inception",
    "majority_blocks",
    "radial_correlation",
    "seam_energy",
    "structure_factor",
    "summary",
    "two_point",
]
