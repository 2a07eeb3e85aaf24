"""Schedules against closed forms recomputed in numpy, exact integer routes and cited values."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lineardiff import (
    alphas_cumprod,
    bd_alpha_sigma,
    bd_blur_sigma,
    bd_dissipation,
    convex_decay_levels,
    cosine_betas,
    equal_levels,
    linear_betas,
    min_snr_weight,
    pyramid,
    skild_alphabar,
    skild_effective_band,
    skild_lambda,
    skild_wavenumber2,
    truncated_cosine_logsnr,
)

# Closed forms evaluated in float64 by numpy and by torch differ only by libm rounding of a
# few operations: 1e-13 relative is ~500 ulps of room.
RTOL = 1e-13


# --------------------------------------------------------------------------------------------
# noise schedules
# --------------------------------------------------------------------------------------------


def test_linear_betas_match_numpy():
    b = linear_betas(1000)
    assert b.dtype == torch.float64 and b.shape == (1000,)
    np.testing.assert_allclose(b.numpy(), np.linspace(1e-4, 0.02, 1000), rtol=RTOL, atol=0)
    np.testing.assert_allclose(
        linear_betas(10, beta_start=0.1, beta_end=0.5).numpy(), np.linspace(0.1, 0.5, 10)
    )
    assert linear_betas(1).tolist() == [1e-4]


def _cosine_betas_reference(T, s, max_beta):
    # improved DDPM's betas_for_alpha_bar: f(0) cancels in the ratio, so it is not divided out
    def f(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return np.array([min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)])


@pytest.mark.parametrize("T, s, max_beta", [(1000, 0.008, 0.999), (50, 0.0, 0.5), (7, 0.1, 1.0)])
def test_cosine_betas_match_reference(T, s, max_beta):
    b = cosine_betas(T, s=s, max_beta=max_beta)
    assert b.dtype == torch.float64 and b.shape == (T,)
    # the last ratio divides two tiny cosines: 1e-10 absolute covers their cancellation
    np.testing.assert_allclose(
        b.numpy(), _cosine_betas_reference(T, s, max_beta), rtol=1e-12, atol=1e-10
    )
    assert b.max().item() <= max_beta


@pytest.mark.parametrize("betas", [linear_betas(1000), cosine_betas(1000)], ids=["linear", "cos"])
def test_alphas_cumprod_matches_numpy_and_decreases(betas):
    ab = alphas_cumprod(betas)
    np.testing.assert_allclose(ab.numpy(), np.cumprod(1 - betas.numpy()), rtol=1e-12, atol=0)
    assert bool((ab[1:] < ab[:-1]).all())
    assert 0 <= ab[-1] < ab[0] < 1


def test_alphas_cumprod_keeps_dtype():
    b = linear_betas(1000).float()
    ab = alphas_cumprod(b)
    assert ab.dtype == torch.float32
    # the product runs in float64, so only the final rounding to float32 remains
    want = np.cumprod(1 - b.double().numpy())
    np.testing.assert_allclose(ab.numpy(), want, rtol=2e-7, atol=0)


def test_ddpm_cosine_alphabar_is_the_normalised_cosine():
    # alphabar_t = f(t) / f(0), for t < T (the clipped last step aside)
    T, s = 100, 0.008
    ab = alphas_cumprod(cosine_betas(T, s=s)).numpy()
    t = np.arange(1, T)
    f = np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2 / np.cos(s / (1 + s) * np.pi / 2) ** 2
    np.testing.assert_allclose(ab[:-1], f, rtol=1e-12)


def test_min_snr_weight():
    snr = torch.tensor([0.0, 0.5, 5.0, 80.0, math.inf], dtype=torch.float64)
    assert min_snr_weight(snr).tolist() == [0.0, 0.5, 5.0, 5.0, 5.0]
    assert min_snr_weight(snr, gamma=1.0).tolist() == [0.0, 0.5, 1.0, 1.0, 1.0]
    w = min_snr_weight(snr.float())
    assert w.dtype == torch.float32
    # a floor lifts only the high-noise end (SNR below it); gamma still caps the top
    assert min_snr_weight(snr, floor=1.0).tolist() == [1.0, 1.0, 5.0, 5.0, 5.0]
    assert min_snr_weight(snr, gamma=2.0, floor=2.0).tolist() == [2.0] * 5


# --------------------------------------------------------------------------------------------
# resolution schedules
# --------------------------------------------------------------------------------------------


def _runs(levels):
    """[(level, first t, last t)] of a non-increasing level sequence."""
    out = []
    for t, lv in enumerate(levels.tolist()):
        if out and out[-1][0] == lv:
            out[-1][2] = t
        else:
            out.append([lv, t, t])
    return [tuple(r) for r in out]


def test_convex_decay_design_boundaries():
    # the SSD paper's schedule, 4 levels at 64 px, T = 1000
    lv = convex_decay_levels(1000, 4)
    assert lv.dtype == torch.long and lv.shape == (1000,)
    assert _runs(lv) == [(3, 0, 437), (2, 438, 749), (1, 750, 936), (0, 937, 999)]
    res = pyramid(64, 4)
    assert [res[i] for i in lv[[0, 437, 438, 749, 750, 936, 937, 999]].tolist()] == [
        64, 64, 32, 32, 16, 16, 8, 8
    ]  # fmt: skip


def test_convex_decay_cited_six_levels_and_gamma_2():
    # background/diffusion-systems.md section 3.2, computed with the SSD code's float rule:
    # 256:[0,305] 128:[306,554] 64:[555,749] 32:[750,888] 16:[889,971] 8:[972,999].
    # We differ at t = 888 only, on purpose: 1 - 888/999 = 1/9 exactly, so x = 1 - 1/3 and
    # x n = 4 exactly, which floor puts at the coarser level (16 px). SSD's Python floats give
    # x n = 3.9999999999999996 there and keep 32 px.
    assert _runs(convex_decay_levels(1000, 6)) == [
        (5, 0, 305), (4, 306, 554), (3, 555, 749), (2, 750, 887), (1, 888, 971), (0, 972, 999)
    ]  # fmt: skip
    assert 999 - 888 == 999 // 9 and int((1 - (1 - 888 / 999) ** 0.5) * 6) == 3
    # ConvexDecay_2, 4 levels: the finest level only for t <= 133
    assert _runs(convex_decay_levels(1000, 4, gamma=2.0))[0] == (3, 0, 133)


def _levels_exact(T, n, gamma):
    """The same rule in integer arithmetic: floor(x n) >= k  <=>  (1 - tau)^gamma <= (n - k) / n."""
    M = T - 1
    out = []
    for t in range(T):
        m = M - t  # (1 - tau) = m / M
        if gamma == 0.5:  # sqrt(m / M) <= (n - k) / n
            hits = [m * n * n <= (n - k) ** 2 * M for k in range(1, n)]
        elif gamma == 1.0:
            hits = [m * n <= (n - k) * M for k in range(1, n)]
        else:  # gamma == 2: (m / M)^2 <= (n - k) / n
            hits = [m * m * n <= (n - k) * M * M for k in range(1, n)]
        out.append(n - 1 - sum(hits))
    return out


@given(
    T=st.one_of(st.integers(2, 300), st.sampled_from([17, 65, 257, 1000, 1025, 4097])),
    n=st.integers(1, 8),
    gamma=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_convex_decay_matches_exact_integer_route(T, n, gamma):
    # Includes T - 1 divisible by n^2 (T = 17, 65, 257, 1025, 4097 with n = 2, 4, 8), where
    # boundaries fall exactly on timesteps: those must go to the coarser level.
    assert convex_decay_levels(T, n, gamma=gamma).tolist() == _levels_exact(T, n, gamma)


def test_convex_decay_exact_boundary_goes_coarser():
    # T = 17, gamma = 1/2, n = 4: x = 1 - sqrt(1 - t/16) is exactly 1/4, 1/2, 3/4 at t = 7, 12, 15
    assert _runs(convex_decay_levels(17, 4)) == [(3, 0, 6), (2, 7, 11), (1, 12, 14), (0, 15, 16)]


@pytest.mark.parametrize("T, n", [(1000, 4), (1000, 1), (3, 5), (1, 3), (2, 2)])
def test_convex_decay_properties(T, n):
    lv = convex_decay_levels(T, n, gamma=0.7)
    assert lv.shape == (T,)
    assert lv[0] == n - 1  # finest at t = 0
    assert bool((lv[1:] <= lv[:-1]).all())
    assert lv.min() >= 0 and lv.max() <= n - 1
    if T > 1:
        assert lv[-1] == 0


@given(T=st.integers(1, 400), n=st.integers(1, 9))
def test_equal_levels(T, n):
    lv = equal_levels(T, n)
    assert lv.dtype == torch.long
    assert lv.tolist() == convex_decay_levels(T, n, gamma=1.0).tolist()
    assert lv[0] == n - 1 and bool((lv[1:] <= lv[:-1]).all())
    counts = torch.bincount(lv, minlength=n)
    assert counts.max() - counts.min() <= 1
    if T % n == 0:
        assert counts.tolist() == [T // n] * n


def test_equal_levels_explicit():
    assert equal_levels(8, 4).tolist() == [3, 3, 2, 2, 1, 1, 0, 0]
    assert _runs(equal_levels(1000, 4)) == [
        (3, 0, 249),
        (2, 250, 499),
        (1, 500, 749),
        (0, 750, 999),
    ]


def test_pyramid():
    assert pyramid(64, 4) == (8, 16, 32, 64)
    assert pyramid(256, 6) == (8, 16, 32, 64, 128, 256)  # SSD's 256 px / 6 levels
    assert pyramid(48, 1) == (48,)
    assert pyramid(48, 5) == (3, 6, 12, 24, 48)


# --------------------------------------------------------------------------------------------
# Blurring Diffusion
# --------------------------------------------------------------------------------------------

T_GRID = np.linspace(0, 1, 101)


def test_logsnr_closed_form_and_endpoints():
    c0 = np.arctan(np.exp(-10 / 2))
    c1 = np.arctan(np.exp(10 / 2)) - c0
    want = -2 * np.log(np.tan(c1 * T_GRID + c0))
    got = truncated_cosine_logsnr(torch.from_numpy(T_GRID))
    np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=1e-13)
    # endpoints: tan(c0) = exp(-l_max / 2) gives l_max; tan(c0 + c1) = exp(-l_min / 2) gives l_min
    ends = truncated_cosine_logsnr(torch.tensor([0.0, 1.0], dtype=torch.float64), l_min=-7, l_max=3)
    np.testing.assert_allclose(ends.numpy(), [3.0, -7.0], rtol=0, atol=1e-12)
    assert bool((got[1:] < got[:-1]).all())


def test_bd_alpha_sigma():
    t = torch.from_numpy(T_GRID)
    a, s = bd_alpha_sigma(t)
    logsnr = truncated_cosine_logsnr(t).numpy()
    np.testing.assert_allclose(a.numpy(), np.sqrt(1 / (1 + np.exp(-logsnr))), rtol=RTOL)
    np.testing.assert_allclose(s.numpy(), np.sqrt(1 / (1 + np.exp(logsnr))), rtol=RTOL)
    np.testing.assert_allclose((a**2 + s**2).numpy(), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose((a**2 / s**2).log().numpy(), logsnr, rtol=0, atol=1e-10)
    assert bool((a[1:] < a[:-1]).all()) and bool((s[1:] > s[:-1]).all())


def test_bd_blur_sigma_increasing():
    sb = bd_blur_sigma(torch.from_numpy(T_GRID), sigma_b_max=20.0)
    np.testing.assert_allclose(sb.numpy(), 20 * np.sin(np.pi * T_GRID / 2) ** 2, rtol=RTOL)
    assert sb[0] == 0 and abs(sb[-1].item() - 20) < 1e-12
    assert bool((sb[1:] > sb[:-1]).all())


@pytest.mark.parametrize("shape", [(8, 8), (5, 7), (1, 3)])
def test_bd_dissipation_closed_form(shape):
    H, W = shape
    t = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    d = bd_dissipation(torch.from_numpy(t), shape, sigma_b_max=20.0, d_min=0.001)
    assert d.shape == (5, H, W) and d.dtype == torch.float64
    i, j = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    lam = (np.pi * i / H) ** 2 + (np.pi * j / W) ** 2
    tau = (20 * np.sin(np.pi * t / 2) ** 2) ** 2 / 2
    want = 0.999 * np.exp(-lam[None] * tau[:, None, None]) + 0.001
    np.testing.assert_allclose(d.numpy(), want, rtol=RTOL, atol=1e-15)
    np.testing.assert_array_equal(d[0].numpy(), 1.0)  # no blur at t = 0
    np.testing.assert_allclose(d[:, 0, 0].numpy(), 1.0, rtol=0, atol=1e-15)  # DC kept


def test_bd_dissipation_monotone():
    d = bd_dissipation(torch.from_numpy(T_GRID), (6, 6))
    nondc = d.flatten(-2)[:, 1:]
    # more blur as t grows: strictly, until exp(-lambda tau) underflows below d_min's ulp
    assert bool((nondc[1:] <= nondc[:-1]).all())
    live = nondc[:-1] - 0.001 > 1e-12
    assert bool((nondc[1:] < nondc[:-1])[live].all()) and bool(live[:10].all())
    # and at fixed t (0.05: before the high modes reach d_min), lower at higher frequency
    assert bool((d[5, 1:, :] < d[5, :-1, :]).all()) and bool((d[5, :, 1:] < d[5, :, :-1]).all())
    assert d.min() >= 0.001


def test_bd_dtype_and_scalar_t():
    d = bd_dissipation(torch.tensor([0.3, 0.6]), (4, 4))
    assert d.dtype == torch.float32 and d.shape == (2, 4, 4)
    assert bd_dissipation(0.3, (4, 4)).shape == (4, 4)
    a, s = bd_alpha_sigma(torch.tensor(0.25))
    assert a.dtype == torch.float32 and a.shape == ()
    assert truncated_cosine_logsnr(torch.tensor([0, 1])).dtype == torch.float64  # int t


# --------------------------------------------------------------------------------------------
# SKILD
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "H, lambda_f, theta", [(32, 1.57, 5.0), (128, 102.6489, 5.0), (1, 2.0, 1.0)]
)
def test_skild_lambda_closed_form(H, lambda_f, theta):
    t = np.arange(1001) / 1000
    lam = skild_lambda(torch.from_numpy(t), H, lambda_f=lambda_f, theta=theta)
    lam_i = np.sqrt(2) * np.pi * (H - 1)
    want = theta * t / (lam_i * (1 - t) + lambda_f) ** 2
    np.testing.assert_allclose(lam.numpy(), want, rtol=RTOL, atol=0)
    assert lam[0] == 0
    np.testing.assert_allclose(lam[-1].item(), theta / lambda_f**2, rtol=RTOL)
    assert bool((lam[1:] > lam[:-1]).all())


@pytest.mark.parametrize("H, lambda_i", [(32, 137.7294), (128, 564.2461), (256, 1132.9352)])
def test_skild_lambda_i_matches_the_configs(H, lambda_i):
    # SKILD's configs (background section 4.2) print lambda_i to 4 decimals: rtol 1e-6
    t = torch.tensor([0.25, 0.5], dtype=torch.float64)
    want = 5.0 * t / (lambda_i * (1 - t) + 1.57) ** 2
    torch.testing.assert_close(skild_lambda(t, H), want, rtol=1e-6, atol=0)


def test_skild_wavenumber2():
    k2 = skild_wavenumber2((3, 5))
    u, v = np.meshgrid(np.arange(3), np.arange(5), indexing="ij")
    np.testing.assert_allclose(k2.numpy(), (np.pi * u) ** 2 + (np.pi * v) ** 2, rtol=RTOL)
    assert k2.shape == (3, 5) and k2.dtype == torch.float64
    # the largest |k| of an H x H grid is lambda_i = sqrt(2) pi (H - 1)
    np.testing.assert_allclose(skild_wavenumber2((32, 32)).max().sqrt(), np.sqrt(2) * np.pi * 31)


def test_skild_alphabar_closed_form_and_monotone():
    shape, k_c = (6, 4), 3.0
    t = np.arange(1001) / 1000
    ab = skild_alphabar(torch.from_numpy(t), shape, k_c=k_c)
    assert ab.shape == (1001, 6, 4)
    u, v = np.meshgrid(np.arange(6), np.arange(4), indexing="ij")
    keff2 = np.maximum((np.pi * u) ** 2 + (np.pi * v) ** 2, k_c**2)
    lam_i = np.sqrt(2) * np.pi * 5
    lam = 5.0 * t / (lam_i * (1 - t) + 1.57) ** 2
    want = np.exp(-keff2[None] * lam[:, None, None])
    np.testing.assert_allclose(ab.numpy(), want, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(ab[0].numpy(), 1.0)
    assert bool((ab[1:] < ab[:-1]).all())  # strictly decreasing for every mode (k_c > 0)
    # k_c floors the DC mode: it decays like |k| = 3, not at all
    np.testing.assert_allclose(ab[:, 0, 0].numpy(), np.exp(-9 * lam), rtol=1e-12)


def test_skild_alphabar_cifar_prior_is_pure_noise():
    # background section 4.2: for CIFAR-10, lambda(1) = 2.03 and k_c = 3 give alphabar ~ 1e-8 at DC
    ab = skild_alphabar(1.0, (32, 32))
    assert 1e-8 < ab[0, 0].item() < 2e-8 and ab.max() == ab[0, 0]


def test_skild_alphabar_without_floor_keeps_dc():
    ab = skild_alphabar(torch.tensor([0.5, 1.0], dtype=torch.float64), (4, 4), k_c=0.0)
    np.testing.assert_array_equal(ab[:, 0, 0].numpy(), 1.0)


def test_skild_effective_band_closed_form():
    t = np.arange(1, 1001) / 1000
    r = skild_effective_band(torch.from_numpy(t), 128, tau=0.1, lambda_f=102.6489, theta=5.0)
    lam_i = np.sqrt(2) * np.pi * 127
    lam = 5.0 * t / (lam_i * (1 - t) + 102.6489) ** 2
    want = np.sqrt(np.log(1 + 1 / 0.1) / lam) / (np.sqrt(2) * np.pi)
    np.testing.assert_allclose(r.numpy(), want, rtol=RTOL)
    assert bool((r[1:] < r[:-1]).all())
    assert skild_effective_band(0.0, 128).item() == math.inf


@pytest.mark.parametrize(
    "H, lambda_f, theta, band",
    [(256, 550.8723, 9.0, 64.0), (128, 275.4361, 9.0, 32.0), (128, 102.6489, 5.0, 16.0)],
    ids=["imagenet256_4x", "imagenet128_4x", "imagenet128_8x"],
)
def test_skild_effective_band_ends_at_the_input_band(H, lambda_f, theta, band):
    # SKILD's SR configs choose lambda_f so that r_eff(1) is the LR band (background 4.2);
    # lambda_f is printed to 4 decimals, so r_eff(1) agrees to ~1e-6 relative
    r = skild_effective_band(1.0, H, tau=0.1, lambda_f=lambda_f, theta=theta)
    assert abs(r.item() - band) < 1e-3


def test_skild_effective_band_start_steps():
    # background 4.5 (ImageNet-128 8x config, N = 1000): r_eff <= 64, 48, 32, 24, 16 first at
    # n0 = 613, 720, 848, 921, 1000
    t = torch.arange(1001, dtype=torch.float64) / 1000
    r = skild_effective_band(t, 128, lambda_f=102.6489, theta=5.0)
    n0 = [int(torch.nonzero(r <= band)[0]) for band in (64, 48, 32, 24, 16)]
    assert n0 == [613, 720, 848, 921, 1000]


# --------------------------------------------------------------------------------------------
# argument errors
# --------------------------------------------------------------------------------------------

ERRORS = [
    (lambda: linear_betas(0), ValueError, r"linear_betas: expected T >= 1, got 0"),
    (lambda: linear_betas(10.0), TypeError, r"linear_betas: expected T as an int, got 10\.0"),
    (
        lambda: linear_betas(beta_start=0.0),
        ValueError,
        r"linear_betas: expected beta_start in \(0, 1\), got 0\.0",
    ),
    (
        lambda: linear_betas(beta_start=0.1, beta_end=0.01),
        ValueError,
        r"linear_betas: expected beta_start <= beta_end, got beta_start=0\.1, beta_end=0\.01",
    ),
    (
        lambda: cosine_betas(s=-0.1),
        ValueError,
        r"cosine_betas: expected s in \[0, inf\), got -0\.1",
    ),
    (
        lambda: cosine_betas(max_beta=1.5),
        ValueError,
        r"cosine_betas: expected max_beta in \(0, 1\], got 1\.5",
    ),
    (
        lambda: cosine_betas(max_beta="x"),
        TypeError,
        r"cosine_betas: expected max_beta as a real number, got 'x'",
    ),
    (
        lambda: alphas_cumprod([0.1, 0.2]),
        TypeError,
        r"alphas_cumprod: expected betas as a Tensor, got list",
    ),
    (
        lambda: alphas_cumprod(torch.ones(2, 2)),
        ValueError,
        r"alphas_cumprod: expected betas as a floating 1-D tensor, got shape \(2, 2\)",
    ),
    (
        lambda: alphas_cumprod(torch.tensor([0.1, 0.0])),
        ValueError,
        r"alphas_cumprod: expected every beta in \(0, 1\], got 0\.0",
    ),
    (
        lambda: min_snr_weight(torch.tensor([-1.0])),
        ValueError,
        r"min_snr_weight: expected snr >= 0, got a minimum of -1\.0",
    ),
    (
        lambda: min_snr_weight(torch.tensor([1.0]), gamma=0),
        ValueError,
        r"min_snr_weight: expected gamma in \(0, inf\), got 0\.0",
    ),
    (
        lambda: min_snr_weight(torch.tensor([1.0]), floor=6.0),
        ValueError,
        r"min_snr_weight: expected floor in \[0, 5\], got 6\.0",
    ),
    (
        lambda: min_snr_weight(3.0),
        TypeError,
        r"min_snr_weight: expected snr as a floating tensor, got 3\.0",
    ),
    (
        lambda: pyramid(48, 6),
        ValueError,
        r"pyramid: expected max_res divisible by 2\^\(n_levels - 1\) = 32, got max_res=48",
    ),
    (lambda: pyramid(64, 0), ValueError, r"pyramid: expected n_levels >= 1, got 0"),
    (
        lambda: convex_decay_levels(1000, 4, gamma=0),
        ValueError,
        r"convex_decay_levels: expected gamma in \(0, inf\), got 0\.0",
    ),
    (
        lambda: convex_decay_levels(1000, True),
        TypeError,
        r"convex_decay_levels: expected n_levels as an int, got True",
    ),
    (lambda: equal_levels(-3, 2), ValueError, r"equal_levels: expected T >= 1, got -3"),
    (
        lambda: truncated_cosine_logsnr(1.5),
        ValueError,
        r"truncated_cosine_logsnr: expected t in \[0, 1\], got a value 1\.5",
    ),
    (
        lambda: truncated_cosine_logsnr(torch.tensor([0.5, math.nan])),
        ValueError,
        r"truncated_cosine_logsnr: expected t in \[0, 1\], got a value nan",
    ),
    (
        lambda: truncated_cosine_logsnr("0.5"),
        TypeError,
        r"truncated_cosine_logsnr: expected t as a real tensor or number, got '0\.5'",
    ),
    (
        lambda: truncated_cosine_logsnr(0.5, l_min=10, l_max=-10),
        ValueError,
        r"truncated_cosine_logsnr: expected l_min < l_max, got l_min=10\.0, l_max=-10\.0",
    ),
    (lambda: bd_alpha_sigma(-0.1), ValueError, r"truncated_cosine_logsnr: expected t in \[0, 1\]"),
    (
        lambda: bd_blur_sigma(0.5, sigma_b_max=-1),
        ValueError,
        r"bd_blur_sigma: expected sigma_b_max in \[0, inf\), got -1\.0",
    ),
    (
        lambda: bd_dissipation(0.5, (3, 8, 8)),
        ValueError,
        r"bd_dissipation: expected shape as \(H, W\), got \(3, 8, 8\)\. Pass x\.shape\[-2:\]",
    ),
    (
        lambda: bd_dissipation(0.5, (8, 0)),
        ValueError,
        r"bd_dissipation: expected shape as \(H, W\) of positive ints, got \(8, 0\)",
    ),
    (
        lambda: bd_dissipation(0.5, (8, 8), d_min=1.0),
        ValueError,
        r"bd_dissipation: expected d_min in \[0, 1\), got 1\.0",
    ),
    (lambda: skild_lambda(0.5, 0), ValueError, r"skild_lambda: expected H >= 1, got 0"),
    (
        lambda: skild_lambda(0.5, 32, lambda_f=0.0),
        ValueError,
        r"skild_lambda: expected lambda_f in \(0, inf\), got 0\.0",
    ),
    (
        lambda: skild_lambda(2.0, 32),
        ValueError,
        r"skild_lambda: expected t in \[0, 1\], got a value 2\.0",
    ),
    (
        lambda: skild_lambda(torch.tensor(0.5j), 32),
        TypeError,
        r"skild_lambda: expected t as a real tensor or number, got dtype torch\.complex64",
    ),
    (
        lambda: skild_wavenumber2(32),
        ValueError,
        r"skild_wavenumber2: expected shape as \(H, W\), got 32",
    ),
    (
        lambda: skild_alphabar(0.5, (8, 8), k_c=-1),
        ValueError,
        r"skild_alphabar: expected k_c in \[0, inf\), got -1\.0",
    ),
    (
        lambda: skild_effective_band(0.5, 32, tau=0),
        ValueError,
        r"skild_effective_band: expected tau in \(0, inf\), got 0\.0",
    ),
]


@pytest.mark.parametrize(
    "call, exc, match",
    ERRORS,
    ids=[m.split(":")[0] + f"-{i}" for i, (_, _, m) in enumerate(ERRORS)],
)
def test_argument_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
