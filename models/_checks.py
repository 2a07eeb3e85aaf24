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

__all__ = ["check_int", "check_int_pair", "check_int_tuple", "check_real"]


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
