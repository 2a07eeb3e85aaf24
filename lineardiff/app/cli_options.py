"""Argument types and the super-resolution conditioning options of the command line."""

from __future__ import annotations

import argparse
import math

__all__ = ["add_conditioning", "int_option", "real_option", "scale_option"]


def int_option(low: int, high: int | None = None, note: str = ""):
    """An argparse type: an integer in ``[low, high]`` (``note`` explains a special value)."""
    expected = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}{note}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}{note}, got {value}")
        return value

    return parse


def real_option(low: float | None = None):
    """An argparse type: a finite number, ``>= low`` when given."""
    expected = "a finite number" + ("" if low is None else f" >= {low:g}")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value) or (low is not None and value < low):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def scale_option(text: str):
    """``--input-scale``: ``auto`` or a finite number > 0 (0 would erase the inputs)."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0 or 'auto', got {text!r}")
    return value


def add_conditioning(p) -> None:
    p.add_argument(
        "--ilvr", action="store_true",
        help="SSD super-resolution: condition every state whose noise-to-signal ratio is >= "
        "--ilvr-nsr on the input (ILVR-style), not only the entry state: more consistent "
        "with the input, at a measured cost in physics (docs/processes.rst)",
    )
    p.add_argument(
        "--ilvr-nsr", type=real_option(0), default=1.5, metavar="R",
        help="with --ilvr: condition the states with sigma/a >= R (default 1.5)",
    )
    p.add_argument(
        "--guidance", type=real_option(0), default=0.0, metavar="Z",
        help="SSD super-resolution: read the input's signs as majority-rule block spins and "
        "guide every full-resolution step with their likelihood at scale Z (posterior "
        "sampling; 0 = off: the entry state only; about 3x the sampling time); for Ising "
        "models the likelihood is the exact majority rule marginalised over the block mean's "
        "posterior variance, measured on 128 Monte Carlo configurations (default 0; "
        "docs/processes.rst measures both)",
    )
    p.add_argument(
        "--particles", type=int_option(1), default=1, metavar="K",
        help="with --guidance: K weighted particles per input, one returned by its weight "
        "(twisted sequential Monte Carlo: removes guidance's approximation as K grows, at K "
        "times the guided sampling time; default 1, plain guidance)",
    )
    p.add_argument(
        "--plain-likelihood", action="store_true",
        help="with --guidance: the plain likelihood sigmoid(8 s mean) of the predicted signal "
        "instead (docs/processes.rst)",
    )
    p.add_argument(
        "--tau", type=real_option(0), default=None, metavar="T",
        help="SKILD super-resolution: enter at the first state whose modes with SNR >= T "
        "reach the input's size (default: the model file's recommendation, see export "
        "--sr-tau, else 0.1; smaller enters later, at more noise)",
    )
    entry = p.add_mutually_exclusive_group()
    entry.add_argument(
        "--calibrated", action="store_true", default=None,
        help="super-resolution of Ising majority blocks: draw the entry state from the "
        "calibrated q(x_start | y) (per-mode gains and residual variance fitted on 2,000 Monte "
        "Carlo configurations; docs/processes.rst). Default for SSD models; this turns it on "
        "for SKILD",
    )
    entry.add_argument(
        "--plain-entry", dest="calibrated", action="store_false",
        help="enter with the input scaled by one number instead (the default before the "
        "calibrated entry, and SKILD's default)",
    )
