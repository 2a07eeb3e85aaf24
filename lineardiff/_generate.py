"""Generation and super-resolution with a trained model, in batches, seeded, with progress."""

from __future__ import annotations

import numbers

import torch
from tqdm.auto import tqdm

from ._sampling import ancestral_sample, respace, skild_upscale, upscale
from ._skild import SKILD

__all__ = ["coarse_entry", "generate", "super_resolve"]


def _check_count(where: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{where}: expected {name} as an integer >= {minimum}, got {value!r}")
    return int(value)


def _steps(where: str, process, steps) -> int:
    return min(_check_count(where, "steps", steps, 1), process.T)


def generate(
    model,
    n: int,
    *,
    steps: int = 200,
    seed: int = 0,
    batch_size: int = 64,
    clip: float | None = 1.0,
    spin_flip: bool = False,
    progress: bool = True,
) -> torch.Tensor:
    """Draw ``n`` samples from a :class:`~lineardiff.pretrained.TrainedModel`.

    Parameters
    ----------
    model : TrainedModel
    n : int
    steps : int, default 200
        Respaced reverse steps (:func:`~lineardiff.respace`; resolution changes are kept).
    seed : int, default 0
        Seeds one generator for the whole run: the same call gives the same samples.
    batch_size : int, default 64
    clip : float or None, default 1.0
        x0-clipping of the predicted signal (data lie in ``[-1, 1]``).
    spin_flip : bool, default False
        Multiply each sample by a random sign (exact symmetrisation for Ising spins,
        design/ISING.md "Practical notes").
    progress : bool, default True

    Returns
    -------
    Tensor, shape (n, C, H, W)
    """
    where = "generate"
    n = _check_count(where, "n", n)
    batch_size = _check_count(where, "batch_size", batch_size)
    process = model.process
    timesteps = respace(process, _steps(where, process, steps))
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    with torch.no_grad(), tqdm(total=n, disable=not progress, desc="generating") as bar:
        for start in range(0, n, batch_size):
            k = min(batch_size, n - start)
            x = ancestral_sample(
                model.denoiser, process, k, timesteps=timesteps, prediction=model.prediction,
                clip=clip, progress=False, generator=gen,
            )
            if spin_flip:
                signs = torch.randint(0, 2, (k,), generator=gen).mul(2).sub(1)
                x = x * signs.view(-1, 1, 1, 1).to(x.dtype)
            out.append(x)
            bar.update(k)
    return torch.cat(out)


def coarse_entry(process, size: int) -> int:
    """The first state of ``process`` whose images are ``size`` pixels wide (SSD's SR entry).

    Raises
    ------
    ValueError
        When no state has that size (naming the sizes that exist).
    """
    for t in range(1, process.T + 1):
        if process.shape_at(t)[-1] == size:
            return t
    sizes = sorted({process.shape_at(t)[-1] for t in range(process.T + 1)})
    raise ValueError(
        f"super_resolve: expected inputs at one of the model's resolutions {sizes}, got {size}"
    )


def super_resolve(
    model,
    y: torch.Tensor,
    *,
    steps: int = 200,
    seed: int = 0,
    batch_size: int = 64,
    clip: float | None = 1.0,
    consistency: bool = False,
    progress: bool = True,
) -> torch.Tensor:
    """Super-resolve low-resolution images with an SSD or SKILD model.

    SSD enters its chain at the input's level (:func:`~lineardiff.upscale`; sizes on the
    pyramid); SKILD starts where its effective band drops to the input's resolution
    (:func:`~lineardiff.skild_upscale`; any size up to the training size, non-integer
    factors included).

    Parameters
    ----------
    model : TrainedModel
    y : Tensor, shape (N, C, h, h)
        The low-resolution images as the process sees them: the chain of resizes applied to a
        clean image (see :func:`~lineardiff.pretrained.TrainedModel` and the SR protocol in
        the docs for Ising block spins).
    steps : int, default 200
        Respaced steps of the whole chain; those below the entry state are run.
    seed, batch_size, clip, progress
        As for :func:`generate`.
    consistency : bool, default False
        Data-consistency projection (:func:`~lineardiff.upscale`).

    Returns
    -------
    Tensor, shape (N, C, H, H)
    """
    where = "super_resolve"
    if not isinstance(y, torch.Tensor) or y.ndim != 4:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{where}: expected y as a tensor (N, C, h, h), got {got}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"{where}: expected finite inputs, got NaN or inf")
    process = model.process
    skild = isinstance(process, SKILD)
    if skild:
        if y.shape[1] != process.shape[0] or y.shape[-1] > process.shape[-1]:
            raise ValueError(
                f"{where}: expected inputs (N, {process.shape[0]}, h, w) no larger than "
                f"{tuple(process.shape[1:])}, got {tuple(y.shape)}"
            )
    else:
        start = coarse_entry(process, y.shape[-1])
        if tuple(y.shape[1:]) != tuple(process.shape_at(start)):
            raise ValueError(
                f"{where}: expected inputs of per-sample shape {process.shape_at(start)}, "
                f"got {tuple(y.shape[1:])}"
            )
    batch_size = _check_count(where, "batch_size", batch_size)
    num = _steps(where, process, steps)
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    with torch.no_grad(), tqdm(total=y.shape[0], disable=not progress, desc="upscaling") as bar:
        for i in range(0, y.shape[0], batch_size):
            chunk = y[i : i + batch_size].to(torch.float32)
            if skild:
                out.append(skild_upscale(model.denoiser, process, chunk, num_steps=num,
                                         generator=gen, clip=clip, progress=False))
            else:
                out.append(upscale(model.denoiser, process, chunk, num_steps=num,
                                   consistency=consistency, generator=gen, clip=clip,
                                   progress=False))
            bar.update(chunk.shape[0])
    return torch.cat(out)
