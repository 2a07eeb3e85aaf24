"""Argument checks shared by every module of :mod:`lineardiff` (one argument order, one rule).

Every checker takes ``(where, name, value, ...)`` and raises

* :class:`TypeError` when the *kind* of value is wrong (a float where an integer belongs,
  a string where a number belongs, a NumPy array where a tensor belongs), and
* :class:`ValueError` when the kind is right but the value is not (out of range, NaN,
  a wrong shape),

with the message ``"where: expected <what>, got <value>"``.

The non-finite policy of the package ("Conventions" in docs/architecture.rst): processes,
samplers, super-resolution inputs, model outputs inside the samplers, metrics and the
command line refuse NaN and inf in the data they are given, naming the argument, the count
and the first bad index (:func:`check_finite` for tensors, :func:`check_finite_array` for
NumPy arrays); linear operators stay NaN-transparent like torch. Seeds are ints in
``[0, SEED_MAX]``; devices must exist here (:func:`check_device`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = [
    "SEED_MAX",
    "check_bool",
    "check_callable",
    "check_device",
    "check_finite",
    "check_finite_array",
    "check_float_dtype",
    "check_generator",
    "check_int",
    "check_real",
    "check_real_tensor",
    "check_seed",
    "check_shape",
    "check_shape2",
    "check_spin_values",
    "check_time",
    "check_timesteps",
]


#: Largest seed accepted anywhere (torch and NumPy both take seeds in [0, 2^63 - 1]).
SEED_MAX = 2**63 - 1


def check_int(where: str, name: str, value, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` as a Python int (Python ints, NumPy integers and 0-dim integer tensors).

    Booleans and floats (even ``2.0``) are refused with :class:`TypeError`.
    """
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
            and not value.is_complex() and value.dtype != torch.bool:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: expected {name} as an int, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        if maximum is not None:
            raise ValueError(f"{where}: expected {name} in [{minimum}, {maximum}], got {value}")
        raise ValueError(f"{where}: expected {name} >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        if minimum is not None:
            raise ValueError(f"{where}: expected {name} in [{minimum}, {maximum}], got {value}")
        raise ValueError(f"{where}: expected {name} <= {maximum}, got {value}")
    return value


def check_real(where: str, name: str, value, *, low=None, high=None, open_low: bool = True,
               open_high: bool = True) -> float:
    """A finite Python float within an interval (open or closed at each end).

    A one-element real tensor is accepted; booleans, strings and complex numbers are a
    :class:`TypeError`; NaN, inf and values outside the interval a :class:`ValueError`.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex() \
            and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: expected {name} as a real number, got {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad = bad or (value <= low if open_low else value < low)
    if high is not None:
        bad = bad or (value >= high if open_high else value > high)
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = ("(" if open_low else "[") + f"{lo}, {hi}" + (")" if open_high else "]")
        raise ValueError(f"{where}: expected {name} in {interval}, got {value!r}")
    return value


def check_seed(where: str, name: str, seed) -> int:
    """A seed: an int in ``[0, SEED_MAX]`` (what torch and NumPy both take)."""
    return check_int(where, name, seed, 0, SEED_MAX)


def check_bool(where: str, name: str, value) -> bool:
    """A Python bool (or a NumPy bool); ``'yes'``, ``1`` and ``None`` are a TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: expected {name} as True or False, got {value!r}")
    return bool(value)


def check_callable(where: str, name: str, fn, *, optional: bool = False):
    """A callable (or ``None`` when ``optional``)."""
    if fn is None and optional:
        return None
    if not callable(fn):
        more = " or None" if optional else ""
        raise TypeError(f"{where}: expected {name} as a callable{more}, got {type(fn).__name__}")
    return fn


def check_generator(where: str, name: str, generator):
    """A :class:`torch.Generator` or ``None``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{where}: expected {name} as a torch.Generator or None, got "
            f"{type(generator).__name__} (seed one with torch.Generator().manual_seed(s))"
        )
    return generator


def check_float_dtype(where: str, name: str, dtype) -> torch.dtype:
    """``torch.float32`` or ``torch.float64``: the precisions the operators compute in."""
    if not isinstance(dtype, torch.dtype) or dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"{where}: expected {name} as torch.float32 or torch.float64 (the operators' "
            f"precision), got {dtype!r}"
        )
    return dtype


def check_shape(where: str, name: str, shape) -> tuple[int, ...]:
    """A per-sample shape: a non-empty sequence of positive ints."""
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(
            f"{where}: expected {name} as a sequence of positive ints such as (1, 32, 32), "
            f"got {shape!r}"
        )
    for i, n in enumerate(shape):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(
                f"{where}: expected {name} of positive ints, got {tuple(shape)!r} "
                f"(entry {i} is {n!r})"
            )
    return tuple(int(n) for n in shape)


def check_real_tensor(where: str, name: str, x, *, convert: bool = True) -> torch.Tensor:
    """Data for the processes: a real float32/float64 tensor with data, finite.

    Integer (and bool) tensors become the default float dtype when ``convert`` (never
    integer arithmetic with the scales), else a :class:`TypeError`; NumPy arrays,
    half precision and complex tensors are a :class:`TypeError`, a ``meta`` tensor and
    NaN or inf a :class:`ValueError`.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: expected {name} as a torch.Tensor, got {type(x).__name__}")
    if x.device.type == "meta":
        raise ValueError(f"{where}: expected {name} with data, got a meta tensor")
    if x.dtype in (torch.float16, torch.bfloat16):
        raise TypeError(f"{where}: expected {name} as float32 or float64 (the operators' "
                        f"precision), got {x.dtype}; convert it with {name}.float()")
    if x.is_complex():
        raise TypeError(f"{where}: expected a real {name}, got {x.dtype}")
    if not x.is_floating_point():
        if not convert:
            raise TypeError(f"{where}: expected {name} as float32 or float64, got {x.dtype}; "
                            f"convert it with {name}.float()")
        x = x.to(torch.get_default_dtype())
    return check_finite(where, name, x)


def check_finite(where: str, name: str, x: torch.Tensor) -> torch.Tensor:
    """Refuse a tensor holding NaN or inf, naming the count and the first bad index."""
    if x.is_floating_point() or x.is_complex():
        ok = torch.isfinite(x)
        if not bool(ok.all()):
            bad = (~ok).nonzero()
            first = tuple(int(i) for i in bad[0])
            raise ValueError(
                f"{where}: expected finite {name}, got {bad.shape[0]} NaN or inf value"
                f"{'s' if bad.shape[0] > 1 else ''} (the first at index {first})"
            )
    return x


def check_finite_array(where: str, name: str, a: np.ndarray) -> np.ndarray:
    """:func:`check_finite` for a NumPy array (same message: the count and the first bad index)."""
    if np.issubdtype(a.dtype, np.inexact):
        ok = np.isfinite(a)
        if not bool(ok.all()):
            count = int(a.size - np.count_nonzero(ok))
            first = tuple(int(i) for i in np.argwhere(~ok)[0])
            raise ValueError(
                f"{where}: expected finite {name}, got {count} NaN or inf value"
                f"{'s' if count > 1 else ''} (the first at index {first})"
            )
    return a


def check_device(where: str, name: str, device) -> torch.device:
    """A :class:`torch.device` that exists in this build and on this machine.

    Neither a str nor a :class:`torch.device` is a :class:`TypeError`; a string torch cannot
    parse, or a device that is not available (CUDA on a CPU-only build, an index beyond the
    device count, ``meta``), is a :class:`ValueError` naming the devices that are.
    """
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"{where}: expected {name} such as 'cpu' or 'cuda:0', got {device!r}"
            ) from None
    else:
        raise TypeError(f"{where}: expected {name} as a str or torch.device, got {device!r}")
    if dev.type == "cpu":
        return dev
    available = _available_devices()
    if dev.type in ("cuda", "mps") and f"{dev.type}:{dev.index or 0}" in available:
        return dev
    why = ""
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = ("; this torch build has no CUDA" if torch.version.cuda is None
               else "; no CUDA device is visible")
    raise ValueError(
        f"{where}: expected {name} among the available devices ({', '.join(available)}), "
        f"got {str(device)!r}{why}"
    )


def _available_devices() -> list[str]:
    """Names of the devices this process can use: ``cpu``, then ``cuda:i`` and ``mps:0``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps:0")
    return names


def check_spin_values(where: str, name: str, x: np.ndarray) -> np.ndarray:
    """Ising data as NumPy: finite, and spins +-1 or real values around 0 (not 0/1 lattices).

    ``sign`` turns any real field into spins, so 0/1 occupation numbers (or images in
    ``[0, 1]``) would pass as an all-up lattice (``|m| = 1``) without a word. Spins have no
    zeros and real model outputs take both signs, so data with no negative value and some
    exact zeros is refused, with the fix (``2 * x - 1``); NaN and inf are refused by
    :func:`check_finite_array`.
    """
    check_finite_array(where, name, x)
    if x.size and not (x < 0).any() and not x.all():
        fix = "map them to spins with 2 * x - 1"
        if bool(np.all((x == 0) | (x == 1))):
            raise ValueError(
                f"{where}: expected {name} as spins +-1 or real values around 0, got only the "
                f"values 0 and 1 (no -1); {fix}"
            )
        zeros = int(x.size - np.count_nonzero(x))
        raise ValueError(
            f"{where}: expected {name} as spins +-1 or real values around 0, got values in "
            f"[0, {float(x.max()):g}] with {zeros} zero{'s' if zeros > 1 else ''} and none "
            f"negative (0/1 or [0, 1] data?); {fix}"
        )
    return x


def check_timesteps(where: str, name: str, t, low: int, high: int):
    """Timesteps: an int, or a 0-/1-dim integer tensor, each in ``[low, high]``.

    Returns a Python int for a scalar and a ``LongTensor`` for a 1-dim tensor. Floats
    (``3.7``, a float tensor) and booleans are a :class:`TypeError`, never truncated.
    """
    if isinstance(t, torch.Tensor):
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise TypeError(f"{where}: expected {name} as integers, got a {t.dtype} tensor")
        if t.dim() == 0:
            return check_int(where, name, int(t), low, high)
        if t.dim() != 1:
            raise ValueError(
                f"{where}: expected {name} as an int or a 1-dim tensor, got shape {tuple(t.shape)}"
            )
        if t.numel() and (int(t.min()) < low or int(t.max()) > high):
            raise ValueError(
                f"{where}: expected {name} in [{low}, {high}], got values from {int(t.min())} "
                f"to {int(t.max())}"
            )
        return t.long()
    return check_int(where, name, t, low, high)


def check_shape2(where: str, name: str, shape) -> tuple[int, int]:
    """An ``(H, W)`` image shape of positive ints."""
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(
            f"{where}: expected {name} as (H, W), got {shape!r}. Pass x.shape[-2:] for an image x"
        )
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"{where}: expected {name} as (H, W) of positive ints, got {shape!r}")
    return int(shape[0]), int(shape[1])


def check_time(where: str, name: str, t) -> tuple[torch.Tensor, torch.dtype]:
    """Continuous time in [0, 1] as float64, and the dtype to return results in.

    A floating tensor keeps its dtype and device for the result; a Python number or an
    integer tensor gives float64.
    """
    if isinstance(t, torch.Tensor):
        if t.is_complex() or t.dtype == torch.bool:
            raise TypeError(
                f"{where}: expected {name} as a real tensor or number, got dtype {t.dtype}"
            )
        out_dtype = t.dtype if t.is_floating_point() else torch.float64
        t64 = t.to(torch.float64)
    elif isinstance(t, numbers.Real) and not isinstance(t, bool):
        out_dtype = torch.float64
        t64 = torch.tensor(float(t), dtype=torch.float64)
    else:
        raise TypeError(f"{where}: expected {name} as a real tensor or number, got {t!r}")
    if t64.numel() and not bool(((t64 >= 0) & (t64 <= 1)).all()):
        bad = t64[~((t64 >= 0) & (t64 <= 1))].flatten()[0].item()
        raise ValueError(f"{where}: expected {name} in [0, 1], got a value {bad!r}")
    return t64, out_dtype
