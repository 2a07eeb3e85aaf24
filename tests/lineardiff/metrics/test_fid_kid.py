"""FID and KID of two image sets in one call (lineardiff.metrics.fid_kid)."""

import numpy as np
import pytest
import torch
from feature_inputs import images

from lineardiff.metrics import (
    FeatureExtractor,
    FIDKIDResult,
    compute_features,
    fid,
    fid_kid,
    kid,
    load_inception,
)


def test_fid_kid_through_the_file_route(tiny_file):
    ext = load_inception(tiny_file, input_size=(16, 16))
    a, b = images(40, seed=1), 0.5 * images(30, seed=2)
    r = fid_kid(a, b, ext, batch_size=16, kid_subsets=4, kid_subset_size=20, seed=5)
    assert isinstance(r, FIDKIDResult) and (r.n_a, r.n_b, r.feature_dim) == (40, 30, 6)
    assert r.source == str(tiny_file)
    fa, fb = compute_features(a, ext), compute_features(b, ext)
    assert r.fid == pytest.approx(fid(fa, fb), rel=1e-9)
    k = kid(fa, fb, subsets=4, subset_size=20, seed=5)
    assert r.kid == pytest.approx(k.value, rel=1e-9) and r.kid_std == pytest.approx(k.std, rel=1e-9)
    same = fid_kid(a, a, ext, kid_subsets=2)
    assert abs(same.fid) < 1e-10 * np.trace(np.cov(fa, rowvar=False))


class Exploding(torch.nn.Module):
    """Works once (the probe at construction), then fails: nothing may run it after that."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1:
            raise AssertionError("features computed before the options were checked")
        return x.flatten(1)


def test_fid_kid_checks_options_before_computing_features():
    ext = FeatureExtractor(Exploding(), input_size=(2, 2))
    x = torch.zeros(5, 3, 2, 2)
    with pytest.raises(ValueError, match="fid_kid: expected at least 2 images in images_b, got 1"):
        fid_kid(x, x[:1], ext)
    with pytest.raises(
        ValueError, match=r"fid_kid: expected subset_size <= min\(n_a, n_b\) = 5, got 6"
    ):
        fid_kid(x, x, ext, kid_subset_size=6)
    with pytest.raises(ValueError, match=r"fid_kid \(images_a\): expected images of shape"):
        fid_kid(x[0], x, ext)
    with pytest.raises(TypeError, match="fid_kid: expected extractor as a FeatureExtractor"):
        fid_kid(x, x, "inception.pt")
