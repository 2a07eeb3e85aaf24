"""Processes declare what they can do; no module outside a member names that member's class."""

import ast
import copy
import importlib
import pathlib
import random

import numpy as np
import pytest
import torch

import lineardiff
import linops
import models
from lineardiff import (
    DDPM,
    SKILD,
    PowerSpectrumFit,
    ScaleSpaceDiffusion,
    TrainConfig,
    ancestral_sample,
    as_denoiser,
    custom,
    denoising_loss,
    loss_weight,
    respace,
    train,
    upscale,
)

TINY = dict(base_channels=8, channel_mult=(1, 2), attention_levels=(), num_groups=4)
ROOT = pathlib.Path(lineardiff.__file__).parent


def _shrinking_custom(T=12):
    """A user's own process whose resolution halves at step 6 (an SSD-like pyramid)."""
    R = linops.Resize((1, 8, 8), (4, 4))
    steps = [None] * 5 + [R] + [None] * (T - 6)
    sigmas = torch.linspace(0.05, 0.6, T).tolist()
    return custom(steps, sigmas, (1, 8, 8))


def test_capabilities_of_the_members():
    ssd = ScaleSpaceDiffusion((1, 16, 16), n_levels=3, T=60)
    ddpm = DDPM((1, 8, 8), T=20)
    skild = SKILD((1, 8, 8), PowerSpectrumFit(C=1.0, k0=1.0, alpha=2.0), T=20)
    assert (ssd.changes_shape, ssd.default_prediction, ssd.sr_sizes) == (True, "signal", (4, 8))
    assert (ddpm.changes_shape, ddpm.default_prediction, ddpm.sr_sizes) == (False, "eps", ())
    assert (skild.changes_shape, skild.default_prediction, skild.sr_sizes) == (False, "eps", None)
    user = _shrinking_custom()
    assert (user.changes_shape, user.default_prediction, user.sr_sizes) == (True, "signal", (4,))
    assert lineardiff.default_prediction(user) == "signal"


def test_transition_is_the_chain_of_operators():
    p = ScaleSpaceDiffusion((1, 16, 16), n_levels=2, T=20)
    t = next(t for t in range(1, 21) if p.shape_at(t) != p.shape_at(0))
    c, base = p.transition(0, t)
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    # independent route: the dense matrix of the signal operator A_t = c B
    dense = p.signal_operator(t).to_dense(dtype=torch.float64)
    got = c * base.apply(x)
    want = (dense @ x.reshape(3, -1).T).T.reshape(got.shape)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)  # float64 rounding only
    with pytest.raises(ValueError, match=r"transition: expected s <= t, got s=5, t=2"):
        p.transition(5, 2)


def test_signal_target_and_low_res_agree_with_the_chain():
    p = ScaleSpaceDiffusion((1, 16, 16), n_levels=2, T=20)
    x0 = torch.randn(2, 1, 16, 16)
    for t in (1, 5, 20):
        _, base = p.transition(0, t - 1)
        want = x0 if base is None else base.apply(x0)
        torch.testing.assert_close(p.signal_target(x0, t), want)
    low = p.low_res(x0, 8)
    start = next(t for t in range(1, 21) if p.shape_at(t)[-1] == 8)
    torch.testing.assert_close(p.signal_scale(start) * low, p.signal_operator(start).apply(x0))
    with pytest.raises(ValueError, match=r"low_res: expected inputs at one of the process's"):
        p.low_res(x0, 5)
    with pytest.raises(ValueError, match=r"DDPM.low_res: this process has no low-resolution view"):
        DDPM((1, 8, 8), T=10).low_res(x0, 4)
    with pytest.raises(ValueError, match=r"super_resolution_entry: this process has no low-resolution view"):
        DDPM((1, 8, 8), T=10).super_resolution_entry(torch.zeros(1, 1, 4, 4))


def test_a_shape_changing_custom_process_trains_samples_and_super_resolves():
    p = _shrinking_custom()
    net = models.FlexiUNet(1, image_size=8, **TINY)
    data = torch.randn(16, 1, 8, 8).sign()
    res = train(net, p, data, TrainConfig(steps=3, batch_size=4), progress=False)
    assert res.step == 3 and all(np.isfinite(res.losses))
    model = as_denoiser(net)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = ancestral_sample(model, p, 2, timesteps=respace(p, 6), progress=False, generator=gen)
        assert x.shape == (2, 1, 8, 8) and bool(torch.isfinite(x).all())
        y = p.low_res(data[:2], 4)
        up = upscale(model, p, y, generator=gen, progress=False)
        assert up.shape == (2, 1, 8, 8) and bool(torch.isfinite(up).all())


def test_upscale_with_an_oracle_of_a_custom_process_returns_the_truth():
    # a perfect signal predictor: the walk ends at the clean image whose low-res view is y
    p = _shrinking_custom()
    x0 = torch.randn(3, 1, 8, 8, dtype=torch.float64)

    def oracle(x, t, shape):
        s = max(u for u in range(int(t[0])) if p.shape_at(u) == tuple(shape))
        return p.signal_target(x0, s + 1)

    out = upscale(oracle, p, p.low_res(x0, 4), progress=False,
                  generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)  # the last step is the mean: exact


def test_denoising_loss_is_what_train_minimises():
    p = DDPM((1, 8, 8), T=20)
    net = models.UNet(1, **TINY)
    model = as_denoiser(net)
    x0 = torch.randn(4, 1, 8, 8)
    t = torch.tensor([1, 5, 10, 20])
    noise = torch.randn(4, 1, 8, 8)
    got = denoising_loss(model, p, x0, t, noise=noise)
    # independent route: written out from the definitions
    xt = p.q_sample(x0, t, noise)
    want = (model(xt, t, (1, 8, 8)) - noise).square().flatten(1).mean(1).mean()
    torch.testing.assert_close(got, want)
    got.backward()
    assert all(q.grad is not None for q in net.parameters() if q.requires_grad)
    with pytest.raises(ValueError, match=r"denoising_loss: expected t as a tensor of shape \(4,\)"):
        denoising_loss(model, p, x0, 3)


def test_the_loss_floor_weighs_high_noise_signal_targets():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=40)
    net = models.FlexiUNet(1, image_size=8, **TINY)
    model = as_denoiser(net)
    x0 = torch.randn(3, 1, 8, 8)
    t = torch.tensor([p.T] * 3)  # the noisiest state: SNR 2.0 here, below the floor
    assert loss_weight(p, p.T).item() < 2.1
    noise = torch.randn(3, *p.shape_at(p.T))
    got = denoising_loss(model, p, x0, t, noise=noise, weight_floor=5.0)
    # independent route: the weight is the floor, the target the image at the next state
    xt = p.q_sample(x0, t, noise)
    target = p.signal_operator(p.T - 1).apply(x0) / p.signal_scale(p.T - 1)
    want = 5.0 * (model(xt, t, tuple(target.shape[1:])) - target).square().flatten(1).mean(1).mean()
    torch.testing.assert_close(got, want)
    # train reads TrainConfig.loss_floor: a first step (one network, the same batch in both
    # runs) never weighs less with a floor of 5, and more whenever the batch holds a state
    # with SNR < 5 (t >= 27 here; the four seeds draw both kinds of batch)
    data = torch.randn(16, 1, 8, 8).sign()
    net = models.FlexiUNet(1, image_size=8, **TINY)
    pairs = [[train(copy.deepcopy(net), p, data, TrainConfig(steps=1, batch_size=4, seed=s,
                                                             loss_floor=f),
                    progress=False).losses[0] for f in (0.0, 5.0)] for s in range(4)]
    assert all(b >= a for a, b in pairs), pairs
    assert any(b > 1.01 * a for a, b in pairs) and any(b == a for a, b in pairs), pairs


def test_train_leaves_the_callers_random_states_alone():
    net, p, data = models.UNet(1, **TINY), DDPM((1, 8, 8), T=10), torch.randn(8, 1, 8, 8)
    torch.manual_seed(123)
    np.random.seed(7)  # noqa: NPY002 - the global state is what is checked
    random.seed(9)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())  # noqa: NPY002
    train(net, p, data, TrainConfig(steps=2, batch_size=2), progress=False)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1])  # noqa: NPY002
    assert random.getstate() == before[2]


def _all_modules():
    for path in sorted(ROOT.rglob("*.py")):
        yield path.relative_to(ROOT), path


@pytest.mark.parametrize("member, home", [
    ("SKILD", "_skild.py"),
    ("ScaleSpaceDiffusion", "_members.py"),
    ("BlurringDiffusion", "_members.py"),
])
def test_no_module_outside_a_member_branches_on_its_class(member, home):
    """Code (not prose) outside the member's module and the package index never names it."""
    for rel, path in _all_modules():
        if rel.name in (home, "__init__.py") or rel.parts[0] == "app" and rel.name == "config.py":
            continue  # the config maps names to classes: the one registry of members
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert member not in names, f"{rel} names {member}"


PREVIOUS_RELEASE = {
    "lineardiff": [
        "BlurringDiffusion", "Checkpoint", "CheckpointError", "DDPM", "DiagonalPosterior",
        "DiffusionProcess", "DistributedInfo", "VE", "LinearDiffusion", "Posterior",
        "PowerSpectrumFit", "SKILD", "TrainConfig", "TrainResult", "ScaleSpaceDiffusion",
        "alphas_cumprod", "ancestral_sample", "as_denoiser", "bd_alpha_sigma", "bd_blur_sigma",
        "bd_dissipation", "capture_rng", "check_state_matches", "convex_decay_levels",
        "cosine_betas", "custom", "dct_mode_variance", "default_prediction", "equal_levels",
        "fit_power_spectrum", "generate", "init_distributed", "linear_betas", "load_checkpoint",
        "loss_weight", "min_snr_weight", "power_law_spectrum", "pyramid", "respace",
        "restore_rng", "sample_timesteps", "save_checkpoint", "skild_alphabar",
        "skild_effective_band", "skild_lambda", "skild_upscale", "skild_wavenumber2",
        "super_resolve", "train", "training_target", "truncated_cosine_logsnr", "upscale",
    ],
    "lineardiff.pretrained": ["TrainedModel", "export_model", "load_model", "shipped_models"],
    "lineardiff.metrics": None,  # its __all__
    "lineardiff.data": None,
}


@pytest.mark.parametrize("module", sorted(PREVIOUS_RELEASE))
def test_the_public_surface_of_the_previous_release_still_imports(module):
    mod = importlib.import_module(module)
    names = PREVIOUS_RELEASE[module] or mod.__all__
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing
    if module == "lineardiff":
        assert set(names) <= set(mod.__all__)


def test_library_files_stay_small():
    """Every file of the library packages (``linops``, ``models``, ``lineardiff``) is short."""
    for package in (linops, models, lineardiff):
        root = pathlib.Path(package.__file__).parent
        paths = sorted(root.rglob("*.py"))
        assert paths
        for path in paths:
            lines = path.read_text(encoding="utf-8").count("\n")
            assert lines <= 560, f"{path.relative_to(root.parent)} has {lines} lines"
