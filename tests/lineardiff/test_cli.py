"""The ``lineardiff`` command line end to end on tiny models: train, resume, export, sample,
upscale, evaluate, demo, and one-line usage errors with exit code 2."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import lineardiff
from lineardiff import load_checkpoint
from lineardiff.app.cli import build_parser, main
from lineardiff.pretrained import load_model

TINY = """
[data]
name = "ising"
L = 8
n = 200
cache_dir = "{cache}"
[process]
name = "ssd"
n_levels = 2
[model]
name = "flexi_unet"
base_channels = 8
channel_mult = [1, 2]
num_res_blocks = 1
attention_levels = []
num_groups = 4
padding_mode = "circular"
[train]
steps = 4
batch_size = 8
checkpoint_every = 2
sample_every = 2
sample_steps = 4
sample_count = 4
out = "{out}"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 4-step SSD run at L = 8 (shared by the tests that only read it)."""
    root = tmp_path_factory.mktemp("cli")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY.format(cache=root / "cache", out=root / "run"))
    assert main(["train", "--config", str(cfg), "--quiet"]) == 0
    return root, cfg


def test_train_writes_checkpoint_log_samples_and_resumes(run, capsys):
    root, cfg = run
    folder = root / "run"
    ck = load_checkpoint(folder / "checkpoint.safetensors")
    assert ck.step == 4
    assert ck.config["meta"]["command"].startswith("lineardiff train --config")
    assert json.loads((folder / "config.json").read_text())["data"]["L"] == 8
    rows = (folder / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and [r.split(",")[0] for r in rows[1:]] == list("1234")
    assert sorted(p.name for p in (folder / "samples").iterdir()) == [
        "step_0000002.png", "step_0000004.png"]
    # resume: the same command with more steps continues; the log holds each step once
    assert main(["train", "--config", str(cfg), "--quiet", "--set", "train.steps=6"]) == 0
    assert load_checkpoint(folder / "checkpoint.safetensors").step == 6
    rows = (folder / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == list("123456")
    # a changed configuration is refused, naming the difference
    code = main(["train", "--config", str(cfg), "--quiet", "--set", "train.lr=1e-3"])
    err = capsys.readouterr().err
    assert code == 2
    assert "was trained with another configuration (differs in [train] lr)" in err


def test_keep_every_writes_a_model_file_per_step_multiple(run, tmp_path, capsys):
    root, cfg = run
    out = tmp_path / "kept"
    args = ["train", "--config", str(cfg), "--quiet", "--out", str(out), "--set",
            "train.steps=8", "--set", "train.sample_every=0", "--set", "train.keep_every=4"]
    assert main(args) == 0
    kept = sorted(p.name for p in (out / "models").iterdir())
    assert kept == ["step_0000004.safetensors", "step_0000008.safetensors"]
    a, b = (load_model(out / "models" / name) for name in kept)
    assert (a.step, b.step) == (4, 8)
    assert 0 < a.meta["train_seconds"] < b.meta["train_seconds"]
    final = load_checkpoint(out / "checkpoint.safetensors")
    for k, v in b.net.state_dict().items():  # the EMA weights of that step
        torch.testing.assert_close(v, final.ema[k], rtol=0, atol=0)
    assert main([*args[:-1], "train.keep_every=3", "--out", str(tmp_path / "other")]) == 2
    assert "keep_every: expected a multiple of checkpoint_every = 2" in capsys.readouterr().err


def test_export_init_and_load_model(run, tmp_path):
    root, cfg = run
    out = tmp_path / "model.safetensors"
    assert main(["export", str(root / "run"), "--to", str(out)]) == 0
    m = load_model(out)
    ck = load_checkpoint(root / "run" / "checkpoint.safetensors")
    assert m.step == ck.step and m.prediction == "signal" and m.size == 8
    for k, v in m.net.state_dict().items():  # the EMA weights, not the live ones
        torch.testing.assert_close(v, ck.ema[k], rtol=0, atol=0)
    assert m.meta["train_seconds"] > 0
    assert load_checkpoint(out).optimizer is None  # no optimiser state shipped
    # continue from the exported model in a new folder: the step count carries on
    new = tmp_path / "continued"
    assert main(["train", "--config", str(cfg), "--quiet", "--out", str(new), "--init", str(out),
                 "--set", f"train.steps={m.step + 2}"]) == 0
    assert load_checkpoint(new / "checkpoint.safetensors").step == m.step + 2
    # the history travels: the new run records where it started, and its export adds the
    # earlier training time to its own
    assert main(["export", str(new), "--to", str(tmp_path / "m2.safetensors")]) == 0
    m2 = load_model(tmp_path / "m2.safetensors")
    assert m2.meta["initialised_from"]["step"] == m.step
    assert m2.meta["train_seconds"] > m.meta["train_seconds"]
    # --init from a run folder (its checkpoint records no time; its log.csv does): the new
    # run starts from that run's time, as an export of it would have recorded
    branch = tmp_path / "branch"
    assert main(["train", "--config", str(cfg), "--quiet", "--out", str(branch), "--init",
                 str(new), "--set", f"train.steps={m.step + 4}"]) == 0
    assert main(["export", str(branch), "--to", str(tmp_path / "m3.safetensors")]) == 0
    m3 = load_model(tmp_path / "m3.safetensors")
    assert m3.meta["initialised_from"]["train_seconds"] == pytest.approx(
        m2.meta["train_seconds"], rel=1e-9
    )
    assert m3.meta["train_seconds"] > m2.meta["train_seconds"]


def test_export_records_the_time_up_to_the_checkpoint_and_warns_without_a_log(run, tmp_path):
    import shutil

    from lineardiff.app.pretrained import export_model
    from lineardiff.app.runs import train_seconds

    root, _ = run
    log = root / "run" / "log.csv"
    ck = load_checkpoint(root / "run" / "checkpoint.safetensors")
    # a snapshot of a run that went on: only the log rows up to its step count
    snap = root / "run" / "snapshot.safetensors"
    shutil.copy(root / "run" / "checkpoint.safetensors", snap)
    rows = log.read_text().splitlines()
    copy = tmp_path / "later" / "checkpoint.safetensors"
    copy.parent.mkdir()
    shutil.copy(snap, copy)
    (copy.parent / "log.csv").write_text(log.read_text().replace(
        rows[2], rows[2].replace(rows[2].split(",")[0], str(ck.step + 5), 1)))
    seconds, counted = train_seconds(copy.parent / "log.csv", up_to_step=ck.step)
    assert counted == len(rows) - 2  # the row moved past the checkpoint is not counted
    # a checkpoint copied away from its run folder: the time cannot be recorded, and says so
    alone = tmp_path / "alone" / "checkpoint.safetensors"
    alone.parent.mkdir()
    shutil.copy(snap, alone)
    with pytest.warns(UserWarning, match="records no training time"):
        export_model(alone, tmp_path / "alone.safetensors")
    assert "train_seconds" not in load_model(tmp_path / "alone.safetensors").meta


def test_train_seconds_counts_cpu_time_and_falls_back_to_wall_time(tmp_path):
    from lineardiff.app.runs import train_seconds

    # a paused step: 100 s of wall time, 1 s of CPU; a row logged before cpu_seconds
    # existed (empty) counts its wall time; a malformed row is skipped
    log = tmp_path / "log.csv"
    log.write_text("step,loss,lr,grad_norm,seconds,resolution,cpu_seconds\n"
                   "1,0.5,0.1,1.0,2.0,8,\n2,0.5,0.1,1.0,100.0,8,1.0\n3,0.5,0.1,1.0,x,8,\n")
    assert train_seconds(log) == (3.0, 2)
    assert train_seconds(log, up_to_step=1) == (2.0, 1)


def test_sample_and_upscale_write_arrays_of_the_right_shape(run, tmp_path):
    root, _ = run
    model = str(root / "run")
    assert main(["sample", "--model", model, "--n", "3", "--steps", "4", "--out",
                 str(tmp_path / "s"), "--quiet", "--spin-flip"]) == 0
    x = np.load(tmp_path / "s" / "samples.npy")
    assert x.shape == (3, 1, 8, 8) and x.dtype == np.float32 and np.isfinite(x).all()
    assert (tmp_path / "s" / "samples.png").stat().st_size > 0
    np.save(tmp_path / "low.npy", np.sign(np.random.default_rng(0).normal(size=(2, 4, 4))))
    assert main(["upscale", "--model", model, "--input", str(tmp_path / "low.npy"), "--steps",
                 "4", "--out", str(tmp_path / "u"), "--quiet", "--consistency"]) == 0
    y = np.load(tmp_path / "u" / "upscaled.npy")
    assert y.shape == (2, 1, 8, 8) and np.isfinite(y).all()
    assert main(["upscale", "--model", model, "--input", str(tmp_path / "low.npy"), "--steps",
                 "4", "--out", str(tmp_path / "ug"), "--quiet", "--guidance", "1"]) == 0
    assert np.isfinite(np.load(tmp_path / "ug" / "upscaled.npy")).all()
    # PNG inputs: one file, or a folder of them (grey levels of the model's one channel)
    from PIL import Image

    (tmp_path / "pngs").mkdir()
    for i in range(2):
        Image.fromarray(np.full((4, 4), 255 * i, dtype=np.uint8)).save(tmp_path / "pngs" / f"{i}.png")
    for src, count in ((tmp_path / "pngs" / "1.png", 1), (tmp_path / "pngs", 2)):
        assert main(["upscale", "--model", model, "--input", str(src), "--steps", "3",
                     "--input-scale", "1", "--out", str(tmp_path / "p"), "--quiet"]) == 0
        assert np.load(tmp_path / "p" / "upscaled.npy").shape == (count, 1, 8, 8)


def test_evaluate_and_demo_write_reports(run, tmp_path):
    root, _ = run
    model = str(root / "run")
    assert main(["evaluate", "--model", model, "--task", "upscale", "--n", "4", "--steps", "3",
                 "--n-mc", "50", "--out", str(tmp_path / "e"), "--quiet"]) == 0
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["settings"]["n"] == 4 and report["settings"]["factor"] == 2
    assert 0 <= report["block_consistency"]["model"]["consistency"] <= 1
    assert report["block_consistency"]["truth"]["consistency"] == 1.0
    assert "comparison" in report and "seconds" in report
    assert report["settings"]["likelihood"] is None  # no guidance by default
    for extra, likelihood in ((["--guidance", "1"], "measured"),
                              (["--guidance", "1", "--plain-likelihood"], "plain")):
        assert main(["evaluate", "--model", model, "--task", "upscale", "--n", "3", "--steps",
                     "3", "--n-mc", "50", *extra, "--out",
                     str(tmp_path / "g"), "--quiet"]) == 0
        report = json.loads((tmp_path / "g" / "report.json").read_text())
        assert report["settings"]["likelihood"] == likelihood
    assert main(["demo", "--model", model, "--n", "4", "--steps", "3", "--sr-steps", "4",
                 "--n-mc", "50", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    md = (tmp_path / "d" / "report.md").read_text()
    assert "## Generation at L = 8" in md and "## Super-resolution 4 -> 8" in md
    assert "3 respaced steps (4 for super-resolution)" in md
    assert "calibrated per-mode estimate" in md  # SSD's default entry for block spins
    saved = json.loads((tmp_path / "d" / "report.json").read_text())
    assert saved["generation"]["settings"]["steps"] == 3
    assert saved["super_resolution"]["settings"]["steps"] == 4
    for name in ["generation_samples.png", "generation_G.png", "generation_G4c.png",
                 "generation_energy.png", "generation_abs_m.png", "sr2x_panels.png",
                 "report.json"]:
        assert (tmp_path / "d" / name).stat().st_size > 0, name


def test_calibrate_records_the_denoiser_error_that_sampling_then_uses(run, tmp_path):
    from lineardiff.app.pretrained import load_model as load

    root, _ = run
    out = tmp_path / "cal.safetensors"
    assert main(["calibrate", "--model", str(root / "run"), "--to", str(out), "--n", "6",
                 "--states", "5", "--quiet"]) == 0
    m = load(out)
    table = m.signal_mse
    assert table is not None and len(table.timesteps) >= 5 and table.n == 6
    assert m.meta["signal_mse"]["data"].startswith("Monte Carlo") and m.meta["train_seconds"] > 0
    assert bool((table.mse >= 0).all()) and table(m.process.T) == float(table.mse[-1])
    assert m.without_signal_mse().signal_mse is None and m.signal_mse is not None
    # the table is drawn into sampling by default: other samples than without it
    a = lineardiff.generate(m, 3, steps=4, seed=1, progress=False)
    b = lineardiff.generate(m, 3, steps=4, seed=1, progress=False, signal_mse=None)
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match=r"generate: expected signal_mse 'auto', a SignalMSE, "
                       r"a callable or None, got 'on'"):
        lineardiff.generate(m, 3, steps=4, signal_mse="on")
    for extra, expected in (([], "posterior + denoiser error"), (["--plain-variance"],
                                                                 "posterior")):
        assert main(["evaluate", "--model", str(out), "--n", "3", "--steps", "3", "--n-mc",
                     "40", "--out", str(tmp_path / "e"), "--quiet", *extra]) == 0
        report = json.loads((tmp_path / "e" / "report.json").read_text())
        assert report["settings"]["reverse_variance"].startswith(expected)
        assert (expected == "posterior") == (report["settings"]["reverse_variance"] == "posterior")


def test_results_runs_every_evaluation_of_a_model(run, tmp_path):
    root, _ = run
    assert main(["results", "--models", str(root / "run"), "--n", "3", "--steps", "3",
                 "--n-mc", "40", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [r["task"] for r in summary["rows"]] == ["generation", "super-resolution 4 -> 8"]
    table = (tmp_path / "r" / "tables.rst.inc").read_text()
    assert table.startswith(".. list-table::") and "Made by ``lineardiff results" in table
    assert (tmp_path / "r" / "run" / "upscale2x" / "sr2x_panels.png").stat().st_size > 0
    record = (tmp_path / "r" / "training.rst.inc").read_text()
    assert "``run``" in record and "steps" in record and "lineardiff train --config" in record
    # --update keeps the rows of models not evaluated now, each with its own command
    summary["rows"].append(dict(summary["rows"][0], model="other-model", n=999))
    (tmp_path / "r" / "results.json").write_text(json.dumps(summary))
    assert main(["results", "--models", str(root / "run"), "--n", "2", "--steps", "3",
                 "--n-mc", "40", "--out", str(tmp_path / "r"), "--quiet", "--update"]) == 0
    rows = json.loads((tmp_path / "r" / "results.json").read_text())["rows"]
    assert sorted((r["model"], r["n"]) for r in rows) == [("other-model", 999), ("run", 2),
                                                           ("run", 2)]
    table = (tmp_path / "r" / "tables.rst.inc").read_text()
    assert "other-model" in table and "--n 3" in table and "--n 2" in table
    assert main(["results", "--models", str(root / "run"), "--n", "2", "--steps", "3",
                 "--n-mc", "40", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "r" / "results.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"run"}  # without --update the table is replaced


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--config", "no-such.toml"], "config: no file 'no-such.toml'"),
        (["sample", "--model", "no-such-model", "--out", "{tmp}/s"], "no model file 'no-such-model'"),
        (["demo", "--model", "no-such-model", "--out", "/proc/forbidden"], "output folder '/proc/forbidden' is not writable"),
        (["upscale", "--model", "{run}", "--input", "{tmp}/missing.npy", "--out", "{tmp}/u"], "--input: no file or folder"),
        (["upscale", "--model", "{run}", "--input", "{tmp}/nan.npy", "--out", "{tmp}/u"], r"nan.npy: expected finite values, got 16 NaN or inf values \(the first at index \(0, 0, 0\)\)"),
        (["upscale", "--model", "{run}", "--input", "{tmp}/odd.npy", "--out", "{tmp}/u"], r"expected inputs at one of the model's resolutions \[4\], got 3"),
        (["upscale", "--model", "{run}", "--input", "{tmp}/rgb.npy", "--out", "{tmp}/u"], r"expected inputs with 1 channel\(s\), got \(1, 3, 4, 4\)"),
        (["upscale", "--model", "{run}", "--input", "{tmp}/flat.npy", "--out", "{tmp}/u"], r"--input: expected an array \(n, h, w\) or \(n, C, h, w\), got \(4, 4\)"),
        (["sample", "--model", "{run}", "--n", "0", "--out", "{tmp}/s"], "argument --n: expected an integer >= 1, got 0"),
        (["sample", "--model", "{tmp}/garbage.safetensors", "--out", "{tmp}/s"], "garbage.safetensors"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(run, tmp_path, capsys, argv, message):
    import re

    root, _ = run
    np.save(tmp_path / "nan.npy", np.full((1, 4, 4), np.nan))
    np.save(tmp_path / "odd.npy", np.ones((1, 3, 3)))
    np.save(tmp_path / "rgb.npy", np.ones((1, 3, 4, 4)))
    np.save(tmp_path / "flat.npy", np.ones((4, 4)))
    (tmp_path / "garbage.safetensors").write_bytes(b"not a checkpoint")
    argv = [a.format(tmp=tmp_path, run=root / "run") for a in argv]
    assert main(argv + ["--quiet"] if argv[0] != "train" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"lineardiff {argv[0]}: error: ")
    assert re.search(message, err), err


def test_help_documents_every_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"train", "sample", "upscale", "evaluate", "demo", "export",
                                "results", "calibrate"}
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help, f"{name} {action.option_strings} has no help"


def test_python_m_lineardiff_runs_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "lineardiff", "--help"], capture_output=True,
                         text=True, check=True)
    assert "train" in out.stdout and "demo" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "lineardiff", "train"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "--config" in bad.stderr


def _tiny(tmp_path, **replace):
    text = TINY.format(cache=tmp_path / "cache", out=tmp_path / "run")
    for old, new in replace.items():
        text = text.replace(old, new)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(text)
    assert main(["train", "--config", str(cfg), "--quiet", "--set", "train.steps=2",
                 "--set", "train.sample_every=0"]) == 0
    return tmp_path / "run"


def test_skild_upscales_by_a_non_integer_factor(tmp_path):
    run = _tiny(tmp_path, **{'"ssd"': '"skild"', "n_levels = 2": "", '"flexi_unet"': '"unet"'})
    m = load_model(run)
    assert m.meta["spectrum"]["alpha"] > 0  # the fitted spectrum travels with the model
    np.save(tmp_path / "low.npy", np.sign(np.random.default_rng(1).normal(size=(2, 6, 6))))
    assert main(["upscale", "--model", str(run), "--input", str(tmp_path / "low.npy"),
                 "--steps", "4", "--out", str(tmp_path / "u"), "--quiet"]) == 0
    assert np.load(tmp_path / "u" / "upscaled.npy").shape == (2, 1, 8, 8)  # 6 -> 8: x 4/3


def test_skild_super_resolution_evaluations_by_integer_and_non_integer_factors(tmp_path, capsys):
    run = _tiny(tmp_path, **{'"ssd"': '"skild"', "n_levels = 2": "", '"flexi_unet"': '"unet"'})
    common = ["--model", str(run), "--task", "upscale", "--n", "3", "--steps", "3", "--n-mc",
              "40", "--quiet"]
    assert main(["evaluate", *common, "--factor", "2", "--out", str(tmp_path / "e2")]) == 0
    report = json.loads((tmp_path / "e2" / "report.json").read_text())
    assert report["task"] == "super-resolution 4 -> 8"
    assert report["settings"]["input"] == "majority blocks"
    # the scale is E[v s_B] for the lowest-DCT-mode view v, between 0 and 1 for +-1 spins
    assert 0 < report["input_scale"] < 1
    assert report["block_consistency"]["truth"]["consistency"] == 1.0
    # the entry's SNR threshold and the calibrated entry, recorded in the report
    assert main(["evaluate", *common, "--factor", "2", "--tau", "0.02", "--calibrated",
                 "--out", str(tmp_path / "e2c")]) == 0
    settings = json.loads((tmp_path / "e2c" / "report.json").read_text())["settings"]
    assert settings["tau"] == 0.02 and settings["calibrated"] is True
    np.save(tmp_path / "blocks.npy", np.sign(np.random.default_rng(2).normal(size=(2, 4, 4))))
    assert main(["upscale", "--model", str(run), "--input", str(tmp_path / "blocks.npy"),
                 "--steps", "3", "--calibrated", "--tau", "0.05", "--out", str(tmp_path / "uc"),
                 "--quiet"]) == 0
    assert np.load(tmp_path / "uc" / "upscaled.npy").shape == (2, 1, 8, 8)
    assert main(["evaluate", *common, "--factor", "1.6", "--calibrated",
                 "--out", str(tmp_path / "e5c")]) == 2
    assert "expected calibrated=False unless the inputs are majority blocks" in (
        capsys.readouterr().err
    )
    assert main(["evaluate", *common, "--factor", "1.6", "--out", str(tmp_path / "e5")]) == 0
    report = json.loads((tmp_path / "e5" / "report.json").read_text())
    assert report["task"] == "super-resolution 5 -> 8" and report["settings"]["factor"] == 1.6
    assert report["settings"]["input"] == "lowest DCT modes" and "block_consistency" not in report
    assert (tmp_path / "e5" / "sr5to8_panels.png").stat().st_size > 0
    assert main(["results", "--models", str(run), "--n", "2", "--steps", "3", "--n-mc", "30",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "r" / "results.json").read_text())["rows"]
    assert [r["task"] for r in rows] == ["generation", "super-resolution 4 -> 8",
                                         "super-resolution 2 -> 8", "super-resolution 5 -> 8"]


def test_a_skild_model_file_recommends_its_entry_threshold(run, tmp_path, capsys):
    # export --sr-tau records tau in the model file; super_resolve, upscale and evaluate use
    # it when given none (the same draws as the explicit value), calibrate keeps it
    from lineardiff import super_resolve

    skild = _tiny(tmp_path, **{'"ssd"': '"skild"', "n_levels = 2": "", '"flexi_unet"': '"unet"'})
    plain = tmp_path / "plain.safetensors"
    assert main(["export", str(skild), "--to", str(plain)]) == 0
    assert load_model(plain).sr_tau is None
    file = tmp_path / "tau.safetensors"
    assert main(["export", str(skild), "--to", str(file), "--sr-tau", "0.02"]) == 0
    m = load_model(file)
    assert m.sr_tau == 0.02
    y = torch.sign(torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))) * 0.7
    kw = dict(steps=4, seed=1, progress=False)
    recommended = super_resolve(m, y, **kw)
    assert torch.equal(recommended, super_resolve(m, y, tau=0.02, **kw))
    assert m.process.start_step(4, tau=0.02) != m.process.start_step(4, tau=0.1)
    assert not torch.equal(recommended, super_resolve(m, y, tau=0.1, **kw))
    assert main(["evaluate", "--model", str(file), "--task", "upscale", "--n", "2", "--steps",
                 "3", "--n-mc", "30", "--quiet", "--out", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "report.json").read_text())["settings"]["tau"] == 0.02
    again = tmp_path / "calibrated.safetensors"
    assert main(["calibrate", "--model", str(file), "--to", str(again), "--n", "4",
                 "--states", "3", "--quiet"]) == 0
    assert load_model(again).sr_tau == 0.02
    capsys.readouterr()
    # only SKILD has the threshold; it must be positive
    assert main(["export", str(run[0] / "run"), "--to", str(tmp_path / "x.safetensors"), "--sr-tau",
                 "0.02"]) == 2
    assert "export_model: expected sr_tau only for a SKILD model, got a 'ssd' model" in (
        capsys.readouterr().err)
    with pytest.raises(ValueError, match=r"export_model: expected sr_tau in \(0, inf\), got 0.0"):
        lineardiff.pretrained.export_model(skild, tmp_path / "y.safetensors", sr_tau=0)


@pytest.mark.parametrize("factor, message", [
    ("3", r"expected a factor > 1 with L / factor an integer \(L = 8\), got 3"),
    ("1", r"expected a factor > 1 with L / factor an integer \(L = 8\), got 1"),
    ("1.6", r"expected an integer factor giving one of the model\'s resolutions \[4\] \(only SKILD takes non-integer factors\), "
            r"got 1.6"),
])
def test_evaluate_upscale_refuses_factors_the_process_cannot_take(run, tmp_path, capsys,
                                                                  factor, message):
    root, _ = run
    code = main(["evaluate", "--model", str(root / "run"), "--task", "upscale", "--factor",
                 factor, "--n", "2", "--steps", "3", "--out", str(tmp_path / "e"), "--quiet"])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)


def test_evaluate_upscaling_refuses_a_factor_that_is_not_a_number(run):
    from lineardiff.app.ising_eval import evaluate_upscaling

    root, _ = run
    with pytest.raises(TypeError, match="evaluate_upscaling: expected a number for factor, got str"):
        evaluate_upscaling(load_model(root / "run"), factor="2", n=2, steps=3)


def test_dfu_trains_on_mixed_sizes_and_samples_zero_shot_at_a_larger_size(tmp_path):
    run = _tiny(tmp_path, **{
        "L = 8\n": "L = 8\nsizes = [6, 8]\n", '"ssd"': '"ddpm"', "n_levels = 2": "",
        '"flexi_unet"': '"dfu"\nmodes = [[3, 2], [2, 2]]'})
    rows = (run / "log.csv").read_text().splitlines()[1:]
    assert {r.split(",")[5] for r in rows} <= {"6", "8"}
    assert main(["evaluate", "--model", str(run), "--task", "generation", "--size", "12",
                 "--n", "3", "--steps", "3", "--n-mc", "40", "--out", str(tmp_path / "z"),
                 "--quiet"]) == 0
    report = json.loads((tmp_path / "z" / "report.json").read_text())
    assert report["task"] == "zero-shot generation at L = 12"
    assert report["settings"]["L"] == 12 and report["settings"]["trained_L"] == 8
    # the same zero-shot samples from the command line
    assert main(["sample", "--model", str(run), "--size", "12", "--n", "3", "--steps", "3",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert np.load(tmp_path / "s" / "samples.npy").shape == (3, 1, 12, 12)
    # a denoiser error table for the zero-shot size, recorded beside the training size's
    assert load_model(run).at_size(12).signal_mse is None
    both = tmp_path / "both.safetensors"
    assert main(["calibrate", "--model", str(run), "--to", str(both), "--n", "4", "--states",
                 "3", "--quiet"]) == 0
    assert main(["calibrate", "--model", str(both), "--to", str(both), "--size", "12", "--n",
                 "4", "--states", "3", "--quiet"]) == 0
    m = load_model(both)
    assert m.signal_mse is not None and m.at_size(12).signal_mse is not None
    assert m.meta["signal_mse"]["shape"] == [1, 8, 8]
    assert m.meta["signal_mse_at"]["12"]["shape"] == [1, 12, 12]
    assert m.at_size(10).signal_mse is None
    assert m.at_size(12).without_signal_mse().signal_mse is None


def test_skild_only_options_are_refused_for_ssd(run, tmp_path, capsys):
    root, _ = run
    common = ["--model", str(root / "run"), "--task", "upscale", "--n", "2", "--steps", "3",
              "--n-mc", "20", "--quiet", "--out", str(tmp_path / "x")]
    assert main(["evaluate", *common, "--tau", "0.02"]) == 2
    assert "super_resolve: expected tau=None for a model on a resolution pyramid" in (
        capsys.readouterr().err
    )


def test_guided_super_resolution_with_particles(run, tmp_path, capsys):
    # --particles K walks K weighted particles per input (twisted SMC) and returns one each;
    # recorded in the report; refused without guidance
    root, _ = run
    common = ["--model", str(root / "run"), "--task", "upscale", "--n", "2", "--steps", "3",
              "--n-mc", "20", "--quiet", "--guidance", "1"]
    assert main(["evaluate", *common, "--particles", "3", "--out", str(tmp_path / "e")]) == 0
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["settings"]["particles"] == 3 and report["settings"]["guidance"] == 1
    np.save(tmp_path / "blocks.npy", np.sign(np.random.default_rng(2).normal(size=(2, 4, 4))))
    assert main(["upscale", "--model", str(root / "run"), "--input", str(tmp_path / "blocks.npy"),
                 "--steps", "3", "--guidance", "1", "--particles", "2",
                 "--out", str(tmp_path / "u"), "--quiet"]) == 0
    assert np.load(tmp_path / "u" / "upscaled.npy").shape == (2, 1, 8, 8)
    capsys.readouterr()
    assert main(["upscale", "--model", str(root / "run"), "--input", str(tmp_path / "blocks.npy"),
                 "--steps", "3", "--particles", "2", "--out", str(tmp_path / "v"),
                 "--quiet"]) == 2
    assert "super_resolve: expected particles > 1 only with guidance > 0, got particles=2" in (
        capsys.readouterr().err)


def test_ssd_super_resolution_enters_calibrated_by_default(run, tmp_path, capsys):
    # the calibrated entry (per-mode gains fitted on Monte Carlo) is SSD's default for
    # majority blocks; --plain-entry turns it off and both are recorded; the two flags exclude
    # each other
    root, _ = run
    common = ["--model", str(root / "run"), "--task", "upscale", "--n", "2", "--steps", "3",
              "--n-mc", "20", "--quiet"]
    for flags, expected in (([], True), (["--plain-entry"], False), (["--calibrated"], True)):
        out = tmp_path / f"e{len(flags)}{expected}"
        assert main(["evaluate", *common, *flags, "--out", str(out)]) == 0
        assert json.loads((out / "report.json").read_text())["settings"]["calibrated"] is expected
    assert main(["evaluate", *common, "--calibrated", "--plain-entry", "--out",
                 str(tmp_path / "x")]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    np.save(tmp_path / "blocks.npy", np.sign(np.random.default_rng(2).normal(size=(2, 4, 4))))
    outs = {}
    for flags in ([], ["--plain-entry"]):
        out = tmp_path / f"u{len(flags)}"
        assert main(["upscale", "--model", str(root / "run"), "--input",
                     str(tmp_path / "blocks.npy"), "--steps", "3", "--out", str(out),
                     "--quiet", *flags]) == 0
        outs[len(flags)] = np.load(out / "upscaled.npy")
    assert outs[0].shape == (2, 1, 8, 8) and not np.array_equal(outs[0], outs[1])


def test_zero_shot_is_refused_for_flexi_unet_models(run, capsys):
    root, _ = run
    with pytest.raises(ValueError, match="a Flexi-UNet / SSD model runs only on its training"):
        load_model(root / "run").at_size(16)
    assert main(["evaluate", "--model", str(root / "run"), "--size", "16", "--quiet",
                 "--out", str(root / "ev")]) == 2
    assert "zero-shot sizes need a 'unet' or 'dfu' model" in capsys.readouterr().err
    assert main(["sample", "--model", str(root / "run"), "--size", "16", "--quiet",
                 "--out", str(root / "sz")]) == 2
    assert "zero-shot sizes need a 'unet' or 'dfu' model" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_fid_task_with_a_stand_in_feature_network(tmp_path):
    run = _tiny(tmp_path, **{'name = "ising"\nL = 8\nn = 200\ncache_dir = "' +
                             str(tmp_path / "cache") + '"': 'name = "digits"\nsize = 8',
                             '"ssd"': '"ddpm"', "n_levels = 2": "", '"flexi_unet"': '"unet"',
                             'padding_mode = "circular"': ""})
    net = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3),
                                               torch.nn.AdaptiveAvgPool2d(1),
                                               torch.nn.Flatten()))
    net.save(str(tmp_path / "standin.pt"))
    assert main(["evaluate", "--model", str(run), "--task", "fid", "--inception",
                 str(tmp_path / "standin.pt"), "--n", "6", "--steps", "3", "--out",
                 str(tmp_path / "f"), "--quiet"]) == 0
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert report["settings"]["n_reference"] == 1797 and report["fid"] > 0
    assert "FID" in (tmp_path / "f" / "report.md").read_text()


def test_calibrating_at_another_size_needs_ising_data(monkeypatch, tmp_path):
    # other data has no fresh samples at an arbitrary size: refused before any work
    import types

    import lineardiff.app.calibrate as calibrate

    fake = types.SimpleNamespace(config={"data": {"name": "digits"}})
    monkeypatch.setattr(calibrate, "load_model", lambda model: fake)
    with pytest.raises(ValueError, match="calibrate_model: expected size only for Ising models "
                                         r"\(fresh Monte Carlo at any size\), got data 'digits'"):
        calibrate.calibrate_model("digits", tmp_path / "x.safetensors", size=12)
