"""``lineardiff calibrate``: record a model's denoiser error per state in its model file."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .._sampling import respace
from .._signal_mse import measure_signal_mse
from .pretrained import export_model, load_model

__all__ = ["CALIBRATION_SEED", "calibrate_model"]

#: Monte-Carlo seed offset of the held-out Ising configurations the error is measured on
#: (apart from training data, the evaluations' references and their held-out sets).
CALIBRATION_SEED = 30_000


def calibrate_model(model, to, *, n: int = 256, states: int = 200, seed: int = 0,
                    size: int | None = None, command: str | None = None,
                    progress: bool = True) -> Path:
    """Measure a model's denoiser error per state and write the model file with it recorded.

    The error is :func:`~lineardiff.measure_signal_mse` on held-out data: for Ising models
    ``n`` fresh Monte-Carlo configurations (seed ``CALIBRATION_SEED + seed``), otherwise the
    training data's first ``n`` images (the only data a model file names; the error is
    then optimistic). The record (``meta["signal_mse"]``) is what
    :attr:`~lineardiff.pretrained.TrainedModel.signal_mse` reads back.

    Parameters
    ----------
    model : str or Path
        A shipped model's name or a model file / run folder.
    to : str or Path
        The model file to write (may be the model's own file: written atomically).
    n : int, default 256
    states : int, default 200
        States measured (:func:`~lineardiff.respace`), the others interpolated; 200 are
        exactly the states the samplers' default 200 steps visit.
    seed : int, default 0
    size : int, optional
        Measure the model zero-shot at ``size x size`` (:meth:`TrainedModel.at_size`; models
        that run at any size) and record the table for that size beside the others
        (``meta["signal_mse_at"]``), leaving the training size's table as it is.
    command : str, optional
        Recorded with the table.
    progress : bool, default True

    Returns
    -------
    Path
    """
    from .config import load_data

    where = "calibrate_model"
    m = load_model(model)
    if size is not None:
        if m.config["data"]["name"] != "ising":
            raise ValueError(f"{where}: expected size only for Ising models (fresh Monte Carlo "
                             f"at any size), got data '{m.config['data']['name']}'")
        m = m.at_size(size)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"{where}: expected n >= 2, got {n!r}")
    if isinstance(states, bool) or not isinstance(states, int) or states < 1:
        raise ValueError(f"{where}: expected states >= 1, got {states!r}")
    if m.config["data"]["name"] == "ising":
        from ..data import wolff_configurations

        spins = wolff_configurations(m.size, n, seed=CALIBRATION_SEED + seed)
        x0 = torch.from_numpy(spins).to(torch.float32).unsqueeze(1)
        source = f"Monte Carlo, seed {CALIBRATION_SEED + seed}"
    else:
        data = load_data(m.config)
        if isinstance(data, dict):
            data = data[m.size]
        x0 = data[:n].to(torch.float32)
        source = "training data"
    gen = torch.Generator().manual_seed(seed)
    started = time.process_time()
    table = measure_signal_mse(m.denoiser, m.process, x0,
                               respace(m.process, min(states, m.process.T)),
                               prediction=m.prediction, generator=gen, progress=progress)
    record = {**table.to_dict(), "shape": list(m.process.shape_at(0)), "data": source,
              "seed": seed, "cpu_seconds": time.process_time() - started,
              "command": command, "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    if size is None:
        return export_model(m.path, to, extra={"signal_mse": record})
    at = {**(m.meta.get("signal_mse_at") or {}), str(size): record}
    return export_model(m.path, to, extra={"signal_mse_at": at})
