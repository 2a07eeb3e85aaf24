"""Argument checks shared by every module of :mod:`models` (one argument order, one rule).

The same convention as ``lineardiff._checks`` (``models`` imports only torch, so it keeps its
own copy of the few checks it needs). Every checker takes ``(where, name, value, ...)`` and
raises

* :class:`TypeError` when the *kind* of value is wrong (a float or a bool where an integer
  belongs, a string where a number belongs), and
* :class:`ValueError` when the kind is right but the value is not (out of range, NaN),

with the message ``"where: expected <what>, got <value>"``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

__all__ = [
    "SEED_MAX",
    "check_input_like",
    "check_int",
    "check_int_pair",
    "check_int_tuple",
    "check_real",
    "check_seed",
]

#: Largest seed accepted (what ``torch.manual_seed`` takes: ``[0, 2^63 - 1]``).
SEED_MAX = 2**63 - 1


def _range_error(where: str, name: str, value, minimum, maximum) -> ValueError:
    if minimum is not None and maximum is not None:
        return ValueError(f"{where}: expected {name} in [{minimum}, {maximum}], got {value!r}")
    if minimum is not None:
        return ValueError(f"{where}: expected {name} >= {minimum}, got {value!r}")
    return ValueError(f"{where}: expected {name} <= {maximum}, got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(
    where: str, name: str, value, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as a Python int in ``[minimum, maximum]`` (either bound optional).

    Python and NumPy integers are accepted; booleans and floats (even ``2.0``) are a
    :class:`TypeError`.

    Examples
    --------
    >>> check_int("f", "n", 3, 1)
    3
    >>> check_int("f", "n", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: f: expected n >= 1, got 0
    """
    if not _is_int(value):
        raise TypeError(f"{where}: expected {name} as an int, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _range_error(where, name, value, minimum, maximum)
    return value


def check_int_pair(where: str, name: str, value, minimum: int = 1) -> tuple[int, int]:
    """An int (used for both entries) or a pair of ints, each ``>= minimum``, as a pair."""
    if _is_int(value):
        pair = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        pair = tuple(value)
    else:
        raise TypeError(f"{where}: expected {name} as an int or a pair of ints, got {value!r}")
    if not all(_is_int(v) for v in pair):
        raise TypeError(f"{where}: expected {name} as an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise _range_error(where, name, value, minimum, None)
    return int(pair[0]), int(pair[1])


def check_int_tuple(
    where: str, name: str, value, minimum: int | None = None, maximum: int | None = None
) -> tuple[int, ...]:
    """A sequence of ints, each in ``[minimum, maximum]``, as a tuple (it may be empty)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{where}: expected {name} as a sequence of ints, got {value!r}")
    return tuple(check_int(where, f"{name}[{i}]", v, minimum, maximum) for i, v in enumerate(value))


def check_real(
    where: str,
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = True,
    open_high: bool = True,
) -> float:
    """A finite Python float within an interval (open or closed at each end).

    Booleans, strings and complex numbers are a :class:`TypeError`; NaN, inf and values
    outside the interval a :class:`ValueError`.

    Examples
    --------
    >>> check_real("f", "p", 0.0, low=0, high=1, open_low=False)
    0.0
    >>> check_real("f", "p", 1.0, low=0, high=1, open_low=False)
    Traceback (most recent call last):
    ...
    ValueError: f: expected p in [0, 1), got 1.0
    """
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


def check_seed(where: str, name: str, seed) -> int | None:
    """A seed in ``[0, SEED_MAX]``, or ``None``."""
    if seed is None:
        return None
    return check_int(where, name, seed, 0, SEED_MAX)


def check_input_like(where: str, name: str, x: torch.Tensor, module: torch.nn.Module) -> None:
    """An input tensor on the device and in the dtype of ``module``'s parameters.

    A mismatch would otherwise fail deep inside a convolution ("Input type (c10::Half) and
    bias type (float) should be the same"); a ``meta`` tensor has no data to compute on.
    Under autocast the dtype is autocast's business and is not checked.
    """
    param = next(module.parameters(), None)
    if x.device.type == "meta" and (param is None or param.device.type != "meta"):
        raise ValueError(f"{where}: expected {name} with data, got a meta tensor")
    if param is None:
        return
    if x.device != param.device:
        raise ValueError(
            f"{where}: expected {name} on {param.device} (the parameters' device), got "
            f"{x.device}; move it with {name}.to({str(param.device)!r}) or the network with "
            f".to({str(x.device)!r})"
        )
    if x.dtype != param.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(
            f"{where}: expected {name} as {param.dtype} (the parameters' dtype), got {x.dtype}; "
            f"convert it with {name}.to({param.dtype}) or the network with .to({x.dtype})"
        )
