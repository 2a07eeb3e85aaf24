"""Training targets, loss weights and timestep samplers of the family's members."""

from __future__ import annotations

import torch

from ._members import ScaleSpaceDiffusion
from ._process import DiffusionProcess
from ._schedules import min_snr_weight

__all__ = ["default_prediction", "loss_weight", "sample_timesteps", "training_target"]


def default_prediction(process: DiffusionProcess) -> str:
    """``"signal"`` for Scale Space Diffusion (the clean image at the next resolution),
    ``"eps"`` for the others (DDPM, VE, Blurring Diffusion)."""
    return "signal" if isinstance(process, ScaleSpaceDiffusion) else "eps"


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
    prediction = _prediction(process, prediction, "training_target")
    if prediction == "eps":
        return noise
    if not hasattr(process, "_chain"):
        return x0  # the signal is x0 itself (SKILD)
    ts = t if isinstance(t, torch.Tensor) and t.dim() == 1 else torch.full((x0.shape[0],), int(t))
    shapes = {process.shape_at(int(v) - 1) for v in ts.unique().tolist()}
    if len(shapes) != 1:
        _single_t(ts, "training_target")
    out = x0.new_empty((x0.shape[0], *shapes.pop()))
    for v in ts.unique().tolist():
        rows = (ts.to(x0.device) == v).nonzero().flatten()
        _, base = process._chain(0, int(v) - 1)
        out[rows] = x0[rows] if base is None else base.apply(x0[rows])
    return out


def loss_weight(process, t, *, prediction=None) -> torch.Tensor:
    """Per-sample loss weights: ``min(SNR_t, 5)`` for signal targets (min-SNR-5, SSD), 1 for eps.

    ``SNR_t = a_t^2 / sigma_t^2``.

    Parameters
    ----------
    process : LinearDiffusion
    t : int or Tensor of shape (N,)
    prediction : {"signal", "eps"}, optional

    Returns
    -------
    Tensor, shape (N,) (or () for an int ``t``), float64
    """
    prediction = _prediction(process, prediction, "loss_weight")
    ts = torch.as_tensor(t)
    if prediction == "eps":
        return torch.ones(ts.shape, dtype=torch.float64)
    snr = torch.tensor(
        [process.signal_scale(int(v)) ** 2 / process.sigma(int(v)) ** 2 for v in ts.reshape(-1)]
    )
    return min_snr_weight(snr.to(torch.float64)).reshape(ts.shape)


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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"sample_timesteps: expected batch_size >= 1, got {batch_size!r}")
    T = process.T
    changes = [t for t in range(1, T + 1) if process.shape_at(t) != process.shape_at(t - 1)]
    if group_by_shape is None:
        group_by_shape = bool(changes)
    if not 0 <= transition_fraction <= 1:
        raise ValueError(
            f"sample_timesteps: expected transition_fraction in [0, 1], got {transition_fraction!r}"
        )
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
