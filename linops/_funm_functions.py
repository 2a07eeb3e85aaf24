"""The functions ``f`` of :func:`linops.funm` and their domains.

The named functions (``sqrt``, ``invsqrt``, ``exp``, ``log``) and the domain each needs, the
check of a user callable's output, and the check of computed eigenvalues (or Ritz values)
against ``f``'s domain up to rounding, shared by the exact, dense and Lanczos routes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._utils import format_shape

#: an eigenvalue at most this many eps of ||A|| is zero to rounding (for invsqrt and log)
PD_FLOOR = 100


def _named(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return {
        "sqrt": torch.sqrt,
        "invsqrt": torch.rsqrt,
        "exp": torch.exp,
        "log": torch.log,
    }[name]


# the domain each named function needs: "psd" (>= 0), "pd" (> 0), or None
_DOMAIN = {"sqrt": "psd", "invsqrt": "pd", "exp": None, "log": "pd"}


def _checked(fn: Callable, where: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A user function with its output checked: a tensor of its input's shape and kind."""
    label = getattr(fn, "__name__", type(fn).__name__)

    def call(x: torch.Tensor) -> torch.Tensor:
        y = fn(x)
        if not isinstance(y, torch.Tensor):
            raise ValueError(
                f"{where}: expected f ({label}) to return a tensor (it is applied elementwise "
                f"to a tensor of eigenvalues), got {type(y).__name__}"
            )
        if y.shape != x.shape:
            raise ValueError(
                f"{where}: expected f ({label}) to return the shape of its input (it is "
                f"applied elementwise to a tensor of eigenvalues), got shape "
                f"{format_shape(y.shape)} for an input of shape {format_shape(x.shape)}"
            )
        if not y.is_floating_point():
            raise ValueError(
                f"{where}: expected f ({label}) to return real floating values, got {y.dtype}"
            )
        return y

    call.__name__ = label
    return call


def _num(x) -> float:
    """A scalar as a Python float, for messages and scales only (never for values)."""
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def _spectrum_checker(name: str | None, where: str, dtype: torch.dtype, scale_hint: float):
    """A function that raises on eigenvalues outside ``f``'s domain, beyond rounding.

    For ``sqrt``, values within ``1000 eps * scale`` below zero are rounding (a PSD
    operator's computed eigenvalues scatter by ``~eps ||A||`` around the true ones) and are
    clamped to zero by :func:`_clamp`. For ``invsqrt`` and ``log`` an eigenvalue at most
    ``100 eps * scale`` is zero to that rounding: ``f`` of it would be a finite number of
    no meaning (``log(1e-30) = -69``), so it is refused as well. NaN eigenvalues (an
    operator holding NaN) are refused for every ``f``.
    """
    domain = _DOMAIN.get(name) if name is not None else None
    eps = torch.finfo(dtype).eps

    def check(eig: torch.Tensor, location: Callable[[int], str] | None = None) -> None:
        if eig.numel() == 0:
            return
        eig = eig.detach()
        if not bool(torch.isfinite(eig).all()):
            idx = int((~torch.isfinite(eig)).reshape(-1).nonzero()[0, 0])
            where_txt = location(idx) if location is not None else ""
            raise ValueError(
                f"{where}: expected an operator with finite entries, got an eigenvalue "
                f"{float(eig.reshape(-1)[idx])}{where_txt}"
            )
        if domain is None:
            return
        scale = max(scale_hint, float(eig.abs().max()))
        low = float(eig.min())
        if domain == "psd":
            floor = -1000 * eps * scale
            bad = low < floor
            allowed = f"rounding allows down to {floor:.3g}"
        else:
            floor = PD_FLOOR * eps * scale
            bad = low <= floor
            allowed = (
                "it must be > 0"
                if low <= 0
                else f"it must exceed {PD_FLOOR} eps ||A|| = {floor:.3g}, smaller is zero to "
                "rounding (A is singular to working precision)"
            )
        if bad:
            idx = int(eig.reshape(-1).argmin())
            where_txt = location(idx) if location is not None else ""
            need = "positive semidefinite" if domain == "psd" else "positive definite"
            raise ValueError(
                f"{where}: {name} needs a {need} operator, got an eigenvalue {low:.6g}"
                f"{where_txt}; {allowed}"
            )

    return check


def _clamp(eig: torch.Tensor, name: str | None) -> torch.Tensor:
    return eig.clamp_min(0) if name == "sqrt" else eig
