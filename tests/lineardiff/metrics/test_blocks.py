"""Majority-rule block spins and block consistency.

Protocol and reference values: docs/ising.rst, "Super-resolution protocol".
"""

import numpy as np
from error_tables import raises_test

from lineardiff.data import wolff_configurations
from lineardiff.metrics import block_consistency, majority_blocks


def test_majority_is_the_sign_of_block_sums_and_ties_are_fair_coins():
    rng = np.random.default_rng(0)
    x = rng.choice([-1, 1], size=(400, 8, 8))
    blocks = majority_blocks(x, 2, seed=3)
    sums = x.reshape(400, 4, 2, 4, 2).sum(axis=(2, 4))
    untied = sums != 0
    assert np.array_equal(blocks[untied], np.sign(sums[untied]))
    ties = blocks[~untied]
    # 3/8 of random 2x2 blocks tie: ~2400 ties; a fair coin is within 4 s.e. of 1/2
    assert ties.size > 2000
    assert abs(np.mean(ties == 1) - 0.5) < 4 * 0.5 / np.sqrt(ties.size)
    # the tie-breaks are seeded
    assert np.array_equal(blocks, majority_blocks(x, 2, seed=3))
    assert not np.array_equal(blocks, majority_blocks(x, 2, seed=4))


def test_monte_carlo_block_statistics_match_ising_md():
    # docs/ising.rst, "Super-resolution protocol": for a +1 block of critical L = 32 Monte
    # Carlo, P(4 up) = 0.717, P(3 up) = 0.200, P(tie) = 0.083. With 400 x 256 blocks
    # (correlated within a configuration) the fractions are known to ~0.003; allow 0.01.
    x = wolff_configurations(32, 400, seed=5)
    coarse = majority_blocks(x, 2, seed=0)
    out = block_consistency(x, coarse)
    assert out["consistency"] == 1.0  # the truth agrees with its own untied blocks
    assert abs(out["tied"] - 0.083) < 0.01
    assert abs(out["full_agreement"] - 0.717) < 0.01


def test_block_consistency_counts_disagreements():
    x = np.ones((1, 4, 4))
    coarse = np.array([[[1, -1], [1, 1]]])
    out = block_consistency(x, coarse)
    assert out == {"consistency": 0.75, "tied": 0.0, "full_agreement": 0.75}


test_errors_name_the_problem = raises_test(
    [
        (
            lambda: majority_blocks(np.ones((2, 6, 6)), 4),
            ValueError,
            "majority_blocks: expected a block size dividing L = 6, got 4",
        ),
        (
            lambda: majority_blocks(np.ones((2, 6, 5)), 2),
            ValueError,
            r"majority_blocks: expected configs of shape \(n, L, L\)",
        ),
        (
            lambda: majority_blocks(np.full((1, 4, 4), np.nan)),
            ValueError,
            r"majority_blocks: expected finite configs, got 16 NaN or inf values \(the first at index \(0, 0, 0\)\)",
        ),
        (lambda: majority_blocks(np.ones((1, 4, 4)), 0), ValueError, "majority_blocks: expected b >= 1, got 0"),
        (
            lambda: majority_blocks(np.ones((1, 4, 4)), 2.0),
            TypeError,
            "majority_blocks: expected b as an int, got 2.0",
        ),
        (
            lambda: majority_blocks(np.ones((1, 4, 4)), seed=-1),
            ValueError,
            "majority_blocks: expected seed in \\[0, 9223372036854775807\\], got -1",
        ),
        (
            lambda: block_consistency(np.ones((2, 4, 4)), np.ones((2, 3, 3))),
            ValueError,
            r"block_consistency: expected coarse of shape \(n, L / 2, L / 2\)",
        ),
        (
            lambda: block_consistency(np.ones((2, 4, 4)), np.ones((2, 2, 2)), b="2"),
            TypeError,
            "block_consistency: expected b as an int, got '2'",
        ),
    ]
)
