"""What a network learns: targets, loss weights, timestep samplers and the denoising loss."""

from __future__ import annotations

import torch

from ._checks import (
    check_bool,
    check_callable,
    check_generator,
    check_int,
    check_real,
    check_timesteps,
)
from ._process import DiffusionProcess, _as_data, _check_noise
from ._schedules import min_snr_weight

__all__ = [
    "default_prediction",
    "denoising_loss",
    "loss_weight",
    "sample_timesteps",
    "training_target",
]


def default_prediction(process: DiffusionProcess) -> str:
    """The prediction a network of ``process`` learns by default: its
    :attr:`~lineardiff.DiffusionProcess.default_prediction` (``"signal"`` for processes whose
    shape changes, SSD: the clean image at the next resolution; ``"eps"`` for the others)."""
    if not isinstance(process, DiffusionProcess):
        raise TypeError(
            f"default_prediction: expected a diffusion process, got {type(process).__name__}"
        )
    return process.default_prediction


def _prediction(process, prediction, where):
    if not isinstance(process, DiffusionProcess):
        raise TypeError(f"{where}: expected a diffusion process, got {type(process).__name__}")
    prediction = default_prediction(process) if prediction is None else prediction
    if prediction not in ("signal", "eps"):
        raise ValueError(f"{where}: expected prediction 'signal' or 'eps', got {prediction!r}")
    return prediction


def _single_t(t, where) -> int:
    values = t.unique().tolist() if isinstance(t, torch.Tensor) and t.dim() == 1 else [t]
    if len(values) != 1:
        raise ValueError(
            f"{where}: expected one t per batch for a signal target (its shape depends on t), "
            f"got {sorted(values)[:5]}"
        )
    return int(values[0])


def training_target(process, x0, t, noise, *, prediction=None) -> torch.Tensor:
    """What the network should output for ``x_t = q_sample(x0, t, noise)``.

    Parameters
    ----------
    process : LinearDiffusion
    x0 : Tensor, shape (N, \\*shape_at(0))
    t : int or Tensor of shape (N,)
    noise : Tensor, shape (N, \\*shape_at(t))
    prediction : {"signal", "eps"}, optional
        Default :func:`default_prediction`. ``"signal"``: ``B_{0->t-1} x0``, the clean
        image carried to the *next* state (SSD: ``A_{t-1} x0 / a_{t-1}``, at the next
        resolution; a batch must share one ``t`` when that shape varies). ``"eps"``:
        the noise.

    Returns
    -------
    Tensor
    """
    where = "training_target"
    prediction = _prediction(process, prediction, where)
    x0 = _as_data(where, "x0", x0, process.shape_at(0))
    t = _check_batch_t(where, t, process, x0.shape[0])
    if prediction == "eps":
        values = [t] if isinstance(t, int) else t.unique().tolist()
        shapes = {process.shape_at(int(v)) for v in values}
        if len(shapes) != 1:
            _single_t(t, where)
        return _check_noise(where, noise, (x0.shape[0], *shapes.pop()))
    return _target(process, x0, t, noise, prediction)


def _check_batch_t(where, t, process, n):
    """Training timesteps: an int or an integer tensor ``(n,)``, each in ``[1, T]``."""
    t = check_timesteps(where, "t", t, 1, process.T)
    if isinstance(t, torch.Tensor) and t.shape != (n,):
        raise ValueError(f"{where}: expected t of shape ({n},), got {tuple(t.shape)}")
    return t


def _target(process, x0, t, noise, prediction):
    """:func:`training_target` of checked arguments."""
    if prediction == "eps":
        return noise
    ts = t if isinstance(t, torch.Tensor) and t.dim() == 1 else torch.full((x0.shape[0],), int(t))
    shapes = {process.shape_at(int(v) - 1) for v in ts.unique().tolist()}
    if len(shapes) != 1:
        _single_t(ts, "training_target")
    if len(ts.unique()) == 1:
        return process.signal_target(x0, int(ts[0]))
    out = x0.new_empty((x0.shape[0], *shapes.pop()))
    for v in ts.unique().tolist():
        rows = (ts.to(x0.device) == v).nonzero().flatten()
        out[rows] = process.signal_target(x0[rows], int(v))
    return out


def loss_weight(process, t, *, prediction=None, floor: float = 0.0) -> torch.Tensor:
    """Per-sample loss weights: ``min(SNR_t, 5)`` for signal targets (min-SNR-5, SSD), 1 for eps.

    ``SNR_t = a_t^2 / sigma_t^2``; with ``floor`` the signal weights are
    ``max(min(SNR_t, 5), floor)`` (:func:`min_snr_weight`).

    Parameters
    ----------
    process : LinearDiffusion
    t : int or Tensor of shape (N,)
    prediction : {"signal", "eps"}, optional
    floor : float, default 0.0
        Smallest weight of a signal target, in ``[0, 5]`` (ignored for eps targets).

    Returns
    -------
    Tensor, shape (N,) (or () for an int ``t``), float64
    """
    prediction = _prediction(process, prediction, "loss_weight")
    ts = torch.as_tensor(check_timesteps("loss_weight", "t", t, 1, process.T))
    floor = check_real("loss_weight", "floor", floor, low=0.0, high=5.0, open_low=False,
                       open_high=False)
    if prediction == "eps":
        return torch.ones(ts.shape, dtype=torch.float64)
    snr = torch.tensor(
        [process.signal_scale(int(v)) ** 2 / process.sigma(int(v)) ** 2 for v in ts.reshape(-1)]
    )
    return min_snr_weight(snr.to(torch.float64), floor=floor).reshape(ts.shape)


def sample_timesteps(
    process, batch_size: int, *, generator=None, group_by_shape=None,
    transition_fraction: float = 0.0,
) -> torch.Tensor:
    """Draw a batch of training timesteps in ``1..T``.

    Plain: uniform and independent. Grouped (default for processes whose shape
    changes, SSD's Algorithm 4): draw one ``t`` uniformly; if the shape changes at
    ``t`` (a resolution-change step) the whole batch uses it, otherwise every ``t`` is
    drawn uniformly among the non-change steps of the same shape.

    Parameters
    ----------
    process : LinearDiffusion
    batch_size : int
    generator : torch.Generator, optional
    group_by_shape : bool, optional
        Default: True when the shape of the states varies.
    transition_fraction : float, default 0.0
        With grouping: the probability that the batch is drawn at a resolution-change step
        (uniformly among them) before the rule above applies; ``0`` is Algorithm 4 exactly
        and draws no extra random number.

    Returns
    -------
    LongTensor, shape (batch_size,)

    Examples
    --------
    >>> import torch, lineardiff
    >>> p = lineardiff.ScaleSpaceDiffusion((1, 16, 16), n_levels=2, T=100)
    >>> t = lineardiff.sample_timesteps(p, 8, generator=torch.Generator().manual_seed(0))
    >>> len({p.shape_at(int(v)) for v in t})
    1
    """
    if not isinstance(process, DiffusionProcess):
        raise TypeError(
            f"sample_timesteps: expected a diffusion process, got {type(process).__name__}"
        )
    where = "sample_timesteps"
    batch_size = check_int(where, "batch_size", batch_size, 1)
    check_generator(where, "generator", generator)
    transition_fraction = check_real(where, "transition_fraction", transition_fraction, low=0,
                                     high=1, open_low=False, open_high=False)
    T = process.T
    changes = [t for t in range(1, T + 1) if process.shape_at(t) != process.shape_at(t - 1)]
    if group_by_shape is None:
        group_by_shape = bool(changes)
    group_by_shape = check_bool(where, "group_by_shape", group_by_shape)
    if not group_by_shape:
        return torch.randint(1, T + 1, (batch_size,), generator=generator)
    if changes and transition_fraction > 0:
        if float(torch.rand((), generator=generator)) < transition_fraction:
            pick = changes[int(torch.randint(0, len(changes), (1,), generator=generator))]
            return torch.full((batch_size,), pick, dtype=torch.long)
    first = int(torch.randint(1, T + 1, (1,), generator=generator))
    if first in changes:
        return torch.full((batch_size,), first, dtype=torch.long)
    shape = process.shape_at(first)
    pool = torch.tensor(
        [t for t in range(1, T + 1) if process.shape_at(t) == shape and t not in changes]
    )
    return pool[torch.randint(0, len(pool), (batch_size,), generator=generator)]


def denoising_loss(model, process, x0, t, *, prediction=None, noise=None,
                   generator=None, weight_floor: float = 0.0) -> torch.Tensor:
    """The weighted denoising loss of one batch: what :func:`~lineardiff.train` minimises.

    ``x_t = q_sample(x0, t, noise)``, the network's output ``model(x_t, t, shape)`` against
    :func:`training_target`, squared error averaged per sample, weighted by
    :func:`loss_weight` and averaged over the batch.

    Parameters
    ----------
    model : callable
        ``model(x_t, t, out_shape)`` (:func:`~lineardiff.as_denoiser`).
    process : DiffusionProcess
    x0 : Tensor, shape (N, \\*process.shape_at(0))
    t : Tensor, shape (N,)
        Timesteps in ``1..T`` (:func:`sample_timesteps`; when the state's shape varies with
        ``t`` the batch must share one shape).
    prediction : {"signal", "eps"}, optional
        Default :func:`default_prediction`.
    noise : Tensor, shape (N, \\*process.shape_at(t)), optional
        Default: drawn with ``generator``.
    generator : torch.Generator, optional
    weight_floor : float, default 0.0
        :func:`loss_weight`'s ``floor``.

    Returns
    -------
    Tensor, shape ()
        Differentiable with respect to the model's parameters.

    Examples
    --------
    >>> import torch, models, lineardiff
    >>> net = models.UNet(1, base_channels=8, channel_mult=(1, 2), attention_levels=(),
    ...                   num_groups=4)
    >>> p = lineardiff.DDPM((1, 8, 8), T=50)
    >>> loss = lineardiff.denoising_loss(lineardiff.as_denoiser(net), p, torch.randn(4, 1, 8, 8),
    ...                                  torch.tensor([1, 10, 20, 50]))
    >>> loss.shape, bool(loss > 0)
    (torch.Size([]), True)
    """
    where = "denoising_loss"
    prediction = _prediction(process, prediction, where)
    check_callable(where, "model", model)
    x0 = _as_data(where, "x0", x0, process.shape_at(0))
    if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != x0.shape[0]:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(
            f"denoising_loss: expected t as a tensor of shape ({x0.shape[0]},), got {got}"
        )
    t = check_timesteps(where, "t", t, 1, process.T)
    check_generator(where, "generator", generator)
    if noise is None:
        noise = torch.randn((x0.shape[0], *process.shape_at(int(t[0]))), dtype=x0.dtype,
                            generator=generator).to(x0.device)
    x_t = process.q_sample(x0, t, noise)
    target = _target(process, x0, t, noise, prediction)
    weight = loss_weight(process, t, prediction=prediction, floor=weight_floor)
    weight = weight.to(device=x0.device, dtype=x0.dtype)
    out = model(x_t, t.to(x0.device), tuple(target.shape[1:]))
    per_sample = (out - target).square().flatten(1).mean(1)
    return (weight * per_sample).mean()
