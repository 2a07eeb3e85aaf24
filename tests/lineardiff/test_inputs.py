"""Bad input to processes and samplers: a clear error naming the argument, or a correct result -
never a silent wrong answer (issue 15's probe)."""

import numpy as np
import pytest
import torch
from error_tables import raises_test

from lineardiff import (
    DDPM,
    SKILD,
    LinearDiffusion,
    PowerSpectrumFit,
    ScaleSpaceDiffusion,
    TrainConfig,
    ancestral_sample,
    as_denoiser,
    dct_mode_variance,
    denoising_loss,
    generate,
    loss_weight,
    respace,
    sample_timesteps,
    skild_upscale,
    super_resolve,
    train,
    training_target,
    upscale,
)
from lineardiff.data import energy_per_site, magnetization


def _skild():
    return SKILD((1, 8, 8), PowerSpectrumFit(C=1.0, k0=1.0, alpha=2.0), T=20)


@pytest.mark.parametrize("make", [lambda: DDPM((1, 8, 8), T=50), _skild])
def test_integer_images_are_converted_not_zeroed(make):
    p = make()
    noise = torch.randn(4, 1, 8, 8)
    got = p.q_sample(torch.ones(4, 1, 8, 8, dtype=torch.long), 10, noise)
    want = p.q_sample(torch.ones(4, 1, 8, 8), 10, noise)
    assert got.dtype == torch.get_default_dtype()
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # the same float computation


@pytest.mark.parametrize("make", [lambda: DDPM((1, 8, 8), T=50), _skild,
                                  lambda: ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=50)])
@pytest.mark.parametrize("t", [3.7, torch.tensor(3.7), True, torch.tensor([2.0, 3.0])])
def test_float_timesteps_are_refused_not_truncated(make, t):
    p = make()
    with pytest.raises(TypeError, match=r"q_sample: expected t as (an int|integers), got"):
        p.q_sample(torch.zeros(2, 1, 8, 8), t)


def test_timestep_rules_for_posterior_and_ranges():
    p = DDPM((1, 8, 8), T=50)
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(TypeError, match=r"DDPM.posterior: expected an integer t in \[1, 50\], got 5.5"):
        p.posterior(x, x, 5.5, 2)
    with pytest.raises(ValueError, match=r"q_sample: expected t in \[0, 50\], got 51"):
        p.q_sample(x, 51)
    with pytest.raises(ValueError, match=r"q_sample: expected t in \[0, 50\], got values from 1 to 60"):
        p.q_sample(x, torch.tensor([1, 60]))
    # an integer tensor is fine and equals the per-sample ints
    noise = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(p.q_sample(x + 1, torch.tensor([3, 3]), noise),
                               p.q_sample(x + 1, 3, noise))


def test_data_checks_of_q_sample():
    p = DDPM((1, 8, 8), T=50)
    with pytest.raises(ValueError, match=r"DDPM.q_sample: expected a non-empty batch x0"):
        p.q_sample(torch.zeros(0, 1, 8, 8), 3)
    bad = torch.zeros(2, 1, 8, 8)
    bad[1, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"expected finite x0, got 1 NaN or inf value \(the first at index \(1, 0, 2, 3\)\)"):
        p.q_sample(bad, 3)
    with pytest.raises(TypeError, match=r"expected x0 as float32 or float64 .* got torch.float16"):
        p.q_sample(torch.zeros(2, 1, 8, 8, dtype=torch.float16), 3)
    with pytest.raises(TypeError, match=r"expected x0 as a torch.Tensor, got ndarray"):
        p.q_sample(torch.zeros(2, 1, 8, 8).numpy(), 3)


def test_sampler_arguments():
    p = DDPM((1, 4, 4), T=20)
    oracle = lambda x, t, shape: torch.zeros(x.shape[0], *shape)  # noqa: E731
    with pytest.raises(ValueError, match=r"ancestral_sample: expected clip in \(0, inf\), got -1.0"):
        ancestral_sample(oracle, p, 2, clip=-1.0, progress=False)
    with pytest.raises(ValueError, match=r"ancestral_sample: expected clip in \(0, inf\), got nan"):
        ancestral_sample(oracle, p, 2, clip=float("nan"), progress=False)
    with pytest.raises(TypeError, match=r"ancestral_sample: expected timesteps as an int, got 15.7"):
        ancestral_sample(oracle, p, 2, timesteps=[20, 15.7, 1], progress=False)
    with pytest.raises(ValueError, match=r"ancestral_sample: expected n >= 1, got -2"):
        ancestral_sample(oracle, p, -2, progress=False)
    with pytest.raises(TypeError, match=r"ancestral_sample: expected n as an int, got 2.0"):
        ancestral_sample(oracle, p, 2.0, progress=False)
    with pytest.raises(TypeError, match=r"ancestral_sample: expected generator as a torch.Generator or None, got int"):
        ancestral_sample(oracle, p, 2, generator=123, progress=False)
    with pytest.raises(ValueError, match=r"ancestral_sample: expected x_T of shape \(2, 1, 4, 4\) \(n samples at state 20\), got \(3, 1, 4, 4\)"):
        ancestral_sample(oracle, p, 2, x_T=torch.zeros(3, 1, 4, 4), progress=False)
    nan_model = lambda x, t, shape: torch.full((x.shape[0], *shape), float("nan"))  # noqa: E731
    with pytest.raises(ValueError, match=r"ancestral_sample: expected finite model output at t=20, got 32 NaN"):
        ancestral_sample(nan_model, p, 2, progress=False)
    with pytest.raises(ValueError, match=r"DDPM.prior_sample: expected n >= 1, got -1"):
        p.prior_sample(-1)


def test_upscale_arguments():
    p = ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)
    oracle = lambda x, t, shape: torch.zeros(x.shape[0], *shape)  # noqa: E731
    y = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"upscale: expected num_steps in \[1, 20\], got 0"):
        upscale(oracle, p, y, num_steps=0, progress=False)
    with pytest.raises(TypeError, match=r"upscale: expected y as a tensor, got ndarray"):
        upscale(oracle, p, y.numpy(), progress=False)
    y[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"upscale: expected finite y, got 1 NaN or inf value"):
        upscale(oracle, p, y, progress=False)
    assert respace(p, 5)[0] == 20


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(steps=True), TypeError, r"TrainConfig: expected steps as an int, got True"),
    (dict(steps=1e9), TypeError, r"TrainConfig: expected steps as an int, got 1000000000.0"),
    (dict(steps="10"), TypeError, r"TrainConfig: expected steps as an int, got '10'"),
    (dict(steps=10, batch_size=2.5), TypeError, r"TrainConfig: expected batch_size as an int, got 2.5"),
    (dict(steps=10, seed=2**63), ValueError, r"TrainConfig: expected seed in \[0, 9223372036854775807\]"),
    (dict(steps=10, prediction="x0"), ValueError, r"TrainConfig: expected prediction 'signal', 'eps' or None, got 'x0'"),
    (dict(steps=10, loss_floor=5.5), ValueError, r"TrainConfig: expected loss_floor in \[0, 5\], got 5\.5"),
    (dict(steps=10, loss_floor="1"), TypeError, r"TrainConfig: expected loss_floor as a real number, got '1'"),
])
def test_train_config_refuses_wrong_kinds(kwargs, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("make, message", [
    (lambda: DDPM((1, -8, 8)), r"DDPM: expected shape of positive ints, got \(1, -8, 8\) \(entry 1 is -8\)"),
    (lambda: DDPM((1, 0, 8)), r"DDPM: expected shape of positive ints, got \(1, 0, 8\)"),
    (lambda: LinearDiffusion([float("nan")], [None], [0.0, 1.0], (1, 4, 4)), r"LinearDiffusion: expected scale c_1 in \(-inf, inf\), got nan"),
    (lambda: LinearDiffusion([float("inf")], [None], [0.0, 1.0], (1, 4, 4)), r"LinearDiffusion: expected scale c_1 in \(-inf, inf\), got inf"),
    (lambda: DDPM((1, 4, 4), T=10).posterior(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 4, 4), 5, 4), r"DDPM.posterior: expected x0 with the batch size of x_t \(2\), got 3"),
    (lambda: ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=10).q_sample(torch.zeros(2, 1, 8, 8, device="meta"), 3), r"q_sample: expected x0 with data, got a meta tensor"),
])
def test_process_construction_and_posterior_inputs(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --------------------------------------------------------------------------------------------
# One table of bad inputs across the public API (issue 15's second probe): each row is
# (call, exception, message regex); a wrong kind is a TypeError, a wrong value a ValueError,
# the message "where: expected X, got Y".

_NAN = float("nan")
_X = torch.zeros(2, 1, 8, 8)
_ORACLE = lambda x, t, shape: torch.zeros(x.shape[0], *shape)  # noqa: E731


def _ddpm():
    return DDPM((1, 8, 8), T=50)


def _ssd():
    return ScaleSpaceDiffusion((1, 8, 8), n_levels=2, T=20)


def _unet():
    import models

    return models.UNet(1, base_channels=8, channel_mult=(1,), num_res_blocks=1,
                       attention_levels=(), num_groups=4)


class _FakeModel:  # what generate / super_resolve need of a TrainedModel, with a DDPM
    process = DDPM((1, 8, 8), T=10)
    denoiser = staticmethod(_ORACLE)
    prediction = "signal"


def _with_nan(x, index):
    x = x.clone()
    x[index] = _NAN
    return x


BAD_INPUTS = [
    # process construction
    (lambda: DDPM(8), TypeError, r"DDPM: expected shape as a sequence of positive ints such as \(1, 32, 32\), got 8"),
    (lambda: DDPM((1, 8, 8), T=3, betas=torch.full((2,), 0.1)), ValueError, r"DDPM: expected T equal to len\(betas\) = 2 \(or T left out\), got T=3"),
    (lambda: DDPM((1, 8, 8), betas=torch.full((2, 2), 0.1)), ValueError, r"DDPM: expected betas of shape \(T,\), got \(2, 2\)"),
    (lambda: DDPM((1, 8, 8), T=2.5), TypeError, r"linear_betas: expected T as an int, got 2.5"),
    (lambda: SKILD((1, 8, 8), PowerSpectrumFit(C=1.0, k0=1.0, alpha=2.0), k_c=-1.0), ValueError, r"SKILD: expected k_c in \[0, inf\), got -1.0"),
    (lambda: SKILD((1, 8.5, 8), PowerSpectrumFit(C=1.0, k0=1.0, alpha=2.0)), ValueError, r"SKILD: expected shape of positive ints, got \(1, 8.5, 8\) \(entry 1 is 8.5\)"),
    (lambda: SKILD((1, 8, 8), PowerSpectrumFit(C=1.0, k0=1.0, alpha=2.0), T=0), ValueError, r"SKILD: expected T >= 1, got 0"),
    (lambda: PowerSpectrumFit(C=-1.0, k0=1.0, alpha=2.0), ValueError, r"PowerSpectrumFit: expected C in \(0, inf\), got -1.0"),
    (lambda: PowerSpectrumFit(C=1.0, k0=1.0, alpha=_NAN), ValueError, r"PowerSpectrumFit: expected alpha in \(-inf, inf\), got nan"),
    # q_sample, posterior, prior_sample
    (lambda: _ddpm().q_sample(_X, 3, _with_nan(_X, (1, 0, 2, 3))), ValueError, r"DDPM.q_sample: expected finite noise, got 1 NaN or inf value \(the first at index \(1, 0, 2, 3\)\)"),
    (lambda: _ddpm().q_sample(_X, 3, _X.half()), TypeError, r"DDPM.q_sample: expected noise as float32 or float64 .*got torch.float16"),
    (lambda: _ssd().q_sample(_X.to(torch.complex64), 3), TypeError, r"ScaleSpaceDiffusion.q_sample: expected a real x0, got torch.complex64"),
    (lambda: _ddpm().posterior(_with_nan(_X, (0, 0, 0, 1)), _X, 5, 3), ValueError, r"DDPM.posterior: expected finite x_t, got 1 NaN or inf value \(the first at index \(0, 0, 0, 1\)\)"),
    (lambda: _ddpm().posterior(_X, _X.half(), 5, 3), TypeError, r"DDPM.posterior: expected x0 as float32 or float64 .*got torch.float16"),
    (lambda: _skild().posterior(_X, _X.numpy(), 5, 3), ValueError, r"SKILD.posterior: expected signal_s of shape \(N, \*\(1, 8, 8\)\), got ndarray"),
    (lambda: _skild().posterior(_X.bfloat16(), _X, 5, 3), TypeError, r"SKILD.posterior: expected x_t as float32 or float64 .*got torch.bfloat16"),
    (lambda: _ddpm().prior_sample(2, dtype=torch.long), TypeError, r"DDPM.prior_sample: expected dtype as torch.float32 or torch.float64 .*got torch.int64"),
    (lambda: _ddpm().prior_sample(2, device="cuda:99"), ValueError, r"DDPM.prior_sample: expected device among the available devices \(.*\), got 'cuda:99'"),
    (lambda: _ddpm().prior_sample(2, device="meta"), ValueError, r"DDPM.prior_sample: expected device among the available devices \(.*\), got 'meta'"),
    # samplers
    (lambda: ancestral_sample(3, _ddpm(), 2, progress=False), TypeError, r"ancestral_sample: expected model as a callable, got int"),
    (lambda: ancestral_sample(_ORACLE, _ddpm(), 2, timesteps=5, progress=False), TypeError, r"ancestral_sample: expected timesteps as a sequence of ints \(see respace\), got 5"),
    (lambda: ancestral_sample(_ORACLE, _ddpm(), 2, dtype=torch.float16, progress=False), TypeError, r"ancestral_sample: expected dtype as torch.float32 or torch.float64 .*got torch.float16"),
    (lambda: ancestral_sample(_ORACLE, _ddpm(), 2, dtype="float32", progress=False), TypeError, r"ancestral_sample: expected dtype as torch.float32 or torch.float64 .*got 'float32'"),
    (lambda: ancestral_sample(_ORACLE, _ddpm(), 2, device="cuda:99", progress=False), ValueError, r"ancestral_sample: expected device among the available devices \(.*\), got 'cuda:99'"),
    (lambda: ancestral_sample(_ORACLE, _ddpm(), 2, device="gpu", progress=False), ValueError, r"ancestral_sample: expected device such as 'cpu' or 'cuda:0', got 'gpu'"),
    (lambda: ancestral_sample(_ORACLE, _ddpm(), 2, x_T=_X.half(), progress=False), TypeError, r"ancestral_sample: expected x_T as float32 or float64 .*got torch.float16"),
    (lambda: ancestral_sample(_ORACLE, _ddpm(), 2, x_T=_X.to("meta"), progress=False), ValueError, r"ancestral_sample: expected x_T with data, got a meta tensor"),
    (lambda: ancestral_sample(_ORACLE, _ddpm(), 2, callback=3, progress=False), TypeError, r"ancestral_sample: expected callback as a callable or None, got int"),
    (lambda: ancestral_sample(_ORACLE, _ddpm(), 2, guide="x", progress=False), TypeError, r"ancestral_sample: expected guide as a callable or None, got str"),
    (lambda: ancestral_sample(_ORACLE, _ddpm(), 2, progress="no"), TypeError, r"ancestral_sample: expected progress as True or False, got 'no'"),
    (lambda: ancestral_sample(lambda x, t, s: torch.zeros(x.shape[0], *s, dtype=torch.complex64), _ddpm(), 2, progress=False), TypeError, r"ancestral_sample: expected a real model output at t=50, got torch.complex64"),
    (lambda: upscale(_ORACLE, _ssd(), torch.zeros(2, 1, 4, 4, dtype=torch.float16), progress=False), TypeError, r"upscale: expected y as float32 or float64 .*got torch.float16"),
    (lambda: upscale(_ORACLE, _ssd(), torch.zeros(2, 1, 4, 4, dtype=torch.complex64), progress=False), TypeError, r"upscale: expected a real y, got torch.complex64"),
    (lambda: upscale(_ORACLE, _ssd(), torch.zeros(2, 1, 4, 4, device="meta"), progress=False), ValueError, r"upscale: expected y with data, got a meta tensor"),
    (lambda: upscale(_ORACLE, _ssd(), torch.zeros(2, 1, 4, 4), ilvr="yes", progress=False), TypeError, r"upscale: expected ilvr as True or False, got 'yes'"),
    (lambda: upscale(_ORACLE, _ssd(), torch.zeros(2, 1, 4, 4), generator=5, progress=False), TypeError, r"upscale: expected generator as a torch.Generator or None, got int"),
    (lambda: skild_upscale(_ORACLE, _skild(), torch.zeros(2, 1, 4, 4), tau=-1.0, progress=False), ValueError, r"skild_upscale: expected tau in \(0, inf\), got -1.0"),
    (lambda: skild_upscale(_ORACLE, _skild(), torch.zeros(2, 1, 4, 4), tau=_NAN, progress=False), ValueError, r"skild_upscale: expected tau in \(0, inf\), got nan"),
    # objectives
    (lambda: training_target(_ddpm(), _X, torch.tensor([2.0, 3.0]), _X), TypeError, r"training_target: expected t as integers, got a torch.float32 tensor"),
    (lambda: training_target(_ddpm(), _X, 0, _X), ValueError, r"training_target: expected t in \[1, 50\], got 0"),
    (lambda: training_target(_ddpm(), _X, 3, torch.zeros(2, 1, 4, 4), prediction="eps"), ValueError, r"training_target: expected noise of shape \(2, 1, 8, 8\), got \(2, 1, 4, 4\)"),
    (lambda: loss_weight(_ddpm(), torch.tensor([-1])), ValueError, r"loss_weight: expected t in \[1, 50\], got values from -1 to -1"),
    (lambda: denoising_loss(3, _ddpm(), _X, torch.tensor([3, 4])), TypeError, r"denoising_loss: expected model as a callable, got int"),
    (lambda: sample_timesteps(_ddpm(), 2.0), TypeError, r"sample_timesteps: expected batch_size as an int, got 2.0"),
    (lambda: sample_timesteps(_ddpm(), 4, generator=1), TypeError, r"sample_timesteps: expected generator as a torch.Generator or None, got int"),
    (lambda: as_denoiser(3), TypeError, r"as_denoiser: expected net as a torch.nn.Module, got int"),
    (lambda: dct_mode_variance(_with_nan(torch.zeros(4, 8, 8), (2, 1, 1))), ValueError, r"dct_mode_variance: expected finite data, got 1 NaN or inf value \(the first at index \(2, 1, 1\)\)"),
    # training
    (lambda: train(3, _ddpm(), _X, TrainConfig(steps=1), progress=False), TypeError, r"train: expected net as a torch.nn.Module with parameters, got int"),
    (lambda: train(_unet(), _ddpm(), _X, {"steps": 1}, progress=False), TypeError, r"train: expected config as a TrainConfig \(lineardiff.TrainConfig\(steps=...\)\), got dict"),
    (lambda: train(_unet(), _ddpm(), _X.to("meta"), TrainConfig(steps=1), progress=False), ValueError, r"train: expected data holding values, got a meta tensor"),
    (lambda: train(_unet(), _ddpm(), _X, TrainConfig(steps=1), checkpoint=3, progress=False), TypeError, r"train: expected checkpoint as a str, Path or None, got int"),
    # generation with a trained model
    (lambda: generate(_unet(), 2, progress=False), TypeError, r"generate: expected model as a TrainedModel \(lineardiff.pretrained.load_model\), got UNet"),
    (lambda: generate(_FakeModel(), 2, seed=-1, progress=False), ValueError, r"generate: expected seed in \[0, 9223372036854775807\], got -1"),
    (lambda: generate(_FakeModel(), 2, seed=2**63, progress=False), ValueError, r"generate: expected seed in \[0, 9223372036854775807\], got 9223372036854775808"),
    (lambda: generate(_FakeModel(), 2, spin_flip=2, progress=False), TypeError, r"generate: expected spin_flip as True or False, got 2"),
    (lambda: super_resolve(_FakeModel(), torch.zeros(2, 1, 4, 4, dtype=torch.float16), progress=False), TypeError, r"super_resolve: expected y as float32 or float64 .*got torch.float16"),
    (lambda: super_resolve(_FakeModel(), torch.zeros(0, 1, 4, 4), progress=False), ValueError, r"super_resolve: expected at least one input, got y of shape \(0, 1, 4, 4\)"),
    # metrics and data
    (lambda: energy_per_site(np.ones((2, 4, 4), dtype=np.complex64)), TypeError, r"energy_per_site: expected configs as a real numeric array, got dtype complex64"),
    (lambda: magnetization(np.array([[None, 1], [1, 1]], dtype=object)), TypeError, r"magnetization: expected configs as a real numeric array, got dtype object"),
]
test_bad_inputs = raises_test(BAD_INPUTS)


def test_loads_accepted_after_the_probe():
    """What the checks must not refuse: explicit betas with their T, integer data converted,
    a half-precision model output widened to the state's dtype (autocast)."""
    assert DDPM((1, 4, 4), T=3, betas=torch.full((3,), 0.1)).T == 3
    assert DDPM((1, 4, 4), betas=[0.1, 0.2]).T == 2
    half = lambda x, t, s: torch.zeros(x.shape[0], *s, dtype=torch.float16)  # noqa: E731
    out = ancestral_sample(half, _ssd(), 2, progress=False)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 8, 8)
    y = upscale(_ORACLE, _ssd(), torch.zeros(2, 1, 4, 4, dtype=torch.long), progress=False)
    assert y.dtype == torch.get_default_dtype()
