"""Reports of evaluations: JSON (everything) and Markdown (tables a person reads)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from ..training._checkpoint import _umask

__all__ = ["comparison_table", "write_json", "write_text"]

_LABELS = {
    "e": "energy per site",
    "abs_m": "mean abs(m)",
    "m": "mean m",
    "m2": "mean m^2",
    "m4": "mean m^4",
    "U": "Binder U",
    "chi": "susceptibility chi",
    "C": "specific heat C",
    "seam": "seam energy",
}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)  # JSON has no inf/NaN
    if isinstance(x, Path):
        return str(x)
    return x


def write_text(path, text: str) -> Path:
    """Write a text file atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path, report: dict) -> Path:
    """Write a report as JSON (numpy values converted; inf and NaN as strings)."""
    return write_text(path, json.dumps(_jsonable(report), indent=2) + "\n")


def _fmt(v: float, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return str(v)
    return f"{v:.{digits}g}"


def comparison_table(comparison: dict) -> str:
    """Markdown tables of a :func:`lineardiff.metrics.compare` result (model = a, MC = b)."""
    rows = ["| observable | model | Monte Carlo | difference | s.e. | z |",
            "|---|---|---|---|---|---|"]
    for k, s in comparison["scalars"].items():
        rows.append(f"| {_LABELS.get(k, k)} | {_fmt(s['a'])} | {_fmt(s['b'])} | "
                    f"{_fmt(s['diff'], 3)} | {_fmt(s['se'], 3)} | {_fmt(s['z'], 3)} |")
    rows += ["", "| histogram | W1 | W1 threshold | KS | KS p |", "|---|---|---|---|---|"]
    for k, h in comparison["histograms"].items():
        rows.append(f"| {_LABELS.get(k, k)} | {_fmt(h['w1'], 3)} | {_fmt(h['w1_max'], 3)} | "
                    f"{_fmt(h['ks'], 3)} | {_fmt(h['ks_pvalue'], 3)} |")
    curves = comparison.get("curves") or {}
    if curves:
        rows += ["", "| curve | Hotelling chi^2 | dof | p | max deviation (s.e.) |",
                 "|---|---|---|---|---|"]
        for k, c in curves.items():
            rows.append(f"| {k} | {_fmt(c['chi2'], 4)} | {c['dof']} | {_fmt(c['pvalue'], 3)} | "
                        f"{_fmt(c['max_dev'], 3)} |")
    verdict = "**passes**" if comparison["passes"] else "**fails**"
    rows += ["", f"Pass rule of docs/ising.rst (thresholds scaled to the sample sizes): {verdict}."]
    if comparison["failures"]:
        rows += [""] + [f"- {f}" for f in comparison["failures"]]
    return "\n".join(rows)
