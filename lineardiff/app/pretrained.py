"""Trained models: load a run's checkpoint or a shipped model, export EMA weights for shipping.

A *model file* is a checkpoint (:func:`~lineardiff.save_checkpoint` format: safetensors plus
JSON, never unpickled) whose configuration records the run's ``[data]``, ``[process]`` and
``[model]`` tables, so the network and the process it was trained for can be rebuilt from the
file alone. Shipped models live in ``lineardiff/app/weights/*.safetensors``.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._checks import check_bool, check_device, check_real
from .._denoiser import as_denoiser
from .._objectives import default_prediction
from ..training._checkpoint import (
    Checkpoint,
    CheckpointError,
    check_state_matches,
    load_checkpoint,
    save_checkpoint,
)
from .config import ConfigError, build_model, build_process, validate_config
from .runs import recorded_meta, resolve_model_file, run_train_seconds, shipped_models

__all__ = ["TrainedModel", "export_model", "load_model", "shipped_models"]

@dataclass
class TrainedModel:
    """A network with the process it was trained for.

    Attributes
    ----------
    net : torch.nn.Module
        In eval mode, holding the EMA weights (the trained weights when there is no EMA).
    process : DiffusionProcess
    config : dict
        The validated run configuration (``data``, ``process``, ``model``, ``train``, ``sample``).
    prediction : str
        ``"signal"`` or ``"eps"``: what the network predicts.
    step : int
        Optimiser steps the weights were trained for.
    meta : dict
        Everything else recorded with the run (command, training time, versions).
    path : Path
    """

    net: torch.nn.Module
    process: object
    config: dict
    prediction: str
    step: int
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def denoiser(self):
        """The network as ``model(x_t, t, out_shape)`` for the samplers."""
        return as_denoiser(self.net)

    @property
    def size(self) -> int:
        """Image size of :attr:`process` (pixels per side)."""
        return int(self.process.shape_at(0)[-1])

    @property
    def signal_mse(self):
        """The denoiser's measured error per state (:class:`~lineardiff.SignalMSE`) that the
        model file records (``lineardiff calibrate``) for this model's image shape, or None.
        A model used zero-shot at another size (:meth:`at_size`) finds the table
        ``lineardiff calibrate --size N`` recorded for that size, if any.

        :func:`~lineardiff.generate` and :func:`~lineardiff.super_resolve` draw it into
        every reverse step by default (Analytic-DPM's reverse variance).
        """
        from .._signal_mse import SignalMSE

        shape = list(self.process.shape_at(0))
        for record in (self.meta.get("signal_mse"),
                       *(self.meta.get("signal_mse_at") or {}).values()):
            if isinstance(record, dict) and list(record.get("shape", ())) == shape:
                return SignalMSE.from_dict(self.process, record)
        return None

    @property
    def sr_tau(self) -> float | None:
        """SKILD super-resolution: the entry threshold ``tau`` the model file recommends
        (``lineardiff export --sr-tau``), or None (then :meth:`~lineardiff.SKILD.start_step`'s
        default, 0.1). :func:`~lineardiff.super_resolve` uses it when given no ``tau``.
        """
        tau = self.meta.get("sr_tau")
        return None if tau is None else check_real("TrainedModel.sr_tau", "sr_tau", tau, low=0)

    def without_signal_mse(self) -> TrainedModel:
        """The same model without its recorded denoiser error (the samplers then walk the
        exact posterior's variance only)."""
        import dataclasses

        meta = {k: v for k, v in self.meta.items() if k not in ("signal_mse", "signal_mse_at")}
        return dataclasses.replace(self, meta=meta)

    def at_size(self, size: int) -> TrainedModel:
        """The same network with its process rebuilt for ``size x size`` images (zero-shot).

        Only networks that run at any size can do this (``unet``, ``dfu``); a Flexi-UNet is
        tied to its pyramid, and SSD's levels to the training size.

        Raises
        ------
        ValueError
            For Flexi-UNet / SSD models or a size below 2.
        """
        import dataclasses

        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ValueError(f"TrainedModel.at_size: expected a size >= 2, got {size!r}")
        if self.config["model"]["name"] == "flexi_unet" or self.config["process"]["name"] == "ssd":
            raise ValueError(
                "TrainedModel.at_size: a Flexi-UNet / SSD model runs only on its training "
                f"pyramid ({self.size} px); zero-shot sizes need a 'unet' or 'dfu' model"
            )
        if size == self.size:
            return self
        data = dict(self.config["data"])
        data.pop("sizes", None)
        data["L" if data["name"] == "ising" else "size"] = size
        cfg = {**self.config, "data": data}
        process = build_process(cfg, spectrum=self.meta.get("spectrum"))
        return dataclasses.replace(self, process=process, config=cfg)


def load_model(source, *, device="cpu", use_ema: bool = True) -> TrainedModel:
    """Load a trained network and rebuild its process from a model file.

    Parameters
    ----------
    source : str or Path
        A shipped model's name (see :func:`shipped_models`), a checkpoint file, or a run folder
        (its ``checkpoint.safetensors``).
    device : str or torch.device, default "cpu"
        Where the network goes: ``"cpu"``, ``"cuda:0"``... (checked before the file is read).
    use_ema : bool, default True
        Load the EMA weights when the file has them.

    Returns
    -------
    TrainedModel

    Raises
    ------
    CheckpointError
        When the file is missing or corrupt (:func:`~lineardiff.load_checkpoint` verifies its
        digests where it has them - the shipped files predate them - and validates its
        contents), records no valid configuration, or holds weights whose names, shapes or
        dtypes differ from the configured network's.
    ValueError
        When ``device`` is not one torch knows or not available here (CUDA on a CPU-only
        build, a GPU index beyond the device count), naming the available devices.
    TypeError
        When ``device`` is neither a str nor a :class:`torch.device`.
    """
    device = check_device("load_model", "device", device)
    use_ema = check_bool("load_model", "use_ema", use_ema)
    path = resolve_model_file(source)
    ck = load_checkpoint(path)
    meta = recorded_meta(path, ck)
    raw = meta.get("config")
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{path}: records no run configuration (meta.config); it was not written by "
            "'lineardiff train' or export_model"
        )
    try:
        cfg = validate_config(raw)
    except ConfigError as err:
        raise CheckpointError(f"{path}: its configuration is invalid here ({err})") from None
    spectrum = meta.get("spectrum")
    if spectrum is not None and not isinstance(spectrum, dict):
        raise CheckpointError(f"load_model: {path}: field 'config.meta.spectrum': expected a "
                              f"dict, got {type(spectrum).__name__}")
    try:
        process = build_process(cfg, spectrum=spectrum)
    except (TypeError, ValueError) as err:
        if spectrum is None:
            raise
        raise CheckpointError(
            f"load_model: {path}: field 'config.meta.spectrum': expected a power-spectrum fit "
            f"(C, k0, alpha, mean_square) its process accepts, got {spectrum!r} ({err})"
        ) from None
    net = build_model(cfg)
    state = ck.ema if (use_ema and ck.ema) else ck.model
    check_state_matches(path, state, net)
    net.load_state_dict(state)
    net.to(device).eval()
    pred = cfg["train"].get("prediction") or default_prediction(process)
    return TrainedModel(net, process, cfg, pred, ck.step, meta, path)


def export_model(checkpoint, out, *, extra: dict | None = None,
                 sr_tau: float | None = None) -> Path:
    """Write a small model file with the EMA weights only (no optimiser or RNG state).

    Parameters
    ----------
    checkpoint : str or Path
        A training checkpoint (or run folder).
    out : str or Path
        The model file to write (atomically).
    extra : dict, optional
        JSON-able facts to record, merged into the metadata. The training time
        (``train_seconds``: the run's ``log.csv`` plus that of the model it was initialised
        from; CPU time where the log records it, see ``lineardiff.app.runs.train_seconds``)
        is recorded automatically.
    sr_tau : float, optional
        SKILD models: record the super-resolution entry threshold the samplers use by
        default (:attr:`TrainedModel.sr_tau`). Kept from ``checkpoint`` when not given.

    Returns
    -------
    Path
    """
    if Path(out).is_dir():
        raise ValueError(f"export_model: expected out as a file path, got the folder '{out}'; "
                         "name the file, e.g. model.safetensors")
    path = resolve_model_file(checkpoint)
    ck = load_checkpoint(path)
    weights = ck.ema if ck.ema else ck.model
    meta = dict(recorded_meta(path, ck))
    if sr_tau is not None:
        sr_tau = check_real("export_model", "sr_tau", sr_tau, low=0)
        process = (meta.get("config") or {}).get("process", {}).get("name")
        if process != "skild":
            raise ValueError(f"export_model: expected sr_tau only for a SKILD model, got a "
                             f"{process!r} model")
        extra = {**(extra or {}), "sr_tau": sr_tau}
    meta.update(extra or {})
    seconds = None if "train_seconds" in (extra or {}) else run_train_seconds(path, ck, meta)
    if seconds is not None:
        meta["train_seconds"] = seconds
    elif "train_seconds" not in meta:
        warnings.warn(
            f"export_model: no log.csv rows beside {path}: the model file records no training "
            "time (export from the run folder, or pass extra={'train_seconds': ...})",
            stacklevel=2,
        )
    meta["exported"] = time.strftime("%Y-%m-%d %H:%M:%S")
    meta["exported_from_step"] = ck.step
    config = {"train": ck.config.get("train", {}), "meta": meta}
    json.dumps(config)  # fail early on anything not JSON-able
    return save_checkpoint(out, Checkpoint({k: v.contiguous() for k, v in weights.items()},
                                           config, ck.step))
