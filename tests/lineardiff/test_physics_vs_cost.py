"""benchmarks/physics_vs_cost.py's report step: rows, first pass, table and figure.

The evaluation step runs ``lineardiff evaluate`` (covered by test_cli); here the cache is
written by hand in the layout that step writes, with the report fields it reads.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import physics_vs_cost as pvc  # noqa: E402


def _write(cache: Path, label, step, hours, zs, ps, passes, sampling=40.0, n=400, variance=None):
    folder = cache / f"{label}-{step}-n{n}-s200-seed31{'-err' if variance else ''}"
    folder.mkdir(parents=True)
    report = {
        "settings": {"n": n, "steps": 200, "seed": 31, "reverse_variance": variance},
        "seconds": {"sampling": sampling, "total": sampling + 5},
        "comparison": {
            "scalars": {k: {"z": z} for k, z in zs.items()},
            "curves": {k: {"pvalue": p} for k, p in ps.items()},
            "passes": passes,
        },
    }
    (folder / "report.json").write_text(json.dumps(report))
    cost = {"label": label, "step": step, "process": label, "train_hours": hours, "model": "m"}
    (folder / "cost.json").write_text(json.dumps(cost))


def test_report_rows_first_pass_table_and_figure(tmp_path):
    cache = tmp_path / "cache"
    _write(cache, "ddpm", 3250, 1.7, {"e": 3.2, "C": -3.8}, {"S": 5e-20, "G": 0.2}, False)
    _write(cache, "ssd", 9500, 3.3, {"e": -2.7, "U": 1.0}, {"S": 1e-6}, False)
    _write(cache, "ssd", 6000, 1.8, {"e": 2.0, "abs_m": -2.9}, {"G4c": 2e-3}, True, 32.0)
    _write(cache, "ssd", 11000, 3.7, {"e": float("inf")}, {"S": 0.5}, True)
    (cache / "stray").mkdir()  # a folder without cost.json is skipped
    rows = pvc.collect(cache)
    assert [(r["label"], r["step"]) for r in rows] == [
        ("ssd", 6000),
        ("ssd", 9500),
        ("ssd", 11000),
        ("ddpm", 3250),
    ]
    assert rows[0]["worst_abs_z"] == pytest.approx(2.9) and rows[0]["worst_scalar"] == "abs_m"
    assert rows[0]["worst_p"] == 2e-3 and rows[0]["worst_curve"] == "G4c"
    assert rows[0]["sampling_cpu_s_per_config"] == pytest.approx(32.0 / 400)
    assert rows[2]["worst_abs_z"] == float("inf")  # an infinite z is the worst, not dropped
    s = pvc.summary(rows)
    assert s["ssd"]["first_pass_hours"] == 1.8 and s["ssd"]["first_pass_step"] == 6000
    assert s["ddpm"]["first_pass_hours"] is None and s["ddpm"]["max_train_hours"] == 1.7
    out = tmp_path / "out"
    pvc.main(["report", "--cache", str(cache), "--out", str(out)])
    table = (out / "physics_vs_cost.rst.inc").read_text()
    assert table.count("   * - ") == 5 and "2.9 (abs_m)" in table and "5e-20 (S)" in table
    saved = json.loads((out / "physics_vs_cost.json").read_text())
    assert saved["summary"]["ssd"]["checkpoints"] == 3
    assert (out / "physics_vs_cost.png").stat().st_size > 10_000


def test_report_of_an_empty_cache_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no cost.json"):
        pvc.main(["report", "--cache", str(tmp_path), "--out", str(tmp_path / "o")])


def test_the_error_term_makes_its_own_curve(tmp_path):
    # the same checkpoint sampled with and without the denoiser's error term: two curves, and
    # the first pass counted within each
    cache = tmp_path / "cache"
    _write(cache, "ssd", 25000, 8.0, {"abs_m": 3.6}, {"G": 1e-5}, False)
    spectrum = "posterior + denoiser error spectrum (204 states, n = 256)"
    _write(cache, "ssd", 25000, 8.0, {"C": -1.9}, {"G4c": 0.26}, True, variance=spectrum)
    _write(cache, "ssd", 19000, 6.5, {"e": 2.0}, {"S": 0.01}, True, variance=spectrum)
    rows = pvc.collect(cache)
    assert [(r["label"], r["step"]) for r in rows] == [
        ("ssd", 25000),
        ("ssd + error", 19000),
        ("ssd + error", 25000),
    ]
    assert rows[1]["reverse_variance"] == spectrum and rows[0]["reverse_variance"] == "posterior"
    s = pvc.summary(rows)
    assert s["ssd"]["first_pass_hours"] is None
    assert s["ssd + error"]["first_pass_step"] == 19000
