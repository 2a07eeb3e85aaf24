"""random_symmetries: outputs are group images of the inputs, the elements are uniform, the
Ising observables are invariant, bad input is refused with the argument named."""

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from lineardiff.data import energy_per_site, magnetization, random_symmetries, wolff_configurations


def _orbit(img):
    """Every image of ``img`` (H, W) under sign x dihedral x translations."""
    out = []
    for sign, e, dy, dx in itertools.product(
        (1, -1), range(8), range(img.shape[0]), range(img.shape[1])
    ):
        y = img.flip(-1) if e >= 4 else img
        y = torch.rot90(y, e % 4, dims=(-2, -1))
        out.append(sign * torch.roll(y, (-dy, -dx), dims=(-2, -1)))
    return torch.stack(out)


def test_each_output_is_in_its_inputs_orbit():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 4, 4, generator=g)  # generic: no two orbit elements coincide
    y = random_symmetries(x, ["sign", "dihedral", "translate"], generator=g)
    for xi, yi in zip(x, y, strict=True):
        orbit = _orbit(xi[0])
        assert bool((orbit == yi[0]).flatten(1).all(1).any())
    assert not torch.equal(x, y)


def test_group_elements_are_uniform():
    # one asymmetric 3 x 3 image, 8000 draws: the 8 dihedral elements, the 2 signs and the
    # 9 shifts each a chi-square test at p > 1e-3 (a fixed seed; a biased draw, e.g. an
    # element never chosen, gives p ~ 0)
    x = torch.arange(9.0).reshape(1, 1, 3, 3).expand(8000, 1, 3, 3) + 1
    g = torch.Generator().manual_seed(1)
    y = random_symmetries(x, ["dihedral"], generator=g)
    images = [torch.rot90(x[0, 0].flip(-1) if e >= 4 else x[0, 0], e % 4) for e in range(8)]
    counts = [int((y[:, 0] == im).flatten(1).all(1).sum()) for im in images]
    assert sum(counts) == 8000 and stats.chisquare(counts).pvalue > 1e-3
    s = random_symmetries(x, ["sign"], generator=g)
    assert stats.binomtest(int((s[:, 0, 0, 0] < 0).sum()), 8000).pvalue > 1e-3
    t = random_symmetries(x, ["translate"], generator=g)
    corner = t[:, 0, 0, 0].long()  # the value now at (0, 0) names the shift
    assert stats.chisquare(np.bincount(corner.numpy(), minlength=10)[1:]).pvalue > 1e-3


def test_ising_observables_are_invariant():
    # an independent route: the energy per site and the magnetisation of periodic Ising
    # configurations are invariant under all three groups (|m| under sign flip), exactly
    s = torch.as_tensor(wolff_configurations(8, 50, seed=3), dtype=torch.float32)
    s = s.reshape(50, 1, 8, 8)
    y = random_symmetries(s, ["sign", "dihedral", "translate"], generator=torch.Generator())
    e0, e1 = energy_per_site(s[:, 0].numpy()), energy_per_site(y[:, 0].numpy())
    np.testing.assert_array_equal(e0, e1)
    m0, m1 = magnetization(s[:, 0].numpy()), magnetization(y[:, 0].numpy())
    np.testing.assert_array_equal(np.abs(m0), np.abs(m1))


def test_input_is_not_modified_and_empty_list_copies():
    x = torch.randn(3, 2, 5, 5)
    before = x.clone()
    y = random_symmetries(x, [])
    assert torch.equal(x, before) and torch.equal(y, x) and y.data_ptr() != x.data_ptr()
    random_symmetries(x, ["sign", "translate"])
    assert torch.equal(x, before)


def test_bad_input_is_refused():
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(
        ValueError,
        match=r"random_symmetries: expected symmetries entries from "
        r"\['sign', 'dihedral', 'translate'\], got 'rotate'",
    ):
        random_symmetries(x, ["rotate"])
    with pytest.raises(TypeError, match=r"expected symmetries as a list of names .* got str"):
        random_symmetries(x, "sign")
    with pytest.raises(ValueError, match=r"expected each entry of symmetries once"):
        random_symmetries(x, ["sign", "sign"])
    with pytest.raises(ValueError, match=r"expected x of shape \(N, C, H, W\), got \(4, 4\)"):
        random_symmetries(torch.zeros(4, 4), ["sign"])
    with pytest.raises(ValueError, match=r"'dihedral' needs square images, got H x W = 4 x 6"):
        random_symmetries(torch.zeros(2, 1, 4, 6), ["dihedral"])
    random_symmetries(torch.zeros(2, 1, 4, 6), ["sign", "translate"])  # fine when not square
    with pytest.raises(TypeError, match=r"expected generator as a torch.Generator"):
        random_symmetries(x, ["sign"], generator=0)
