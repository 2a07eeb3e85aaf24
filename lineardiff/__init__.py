"""The generalized linear diffusion family ``x_t = A_t x_0 + noise``.

DDPM, VE, Blurring Diffusion, Scale Space Diffusion and SKILD as operator
choices of one process, built on :mod:`linops`: exact posteriors, ancestral
sampling with respacing, super-resolution, training targets and timestep samplers.

The library root holds the process family and its maths; the machinery around it lives in
named rooms: :mod:`lineardiff.training` (the loop, checkpoints, multi-process runs),
:mod:`lineardiff.metrics`, :mod:`lineardiff.data` and :mod:`lineardiff.app` (the command
line and everything it writes). Every public name is importable from here.
"""

from ._calibration import BandCalibration, band_calibration
from ._denoiser import as_denoiser
from ._entry import EntryCalibration, calibrated_view, fit_entry_calibration
from ._generate import generate, super_resolve
from ._guidance import BlockMeanVariance, block_mean_variance, block_sign_likelihood
from ._members import DDPM, VE, BlurringDiffusion, ScaleSpaceDiffusion, custom
from ._objectives import (
    default_prediction,
    denoising_loss,
    loss_weight,
    sample_timesteps,
    training_target,
)
from ._process import DiffusionProcess, LinearDiffusion, Posterior
from ._sampling import ancestral_sample, respace, skild_upscale, upscale
from ._schedules import (
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
    truncated_cosine_logsnr,
)
from ._signal_mse import SignalMSE, measure_signal_mse
from ._skild import SKILD, DiagonalPosterior
from ._skild_schedules import (
    skild_alphabar,
    skild_effective_band,
    skild_lambda,
    skild_wavenumber2,
)
from ._spectrum import PowerSpectrumFit, dct_mode_variance, fit_power_spectrum, power_law_spectrum
from ._twisted import TwistedSampleResult, twisted_sample
from .training import (
    Checkpoint,
    CheckpointError,
    DistributedInfo,
    TrainConfig,
    TrainResult,
    capture_rng,
    check_state_matches,
    init_distributed,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    train,
)

__all__ = [
    "BandCalibration",
    "BlockMeanVariance",
    "BlurringDiffusion",
    "Checkpoint",
    "CheckpointError",
    "DDPM",
    "DiagonalPosterior",
    "DiffusionProcess",
    "DistributedInfo",
    "EntryCalibration",
    "LinearDiffusion",
    "Posterior",
    "PowerSpectrumFit",
    "SKILD",
    "ScaleSpaceDiffusion",
    "SignalMSE",
    "TrainConfig",
    "TrainResult",
    "TwistedSampleResult",
    "VE",
    "alphas_cumprod",
    "ancestral_sample",
    "as_denoiser",
    "band_calibration",
    "bd_alpha_sigma",
    "bd_blur_sigma",
    "bd_dissipation",
    "block_mean_variance",
    "block_sign_likelihood",
    "calibrated_view",
    "capture_rng",
    "check_state_matches",
    "convex_decay_levels",
    "cosine_betas",
    "custom",
    "dct_mode_variance",
    "default_prediction",
    "denoising_loss",
    "equal_levels",
    "fit_entry_calibration",
    "fit_power_spectrum",
    "generate",
    "init_distributed",
    "linear_betas",
    "load_checkpoint",
    "loss_weight",
    "measure_signal_mse",
    "min_snr_weight",
    "power_law_spectrum",
    "pyramid",
    "respace",
    "restore_rng",
    "sample_timesteps",
    "save_checkpoint",
    "skild_alphabar",
    "skild_effective_band",
    "skild_lambda",
    "skild_upscale",
    "skild_wavenumber2",
    "super_resolve",
    "train",
    "training_target",
    "truncated_cosine_logsnr",
    "twisted_sample",
    "upscale",
]

__version__ = "0.1.0"
