"""Bad input to processes and samplers: a clear error naming the argument, or a correct result -
never a silent wrong answer (issue 15's probe)."""

import pytest
import torch

from lineardiff import (
    DDPM,
    SKILD,
    LinearDiffusion,
    PowerSpectrumFit,
    ScaleSpaceDiffusion,
    TrainConfig,
    ancestral_sample,
    respace,
    upscale,
)


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
