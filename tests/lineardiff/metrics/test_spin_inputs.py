"""The Ising metrics refuse data that ``sign`` would silently misread (issue 15).

``sign`` turns any real field into spins, so a 0/1 lattice used to come out as all up
(``|m| = 1``, ``e = -2``) - a plausible, wrong answer. Every Ising observable reads its input
through one check: finite values (the count and the first bad index named), and spins +-1
or real values around 0 - not non-negative data with zeros (0/1 occupation numbers, images
in [0, 1]), with the fix (``2 * x - 1``) in the message.
"""

import numpy as np
import pytest
import torch

from lineardiff.metrics import (
    binarize,
    block_binder,
    block_consistency,
    compare,
    curve_estimates,
    four_point_connected,
    hotelling,
    majority_blocks,
    radial_correlation,
    seam_energy,
    structure_factor,
    summary,
    two_point,
)

# Every entry point that reads configurations, with the name its messages use.
OBSERVABLES = [
    ("summary", lambda x: summary(x, n_boot=4)),
    ("two_point", two_point),
    ("radial_correlation", radial_correlation),
    ("structure_factor", structure_factor),
    ("four_point_connected", lambda x: four_point_connected(x, [1])),
    ("block_binder", lambda x: block_binder(x, 2)),
    ("seam_energy", seam_energy),
    ("binarize", binarize),
    (r"compare \(a\)", lambda x: compare(x, -np.ones((2, 4, 4)), n_boot=4)),
    (r"compare \(b\)", lambda x: compare(-np.ones((2, 4, 4)), x, n_boot=4)),
    ("curve_estimates", curve_estimates),
    (r"hotelling \(a\)", lambda x: hotelling(x, -np.ones((2, 4, 4)))),
    ("majority_blocks", majority_blocks),
    ("block_consistency", lambda x: block_consistency(x, -np.ones((2, 2, 2)))),
]
IDS = [name.replace("\\", "") for name, _ in OBSERVABLES]


def occupation(seed=0):
    """A 0/1 lattice (2 configurations, L = 4) holding both values."""
    return np.random.default_rng(seed).integers(0, 2, size=(2, 4, 4))


@pytest.mark.parametrize("name, call", OBSERVABLES, ids=IDS)
def test_zero_one_lattices_are_refused_with_the_fix(name, call):
    for x in (occupation(), occupation().astype(np.float32),
              torch.from_numpy(occupation()).float()):
        with pytest.raises(ValueError, match=(
                rf"^{name}: expected \w+ as spins \+-1 or real values around 0, got only the "
                r"values 0 and 1 \(no -1\); map them to spins with 2 \* x - 1$")):
            call(x)


@pytest.mark.parametrize("name, call", OBSERVABLES, ids=IDS)
def test_boolean_lattices_are_refused(name, call):
    """Booleans are 0/1 data too; the block functions refuse the dtype itself."""
    kind = name in ("majority_blocks", "block_consistency")
    with pytest.raises(TypeError if kind else ValueError, match=(
            rf"^{name}: expected real numbers, got dtype bool$" if kind else
            rf"^{name}: .*got only the values 0 and 1 \(no -1\); map them to spins with 2 \* x - 1$")):
        call(occupation().astype(bool))


@pytest.mark.parametrize("name, call", OBSERVABLES, ids=IDS)
def test_non_negative_data_with_zeros_is_refused(name, call):
    x = np.linspace(0, 0.9, 32).reshape(2, 4, 4)  # an image in [0, 1]: one zero, none negative
    with pytest.raises(ValueError, match=(
            rf"^{name}: expected \w+ as spins \+-1 or real values around 0, got values in "
            r"\[0, 0.9\] with 1 zero and none negative \(0/1 or \[0, 1\] data\?\); map them to "
            r"spins with 2 \* x - 1$")):
        call(x)


@pytest.mark.parametrize("name, call", OBSERVABLES, ids=IDS)
@pytest.mark.parametrize("bad, count", [(np.nan, 1), (np.inf, 1), (-np.inf, 3)])
def test_non_finite_values_are_refused_naming_the_count_and_first_index(name, call, bad,
                                                                       count):
    x = np.ones((2, 4, 4))
    x[1, 2, 3] = bad
    if count > 1:
        x[1, 3, :2] = bad
    plural = "s" if count > 1 else ""
    with pytest.raises(ValueError, match=(
            rf"^{name}: expected finite \w+, got {count} NaN or inf value{plural} \(the first at "
            r"index \(1, 2, 3\)\)$")):
        call(x)


@pytest.mark.parametrize("name, call", OBSERVABLES, ids=IDS)
def test_spins_and_real_values_around_zero_are_accepted(name, call):
    spins = np.ones((2, 4, 4), dtype=np.int8)  # all up is legitimate spin data
    spins[0, 0, 0] = -1
    real = np.random.default_rng(1).normal(size=(2, 4, 4))  # model outputs: both signs
    with_zeros = np.where(real > 0.5, 0.0, real)  # exact zeros beside negatives: ties to +1
    for x in (np.ones((2, 4, 4)), spins, real, with_zeros, np.full((2, 4, 4), 0.2)):
        call(x)


def test_the_issue_case_no_longer_gives_an_ordered_lattice():
    """A 0/1 lattice gave |m| = 1 and e = -2; after 2x - 1 it gives the true values."""
    x = occupation(3)
    with pytest.raises(ValueError, match=r"summary: .* map them to spins with 2 \* x - 1"):
        summary(x, n_boot=4)
    s = 2 * x - 1
    out = summary(s, n_boot=4)
    assert out["abs_m"]["value"] == pytest.approx(np.abs(s.mean(axis=(1, 2))).mean())
    assert out["abs_m"]["value"] < 1
