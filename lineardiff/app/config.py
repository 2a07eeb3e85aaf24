"""Run configurations: TOML files naming a data set, a process, a network and training settings.

A configuration is a dict of four tables, ``[data]``, ``[process]``, ``[model]`` and
``[train]`` (plus an optional ``[sample]``). Every key is validated against the object it
configures - the keyword parameters of the process or network class, the fields of
:class:`~lineardiff.TrainConfig` - so an unknown key or a value of the wrong type is refused
with the table and key named. The registries of names (``"ssd"``, ``"flexi_unet"``...) live
here, in the application layer, never inside the library.

Examples
--------
>>> from lineardiff.app.config import parse_config, build_process
>>> cfg = parse_config('''
... [data]
... name = "ising"
... L = 16
... [process]
... name = "ssd"
... n_levels = 3
... [model]
... name = "flexi_unet"
... base_channels = 8
... channel_mult = [1, 2, 2]
... num_groups = 4
... attention_levels = []
... [train]
... steps = 10
... ''')
>>> build_process(cfg).shape_at(1000)
(1, 4, 4)
>>> parse_config('[data]\\nname = "ising"\\nL = 16\\ncolour = 1')
Traceback (most recent call last):
    ...
lineardiff.app.config.ConfigError: config [data]: unknown key 'colour'; expected one of L, ...
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import models

from .. import _members, _skild
from .._checks import SEED_MAX
from ..data.augment import check_symmetries
from ..training import TrainConfig

__all__ = [
    "ConfigError",
    "DATA",
    "MODELS",
    "PROCESSES",
    "apply_overrides",
    "build_model",
    "build_process",
    "data_shape",
    "load_config",
    "load_data",
    "parse_config",
]


class ConfigError(ValueError):
    """A configuration file or override is invalid (names the table, the key and the fix)."""


class _Required:
    """A required key whose value must have the type of ``example``."""

    def __init__(self, example) -> None:
        self.example = example


#: Process names of ``[process] name`` and the classes they build.
PROCESSES: dict[str, Callable] = {
    "ddpm": _members.DDPM,
    "ve": _members.VE,
    "bd": _members.BlurringDiffusion,
    "ssd": _members.ScaleSpaceDiffusion,
    "skild": _skild.SKILD,
}

#: Network names of ``[model] name`` and the classes they build.
MODELS: dict[str, type] = {
    "unet": models.UNet,
    "flexi_unet": models.FlexiUNet,
    "dfu": models.DualFNOUNet,
}

#: Keys of each ``[data]`` kind with their defaults (``...``: required).
DATA: dict[str, dict[str, Any]] = {
    "ising": {"L": _Required(0), "n": 20_000, "seed": 0, "cache_dir": "", "sizes": []},
    "digits": {"size": 16},
    "folder": {"path": _Required(""), "size": _Required(0), "channels": 3},
}

_TRAIN_EXTRA = {"threads": 1, "out": "runs/run", "sample_every": 0, "sample_steps": 50,
                "sample_count": 16, "keep_every": 0}
_SAMPLE = {"steps": 50, "count": 16, "seed": 0, "clip": True}

#: Ranges ``(low, high)`` of the integer keys this layer consumes itself (the library's
#: classes check their own keywords): a value outside is refused here, naming the key,
#: instead of failing deep in a run or being silently ignored.
_INT_RANGES: dict[tuple[str, str], tuple[int, int | None]] = {
    ("data", "L"): (2, None),
    ("data", "n"): (1, None),
    ("data", "seed"): (0, SEED_MAX),
    ("data", "size"): (1, None),
    ("train", "threads"): (1, None),
    ("train", "sample_every"): (0, None),
    ("train", "keep_every"): (0, None),
    ("train", "sample_steps"): (1, None),
    ("train", "sample_count"): (1, None),
    ("sample", "steps"): (1, None),
    ("sample", "count"): (1, None),
    ("sample", "seed"): (0, SEED_MAX),
}


def _kind(value) -> str:
    return type(value).__name__


def _check_value(table: str, key: str, value, default) -> Any:
    """Type-check ``value`` against ``default`` (its type is the expected one)."""
    where = f"config [{table}] {key}"
    if isinstance(default, _Required):
        default = default.example
    if default is ... or default is None or default is inspect.Parameter.empty:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r} ({_kind(value)})")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r} ({_kind(value)})")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r} ({_kind(value)})")
        return value
    if isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{where}: expected a list, got {value!r} ({_kind(value)})")
        return value
    return value


def _check_range(table: str, key: str, value, low: int, high: int | None) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and (
            value < low or (high is not None and value > high)):
        expected = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"config [{table}] {key}: expected an integer {expected}, got {value}")


def _check_table(table: str, given: Mapping, allowed: Mapping[str, Any]) -> dict:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ConfigError(
            f"config [{table}]: unknown key {unknown[0]!r}; expected one of "
            + ", ".join(sorted(allowed))
        )
    out = {}
    for key, default in allowed.items():
        if key in given:
            out[key] = _check_value(table, key, given[key], default)
            if (table, key) in _INT_RANGES:
                _check_range(table, key, out[key], *_INT_RANGES[table, key])
        elif default is ... or isinstance(default, _Required):
            raise ConfigError(f"config [{table}]: missing required key {key!r}")
    return out


def _keywords(cls) -> dict[str, Any]:
    """Keyword parameters of a constructor with their defaults (no ``self``/positional data)."""
    out = {}
    for name, p in inspect.signature(cls).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is p.empty:
            continue  # positional data (shape, spectrum) comes from the data table
        out[name] = p.default
    return out


def _named(table: str, given: Mapping, registry: Mapping) -> str:
    name = given.get("name")
    if name not in registry:
        raise ConfigError(
            f"config [{table}] name: expected one of {', '.join(sorted(registry))}, got {name!r}"
        )
    return name


def _train_fields() -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(TrainConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
        else:
            kind = {"int": 0, "float": 0.0, "str": ""}.get(str(f.type))
            out[f.name] = ... if kind is None else _Required(kind)
    if out.get("prediction", 0) is None:
        out["prediction"] = ""
    return out


def validate_config(raw: Mapping) -> dict:
    """Check every table and key of a configuration; return a normalised copy.

    Raises
    ------
    ConfigError
        Naming the table and key of the first problem.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a table of tables, got {_kind(raw)}")
    unknown = sorted(set(raw) - {"data", "process", "model", "train", "sample"})
    if unknown:
        raise ConfigError(
            f"config: unknown table [{unknown[0]}]; expected data, process, model, train, sample"
        )
    def table(name: str) -> dict:
        if not isinstance(raw.get(name), Mapping):
            raise ConfigError(f"config: missing table [{name}]")
        return dict(raw[name])

    cfg: dict = {}
    data = table("data")
    kind = _named("data", data, DATA)
    cfg["data"] = {"name": kind, **_check_table("data", data, {"name": "", **DATA[kind]})}
    proc = table("process")
    pname = _named("process", proc, PROCESSES)
    cfg["process"] = {
        "name": pname,
        **_check_table("process", proc, {"name": "", **_keywords(PROCESSES[pname])}),
    }
    mod = table("model")
    mname = _named("model", mod, MODELS)
    allowed = {"name": "", **_keywords(MODELS[mname])}
    for k in ("in_channels", "image_size"):  # derived from the data
        allowed.pop(k, None)
    cfg["model"] = {"name": mname, **_check_table("model", mod, allowed)}
    cfg["train"] = _check_table("train", table("train"), {**_train_fields(), **_TRAIN_EXTRA})
    cfg["sample"] = _check_table("sample", raw.get("sample", {}), _SAMPLE)
    _check_consistency(cfg)
    return cfg


def _check_consistency(cfg: dict) -> None:
    """Cross-table checks that a single class cannot make (sizes, levels)."""
    size = data_shape(cfg)[-1]
    proc, mod = cfg["process"], cfg["model"]
    if proc["name"] == "ssd":
        levels = proc.get("n_levels", 4)
        if not isinstance(levels, int) or levels < 1 or size % 2 ** (levels - 1):
            raise ConfigError(
                f"config [process] n_levels: expected a level count whose coarsest size "
                f"{size} / 2^(n_levels - 1) is an integer, got {levels}; use fewer levels"
            )
        if mod["name"] != "flexi_unet":
            raise ConfigError(
                "config [model] name: SSD changes the resolution between steps and needs "
                f"'flexi_unet', got {mod['name']!r}"
            )
        mult = mod.get("channel_mult", (1, 2, 3, 4))
        if len(mult) < levels:
            raise ConfigError(
                f"config [model] channel_mult: expected at least n_levels = {levels} "
                f"entries for the SSD pyramid, got {list(mult)}"
            )
    elif mod["name"] == "flexi_unet":
        raise ConfigError(
            f"config [model] name: 'flexi_unet' is for the 'ssd' process, got process "
            f"{proc['name']!r}; use 'unet' or 'dfu'"
        )
    sizes = cfg["data"].get("sizes") or []
    if sizes:
        if not all(isinstance(L, int) and not isinstance(L, bool) and L >= 2 for L in sizes):
            raise ConfigError(f"config [data] sizes: expected integers >= 2, got {sizes}")
        if max(sizes) != size:
            raise ConfigError(
                f"config [data] sizes: expected L = max(sizes) = {max(sizes)}, got L = {size}"
            )
        if mod["name"] != "dfu" or proc["name"] == "ssd":
            raise ConfigError(
                "config [data] sizes: mixed-resolution training needs [model] name = 'dfu' and "
                f"a process other than 'ssd', got {mod['name']!r} with {proc['name']!r}"
            )
    keep, every = cfg["train"].get("keep_every", 0), cfg["train"].get("checkpoint_every", 0)
    if keep and (not every or keep % every):
        raise ConfigError(
            f"config [train] keep_every: expected a multiple of checkpoint_every = {every} (a "
            f"model file is exported from the checkpoint of that step), got {keep}"
        )
    pred = cfg["train"].get("prediction")
    if pred not in (None, "", "signal", "eps"):
        raise ConfigError(
            f"config [train] prediction: expected 'signal', 'eps' or '', got {pred!r}"
        )
    try:
        syms = check_symmetries("config [train]", "symmetries", cfg["train"].get("symmetries", []))
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None
    if "dihedral" in syms and len(set(data_shape(cfg)[-2:])) != 1:
        raise ConfigError(
            "config [train] symmetries: 'dihedral' needs square images, got data of shape "
            f"{data_shape(cfg)}"
        )


def parse_config(text: str, *, source: str = "config") -> dict:
    """Parse and validate a TOML configuration given as text.

    Parameters
    ----------
    text : str
    source : str
        Name used in error messages (a file name).

    Returns
    -------
    dict
        The validated configuration (see :func:`validate_config`).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err})") from None
    return validate_config(raw)


def load_config(path, overrides=()) -> dict:
    """Read a TOML configuration file, apply ``table.key=value`` overrides and validate it.

    Parameters
    ----------
    path : str or Path
        A TOML file, or the name of a shipped configuration (see :func:`shipped_configs`).
    overrides : sequence of str
        Each ``"table.key=value"`` with a TOML value (``train.steps=100``,
        ``model.channel_mult=[1,2]``); bare words are strings.
    """
    p = Path(path)
    if not p.is_file():
        shipped = shipped_configs()
        if str(path) in shipped:
            p = shipped[str(path)]
        else:
            raise ConfigError(
                f"config: no file {str(path)!r}; expected a TOML file or one of the shipped "
                f"configs {', '.join(sorted(shipped))}"
            )
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config {p}: not valid TOML ({err})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config {p}: expected a TOML file (UTF-8 text), got bytes that are not text "
            f"(byte {err.start}: {err.object[err.start:err.start + 1]!r})"
        ) from None
    except OSError as err:
        raise ConfigError(f"config {p}: cannot be read ({err.strerror or err})") from None
    return validate_config(apply_overrides(raw, overrides))


def shipped_configs() -> dict[str, Path]:
    """The configurations shipped in the package (``lineardiff/app/configs/*.toml``) by name."""
    folder = Path(__file__).parent / "configs"
    return {f.stem: f for f in sorted(folder.glob("*.toml"))}


def apply_overrides(raw: Mapping, overrides) -> dict:
    """Return a copy of ``raw`` with ``"table.key=value"`` overrides applied (TOML values).

    Examples
    --------
    >>> apply_overrides({"train": {"steps": 5}}, ["train.steps=7", "train.out=runs/x"])
    {'train': {'steps': 7, 'out': 'runs/x'}}
    """
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = str(item).partition("=")
        table, dot, name = key.strip().partition(".")
        if not sep or not dot or not table or not name:
            raise ConfigError(
                f"config override: expected 'table.key=value' (e.g. train.steps=100), got {item!r}"
            )
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        out.setdefault(table, {})
        if not isinstance(out[table], dict):
            raise ConfigError(f"config override {item!r}: [{table}] is not a table")
        out[table][name] = value
    return out


def data_shape(cfg: Mapping) -> tuple[int, int, int]:
    """Per-sample shape ``(C, H, W)`` of the configured data."""
    d = cfg["data"]
    if d["name"] == "ising":
        return (1, d["L"], d["L"])
    if d["name"] == "digits":
        return (1, d.get("size", 16), d.get("size", 16))
    return (d.get("channels", 3), d["size"], d["size"])


def load_data(cfg: Mapping):
    """The configured training data as a float tensor ``(N, C, H, W)`` (values +-1 for Ising).

    With ``[data] sizes = [16, 24, 32]`` (Ising, mixed-resolution training of a DFU) a dict
    ``{L: tensor}`` with ``n`` configurations at each size.

    Raises
    ------
    ConfigError
        When the Ising cache folder (``[data] cache_dir``, else ``$LINEARDIFF_CACHE/ising``
        or ``~/.cache/lineardiff/ising``) cannot take the generated file - checked before the
        minutes of generation, unless the file is cached there already.
    """
    import torch

    from .. import data as data_mod

    d = cfg["data"]
    if d["name"] == "ising":
        def at(L: int):
            n, seed = d.get("n", 20_000), d.get("seed", 0)
            folder = _ising_cache(d, L, n, seed)
            try:
                x = data_mod.ising_dataset(L, n, seed=seed, cache_dir=folder)
            except OSError as err:
                raise _cache_error(d, folder, err) from None
            return torch.from_numpy(x).to(torch.float32).unsqueeze(1)

        sizes = d.get("sizes") or []
        return {int(L): at(int(L)) for L in sizes} if sizes else at(d["L"])
    if d["name"] == "digits":
        return data_mod.digits_dataset(d.get("size", 16))
    return data_mod.image_folder_dataset(d["path"], d["size"], channels=d.get("channels", 3))


def _ising_cache(d: Mapping, L: int, n: int, seed: int) -> Path:
    """The Ising cache folder, checked up front: generating the data takes minutes, and only
    then would a folder that cannot take the file fail (unless the file is there already)."""
    from ..data.ising import _cache_path, _default_cache_dir

    folder = Path(d.get("cache_dir") or _default_cache_dir())
    if _cache_path(folder, L, n, seed).is_file():
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise _cache_error(d, folder, err) from None
    return folder


def _cache_error(d: Mapping, folder: Path, err: OSError) -> ConfigError:
    reason = err.strerror or str(err)
    if d.get("cache_dir"):
        return ConfigError(
            f"config [data] cache_dir: expected a writable folder, got {str(folder)!r} "
            f"({reason}); choose another, or leave it empty for the default "
            "($LINEARDIFF_CACHE/ising or ~/.cache/lineardiff/ising)"
        )
    return ConfigError(
        f"the Ising data cache folder {str(folder)!r} is not writable ({reason}); set "
        "[data] cache_dir or the LINEARDIFF_CACHE environment variable to a writable folder"
    )


def build_process(cfg: Mapping, data=None, *, spectrum=None):
    """The configured diffusion process (shape from the data).

    SKILD's noise spectrum is ``spectrum`` (a :class:`~lineardiff.PowerSpectrumFit`, or a dict
    of its fields as stored in a checkpoint) or else fitted to ``data``
    (:func:`~lineardiff.fit_power_spectrum`).
    """
    from .._spectrum import PowerSpectrumFit, fit_power_spectrum

    p = dict(cfg["process"])
    name = p.pop("name")
    args = [data_shape(cfg)]
    if name == "skild":
        if isinstance(spectrum, Mapping):
            spectrum = PowerSpectrumFit(**spectrum)
        if spectrum is None:
            if data is None:
                raise ConfigError(
                    "config [process]: SKILD fits its noise spectrum to the data; none given"
                )
            spectrum = fit_power_spectrum(data)
        args.append(spectrum)
    try:
        return PROCESSES[name](*args, **p)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"config [process]: {err}") from None


def build_model(cfg: Mapping):
    """The configured network (channels and image size from the data)."""
    m = dict(cfg["model"])
    name = m.pop("name")
    cls = MODELS[name]
    shape = data_shape(cfg)
    kwargs = {"in_channels": shape[0], **m}
    for k in ("channel_mult", "attention_levels"):
        if k in kwargs:
            kwargs[k] = tuple(kwargs[k])
    if "modes" in kwargs:
        kwargs["modes"] = tuple(None if v is None else tuple(v) for v in kwargs["modes"])
    if name == "flexi_unet":
        kwargs["image_size"] = shape[-1]
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"config [model]: {err}") from None
