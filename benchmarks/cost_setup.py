"""What the cost benchmarks of Scale Space Diffusion share: the two settings, the timestep law of
SSD training, the bare training step, and timing hooks that use only public interfaces.

Used by ``bench_costs.py`` (pytest-benchmark) and ``cost_report.py`` (the standalone report).
Two settings, each an SSD process with its Flexi-UNet and the DDPM twin with the plain UNet of
the same blocks and width (the "Full UNet" the paper compares with):

- ``64px``: ``(3, 64, 64)``, 4 levels (64, 32, 16, 8), ConvexDecay_0.5, T = 1000, Algorithm 4
  timestep draws; the network of ``bench_models.py`` (ADM channel_mult (1, 2, 3, 4), two
  ResBlocks per level, attention at 16 and 8 px) at reduced width (32 base channels,
  ``LINEARDIFF_BENCH_WIDTH``), so that a step runs here;
- ``16px``: the shipped configuration ``ising16-ssd`` (3 levels 16/8/4, transition_fraction 0.1,
  batch 64) and its twin, the same ``[model]`` table with ``name = "unet"`` and ``[process]
  name = "ddpm"``.

Nothing in the library is patched: the timesteps that :func:`lineardiff.train` draws are read
by a forward pre-hook on the network (:func:`recording_timesteps`), and the posterior share of
sampling is timed between the denoiser's return and :func:`lineardiff.ancestral_sample`'s
``callback`` (:class:`StepTimer`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import os
import time

import torch

import lineardiff
from lineardiff.app.config import build_model, build_process, load_config
from models import FlexiUNet, UNet, count_flops

WIDTH_64 = int(os.environ.get("LINEARDIFF_BENCH_WIDTH", "32"))
BATCH_64 = int(os.environ.get("LINEARDIFF_BENCH_BATCH", "2"))
BATCH_16 = int(os.environ.get("LINEARDIFF_BENCH_BATCH16", "16"))


# -- the two settings -------------------------------------------------------------------------


@dataclasses.dataclass
class Setting:
    """An SSD process and network with their DDPM twin, and the training/sampling sizes."""

    name: str
    ssd: lineardiff.ScaleSpaceDiffusion
    ddpm: lineardiff.DDPM
    flexi: FlexiUNet
    unet: UNet
    batch: int
    transition_fraction: float
    lr: float
    ema_decay: float
    sample_count: int
    sample_steps: int

    def pair(self, kind: str):
        """``(process, network)`` of ``kind`` ("ssd" or "ddpm")."""
        return (self.ssd, self.flexi) if kind == "ssd" else (self.ddpm, self.unet)


def setting_64(width: int = WIDTH_64, batch: int = BATCH_64, sample_count: int = 2) -> Setting:
    """64 px, 4 levels, the network of ``bench_models.py`` at ``width`` base channels."""
    config = dict(
        base_channels=width,
        channel_mult=(1, 2, 3, 4),
        num_res_blocks=2,
        attention_levels=(2, 3),
        num_heads=4,
        num_groups=32,
    )
    shape = (3, 64, 64)
    return Setting(
        name="64px",
        ssd=lineardiff.ScaleSpaceDiffusion(shape, n_levels=4),
        ddpm=lineardiff.DDPM(shape),
        flexi=FlexiUNet(3, image_size=64, **config),
        unet=UNet(3, **config),
        batch=batch,
        transition_fraction=0.0,  # Algorithm 4 as in the paper
        lr=2e-4,
        ema_decay=0.999,
        sample_count=sample_count,
        sample_steps=20,
    )


def setting_16(batch: int | None = BATCH_16, sample_count: int | None = None) -> Setting:
    """The shipped ``ising16-ssd`` configuration and its DDPM twin (``batch=None``: the config's)."""
    cfg = load_config("ising16-ssd")
    twin = copy.deepcopy(cfg)
    twin["model"]["name"] = "unet"
    twin["process"] = {"name": "ddpm", "T": cfg["process"]["T"]}
    train, sample = cfg["train"], cfg.get("sample", {})
    return Setting(
        name="16px",
        ssd=build_process(cfg),
        ddpm=build_process(twin),
        flexi=build_model(cfg),
        unet=build_model(twin),
        batch=train["batch_size"] if batch is None else batch,
        transition_fraction=train.get("transition_fraction", 0.0),
        lr=train["lr"],
        ema_decay=train["ema_decay"],
        sample_count=sample.get("count", 16) if sample_count is None else sample_count,
        sample_steps=sample.get("steps", 50),
    )


# -- the timestep law of SSD training ----------------------------------------------------------


def route_weights(process, transition_fraction: float = 0.0) -> dict[tuple[int, int], float]:
    """Probability of each route ``(input size, output size)`` of a training batch.

    The law of :func:`lineardiff.sample_timesteps` with grouping: with probability
    ``transition_fraction`` one of the ``n_c`` resolution-change steps uniformly; otherwise one
    ``t`` uniform in ``1..T`` - a change step gives its own route, any other step a batch of the
    non-change steps of its resolution. A batch at ``t`` enters at ``r(t)`` and predicts at
    ``r(t - 1)`` (the clean image at the next resolution). Without resolution changes (DDPM)
    every batch has the one route.
    """
    T = process.T
    size = [process.shape_at(t)[-1] for t in range(T + 1)]
    changes = [t for t in range(1, T + 1) if size[t] != size[t - 1]]
    f = transition_fraction if changes else 0.0
    weights: dict[tuple[int, int], float] = {}
    for t in range(1, T + 1):
        route = (size[t], size[t - 1])
        w = (1 - f) / T + (f / len(changes) if t in changes else 0.0)
        weights[route] = weights.get(route, 0.0) + w
    return dict(sorted(weights.items(), key=lambda kv: (-kv[0][1], -kv[0][0])))


def route_cycle(weights: dict, k: int) -> list[tuple[int, int]]:
    """``k`` routes in the proportions ``weights`` (largest-remainder rounding)."""
    raw = {r: w * k for r, w in weights.items()}
    counts = {r: math.floor(v) for r, v in raw.items()}
    for r in sorted(raw, key=lambda r: raw[r] - counts[r], reverse=True)[
        : k - sum(counts.values())
    ]:
        counts[r] += 1
    return [r for r in weights for _ in range(counts[r])]


def example_t(process, route) -> int:
    """A timestep of ``route`` (the middle one: t only enters the time embedding)."""
    ts = [
        t
        for t in range(1, process.T + 1)
        if (process.shape_at(t)[-1], process.shape_at(t - 1)[-1]) == tuple(route)
    ]
    return ts[len(ts) // 2]


# -- training steps ----------------------------------------------------------------------------


def step_inputs(process, t: torch.Tensor, batch: int, prediction: str, generator=None):
    """Pre-made ``(x_t, t, target)`` of the shapes a training batch at ``t`` has."""
    t0 = int(t[0])
    x = torch.randn(batch, *process.shape_at(t0), generator=generator)
    target_shape = process.shape_at(t0 - 1) if prediction == "signal" else process.shape_at(t0)
    return x, t, torch.randn(batch, *target_shape, generator=generator)


def route_inputs(process, route, batch: int):
    prediction = lineardiff.default_prediction(process)
    t = torch.full((batch,), example_t(process, route))
    return step_inputs(process, t, batch, prediction, torch.Generator().manual_seed(0))


def bare_step(model, opt, x, t, target) -> None:
    """Forward, MSE, backward, optimiser step: what a training step cannot do without."""
    out = model(x, t, tuple(target.shape[1:]))
    loss = (out - target).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def make_bare(net, lr: float):
    """``(model, opt)`` for :func:`bare_step`; the network in training mode."""
    net.train()
    return lineardiff.as_denoiser(net), torch.optim.AdamW(net.parameters(), lr=lr)


def route_flops(net, process, route, *, backward: bool) -> int:
    """FLOPs of one call on ``route`` at batch 1 (they scale linearly with the batch)."""
    x, t, target = route_inputs(process, route, 1)
    fn = functools.partial(lineardiff.as_denoiser(net), out_shape=tuple(target.shape[1:]))
    return count_flops(fn, x, t, backward=backward)


def expected_flops(setting: Setting, *, backward: bool = True) -> dict:
    """FLOPs per image of the DDPM step and of SSD's step averaged over its route weights."""
    weights = route_weights(setting.ssd, setting.transition_fraction)
    per_route = {r: route_flops(setting.flexi, setting.ssd, r, backward=backward) for r in weights}
    (ddpm_route,) = route_weights(setting.ddpm)
    full = route_flops(setting.unet, setting.ddpm, ddpm_route, backward=backward)
    expected = sum(w * per_route[r] for r, w in weights.items())
    return dict(per_route=per_route, ddpm=full, ssd=expected, ratio=expected / full)


# -- lineardiff.train and its bare twin ---------------------------------------------------------


@contextlib.contextmanager
def recording_timesteps(net: torch.nn.Module, record: list):
    """Record the timesteps of every call of ``net`` while the block runs.

    A forward pre-hook on the network (``train`` calls it as ``net(x_t, t, ...)``, once per
    step), so that the timesteps :func:`lineardiff.train` draws are seen without touching it.
    """

    def hook(module, args):
        record.append(args[1].detach().clone())

    handle = net.register_forward_pre_hook(hook)
    try:
        yield record
    finally:
        handle.remove()


def train_config(setting: Setting, kind: str, steps: int) -> lineardiff.TrainConfig:
    return lineardiff.TrainConfig(
        steps=steps,
        batch_size=setting.batch,
        lr=setting.lr,
        ema_decay=setting.ema_decay,
        seed=0,
        transition_fraction=setting.transition_fraction if kind == "ssd" else 0.0,
    )


def fake_data(process, n: int = 1024) -> torch.Tensor:
    """Random +-1 images (Ising-like): only the shapes matter for the cost."""
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 2, (n, *process.shape_at(0)), generator=g).float().mul(2).sub(1)


def run_train(setting: Setting, kind: str, steps: int, data, log_csv=None):
    process, net = setting.pair(kind)
    return lineardiff.train(
        net, process, data, train_config(setting, kind, steps), progress=False, log_csv=log_csv
    )


def train_sequence(setting: Setting, kind: str, steps: int, data) -> list[torch.Tensor]:
    """The timesteps ``lineardiff.train`` draws in ``steps`` steps (seeded: the same each run).

    The network is trained meanwhile; its weights do not change the cost of a step, and its
    calls draw no random numbers (no dropout), so a later run draws the same timesteps.
    """
    _, net = setting.pair(kind)
    with recording_timesteps(net, []) as record:
        run_train(setting, kind, steps, data)
    return record


def bare_sequence_inputs(setting: Setting, kind: str, ts) -> list[tuple]:
    process, _ = setting.pair(kind)
    prediction = lineardiff.default_prediction(process)
    g = torch.Generator().manual_seed(2)
    return [step_inputs(process, t, setting.batch, prediction, g) for t in ts]


def bare_loop(setting: Setting, kind: str, inputs) -> None:
    """The bare step over ``inputs`` with a fresh AdamW (as :func:`lineardiff.train` makes one)."""
    _, net = setting.pair(kind)
    model, opt = make_bare(net, setting.lr)
    for x, t, target in inputs:
        bare_step(model, opt, x, t, target)


# -- sampling ----------------------------------------------------------------------------------


def sampling_steps(setting: Setting, steps: int | None = None) -> dict[str, list[int]]:
    """Equal step counts: SSD respaced to ``steps`` (plus the kept resolution changes), DDPM
    respaced to as many steps as SSD then has."""
    ssd_steps = lineardiff.respace(setting.ssd, steps or setting.sample_steps)
    return dict(ssd=ssd_steps, ddpm=lineardiff.respace(setting.ddpm, len(ssd_steps)))


class StepTimer:
    """Seconds of the posterior part of each sampling step, split by resolution change.

    :meth:`model` wraps the denoiser to note when its prediction is ready, and :meth:`callback`
    (``ancestral_sample``'s, called at the end of each step) takes the time since then: the
    posterior mean and its noise draw (and the clamp of the prediction). At SSD's
    resolution-change steps the noise needs ``linops.sqrtm`` of ``I - rho c^2 R^T R``; at the
    other steps it is a scaled identity. The last step (to ``s = 0``) draws no noise and is
    left out.
    """

    def __init__(self, process) -> None:
        self.process = process
        self.change = 0.0
        self.other = 0.0
        self.calls = 0
        self._ready = None

    def model(self, denoiser):
        """``denoiser`` with the time its output is ready noted."""

        def timed(x, t, out_shape):
            out = denoiser(x, t, out_shape)
            self._ready = time.perf_counter()
            return out

        return timed

    def callback(self, t, s, x_s, signal_s) -> None:
        elapsed = time.perf_counter() - self._ready
        if s == 0:
            return
        if self.process.shape_at(t) != self.process.shape_at(s):
            self.change += elapsed
            self.calls += 1
        else:
            self.other += elapsed


def sample(
    setting: Setting, kind: str, timesteps, n: int, seed: int = 0, timer: StepTimer | None = None
) -> torch.Tensor:
    """``n`` images by ancestral sampling on ``timesteps``, optionally timed by ``timer``."""
    process, net = setting.pair(kind)
    net.eval()
    model = lineardiff.as_denoiser(net)
    with torch.no_grad():
        return lineardiff.ancestral_sample(
            model if timer is None else timer.model(model),
            process,
            n,
            timesteps=timesteps,
            prediction=lineardiff.default_prediction(process),
            clip=1.0,  # as lineardiff.generate
            callback=None if timer is None else timer.callback,
            progress=False,
            generator=torch.Generator().manual_seed(seed),
        )
