"""Issue 15 on the command line: no silent wrong answers, every error one line and a code.

Exit codes: 0 the work is done; 1 the work itself failed (non-finite outputs - the file is
not written, an earlier one is removed -, a diverged sampler, an unwritable result, an
internal error); 2 usage (options, input files, configurations). Tracebacks only with
``--debug``. Each case checks the exit code, that stderr is one line with the command's
prefix, and the message.
"""

import errno
import re

import numpy as np
import pytest
import torch

from lineardiff.app.cli import main
from lineardiff.pretrained import load_model

TINY = """
[data]
name = "ising"
L = 8
n = 32
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
[train]
steps = 1
batch_size = 4
out = "{out}"
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 1-step SSD run at L = 8 and the input files of the cases, in one folder."""
    root = tmp_path_factory.mktemp("cli_errors")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY.format(cache=root / "cache", out=root / "run"))
    assert main(["train", "--config", str(cfg), "--quiet"]) == 0
    rng = np.random.default_rng(0)
    spins = np.sign(rng.normal(size=(3, 4, 4))).astype(np.float32)
    np.save(root / "ok.npy", spins)
    np.save(root / "huge.npy", np.full((2, 4, 4), 1e30))
    np.save(root / "far.npy", np.stack([spins[0], 500 * spins[1]]))
    np.save(root / "high.npy", 5 * spins)
    np.save(root / "complex.npy", spins * (1 + 1j))
    np.save(root / "no_pixels.npy", np.zeros((2, 0, 0)))
    np.save(root / "no_inputs.npy", np.zeros((0, 4, 4)))
    np.save(root / "strings.npy", np.full((2, 4, 4), "a"))
    np.save(root / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(root / "bool.npy", spins > 0)
    np.save(root / "rect.npy", np.ones((2, 4, 3)))
    bad = spins.copy()
    bad[1, 2, 3] = np.inf
    np.save(root / "inf.npy", bad)
    (root / "text.npy").write_text("0.5 0.5\n0.5 0.5\n")
    (root / "truncated.npy").write_bytes((root / "ok.npy").read_bytes()[:100])
    (root / "notes.txt").write_text("not an image\n")
    (root / "binary.toml").write_bytes(bytes(range(256)))
    np.save(root / "flat.npy", np.ones(16))
    np.save(root / "five.npy", np.ones((2, 5, 5)))
    (root / "garbage.safetensors").write_bytes(bytes(range(200)))
    (root / "a_folder").mkdir()
    return root


SEED_OVER = str(2**63)
RUN = ["--model", "{run}", "--steps", "2", "--quiet"]
UP = ["upscale", *RUN, "--out", "{tmp}/u", "--input-scale", "1", "--input"]
EV = ["evaluate", *RUN, "--out", "{tmp}/e", "--n", "2", "--n-mc", "20"]
TRAIN = ["train", "--config", "{tmp}/tiny.toml", "--quiet", "--set", 'train.out="{tmp}/t"']

# (argv, exit code, message regex): usage errors exit 2 with one line
CASES = [
    # inputs whose magnitude would make the sampler overflow: refused up front
    ([*UP, "{tmp}/huge.npy"], 2, r"--input: expected values in the data range \[-1, 1\] \(at most 100 in magnitude\), got magnitudes up to 1e\+30 \(the first such input: 0\); rescale the inputs or set --input-scale"),
    ([*UP, "{tmp}/far.npy"], 2, r"got magnitudes up to 500 \(the first such input: 1\)"),
    ([*UP[:-3], "--input-scale", "1e5", "--input", "{tmp}/ok.npy"], 2, r"got magnitudes up to 1e\+05 after --input-scale 1e\+05"),
    # bad input files
    ([*UP, "{tmp}/complex.npy"], 2, r"complex.npy: expected real values, got a complex64 array; pass its real part \(numpy.real\) or its magnitude \(numpy.abs\) explicitly"),
    ([*UP, "{tmp}/no_pixels.npy"], 2, r"no_pixels.npy: expected images of at least 1 x 1 pixels, got an array of shape \(2, 0, 0\)"),
    ([*UP, "{tmp}/no_inputs.npy"], 2, r"no_inputs.npy: expected at least one input, got an array of shape \(0, 4, 4\)"),
    ([*UP, "{tmp}/strings.npy"], 2, r"strings.npy: expected a numeric array, got dtype <U1$"),
    ([*UP, "{tmp}/objects.npy"], 2, r"objects.npy: expected a numeric array, got Python objects \(dtype object\), which are not loaded: unpickling can run code"),
    ([*UP, "{tmp}/bool.npy"], 2, r"bool.npy: expected a numeric array, got dtype bool; map 0/1 values with 2 \* x - 1"),
    ([*UP, "{tmp}/rect.npy"], 2, r"rect.npy: expected square images \(h = w\), got an array of shape \(2, 4, 3\)"),
    ([*UP, "{tmp}/text.npy"], 2, r"text.npy: expected a NumPy array file \(written by numpy.save\), got a file without the .npy signature: it is not a NumPy array file$"),
    ([*UP, "{tmp}/truncated.npy"], 2, r"truncated.npy: expected a readable .npy file, got .*expected \d+ bytes got \d+"),
    ([*UP, "{tmp}/inf.npy"], 2, r"inf.npy: expected finite values, got 1 NaN or inf value \(the first at index \(1, 2, 3\)\)"),
    ([*UP, "{tmp}/notes.txt"], 2, r"--input: expected a .npy array, a PNG/JPEG image or a folder of them, got '.*notes.txt' \(cannot identify image file"),
    # options
    ([*UP, "{tmp}/ok.npy", "--n", "-1"], 2, r"argument --n: expected an integer >= 0 \(0: all inputs\), got -1$"),
    ([*UP, "{tmp}/ok.npy", "--n", "5"], 2, r"--n: expected at most 3 \(the inputs in .*ok.npy\), got 5$"),
    ([*UP, "{tmp}/ok.npy", "--threads", "0"], 2, r"argument --threads: expected an integer >= 1, got 0$"),
    ([*UP, "{tmp}/ok.npy", "--threads", "-1"], 2, r"argument --threads: expected an integer >= 1, got -1$"),
    ([*UP, "{tmp}/ok.npy", "--steps", "0"], 2, r"argument --steps: expected an integer >= 1, got 0$"),
    ([*UP, "{tmp}/ok.npy", "--seed", SEED_OVER], 2, r"argument --seed: expected an integer in \[0, 9223372036854775807\], got 9223372036854775808$"),
    ([*UP, "{tmp}/ok.npy", "--ilvr-nsr", "nan"], 2, r"argument --ilvr-nsr: expected a finite number >= 0, got 'nan'$"),
    ([*UP, "{tmp}/ok.npy", "--guidance", "-1"], 2, r"argument --guidance: expected a finite number >= 0, got '-1'$"),
    ([*UP, "{tmp}/ok.npy", "--plain-likelihood", "--guidance", "0"], 2, r"--plain-likelihood: expected with --guidance > 0, got --guidance 0$"),
    ([*EV, "--task", "upscale", "--plain-likelihood", "--guidance", "0"], 2, r"--plain-likelihood: expected with --guidance > 0, got --guidance 0$"),
    ([*UP[:-3], "--input-scale", "inf", "--input", "{tmp}/ok.npy"], 2, r"argument --input-scale: expected a finite number > 0 or 'auto', got 'inf'$"),
    ([*UP[:-3], "--input-scale", "0", "--input", "{tmp}/ok.npy"], 2, r"argument --input-scale: expected a finite number > 0 or 'auto', got '0'$"),
    ([*UP[:-3], "--input-scale", "-1", "--input", "{tmp}/ok.npy"], 2, r"argument --input-scale: expected a finite number > 0 or 'auto', got '-1'$"),
    (["sample", *RUN, "--out", "{tmp}/s", "--seed", str(2**64)], 2, r"argument --seed: expected an integer in \[0, 9223372036854775807\], got 18446744073709551616$"),
    (["sample", *RUN, "--out", "{tmp}/s", "--seed", "-1"], 2, r"argument --seed: expected an integer in \[0, 9223372036854775807\], got -1$"),
    (["sample", *RUN, "--out", "{tmp}/s", "--n", "two"], 2, r"argument --n: expected an integer >= 1, got 'two'$"),
    (["sample", *RUN, "--out", "{tmp}/s", "--size", "1"], 2, r"argument --size: expected an integer >= 2, got 1$"),
    (["sample", *RUN, "--out", "{tmp}/s", "--threads", "0"], 2, r"argument --threads: expected an integer >= 1, got 0$"),
    ([*EV, "--task", "upscale", "--factor", "nan"], 2, r"argument --factor: expected a finite number, got 'nan'$"),
    ([*EV, "--task", "upscale", "--factor", "inf"], 2, r"argument --factor: expected a finite number, got 'inf'$"),
    ([*EV, "--n-mc", "0"], 2, r"argument --n-mc: expected an integer >= 2, got 0$"),
    ([*EV, "--n", "1"], 2, r"argument --n: expected an integer >= 2, got 1$"),
    ([*EV, "--seed", SEED_OVER], 2, r"argument --seed: expected an integer in \[0, 9223372036854775807\]"),
    (["demo", *RUN, "--out", "{tmp}/d", "--n-mc", "1"], 2, r"argument --n-mc: expected an integer >= 2, got 1$"),
    (["demo", *RUN, "--out", "{tmp}/d", "--threads", "0"], 2, r"argument --threads: expected an integer >= 1, got 0$"),
    (["results", "--models", "{run}", "--out", "{tmp}/r", "--n", "0"], 2, r"argument --n: expected an integer >= 2, got 0$"),
    (["sample", *RUN, "--out", "{tmp}/s", "--no-such-option"], 2, r"unrecognized arguments: --no-such-option$"),
    # configurations
    ([*TRAIN, "--set", "train.threads=0"], 2, r"config \[train\] threads: expected an integer >= 1, got 0$"),
    ([*TRAIN, "--set", "sample.seed=-1"], 2, r"config \[sample\] seed: expected an integer in \[0, 9223372036854775807\], got -1$"),
    ([*TRAIN, "--set", "train.sample_every=-1"], 2, r"config \[train\] sample_every: expected an integer >= 0, got -1$"),
    ([*TRAIN, "--set", "train.seed=-1"], 2, r"config \[train\]: TrainConfig: expected seed in \[0, 9223372036854775807\], got -1$"),
    (["train", "--config", "{tmp}/binary.toml"], 2, r"config .*binary.toml: expected a TOML file \(UTF-8 text\), got bytes that are not text \(byte 128: b'\\x80'\)$"),
    ([*TRAIN, "--set", 'data.cache_dir="/proc/forbidden"'], 2, r"config \[data\] cache_dir: expected a writable folder, got '/proc/forbidden' \(No such file or directory\); choose another, or leave it empty for the default"),
    # found by the second probe (issue 15)
    (["sample", "--model", "{tmp}/garbage.safetensors", "--out", "{tmp}/s", "--quiet"], 2, r"load_checkpoint: .*garbage.safetensors is corrupt or not a safetensors file"),
    (["sample", *RUN, "--out", "{tmp}/s", "--steps", "1e3"], 2, r"argument --steps: expected an integer >= 1, got '1e3'$"),
    ([*UP, "{tmp}/flat.npy"], 2, r"--input: expected an array \(n, h, w\) or \(n, C, h, w\), got \(16,\)$"),
    ([*UP, "{tmp}/five.npy"], 2, r"super_resolve: expected inputs at one of the model's resolutions \[4\], got 5$"),
    ([*EV, "--task", "upscale", "--factor", "3"], 2, r"evaluate_upscaling: expected a factor > 1 with L / factor an integer \(L = 8\), got 3$"),
    (["export", "{run}", "--to", "{tmp}/a_folder"], 2, r"export_model: expected out as a file path, got the folder '.*a_folder'"),
    ([*TRAIN, "--set", "train.lr=nan"], 2, r"config \[train\] lr: expected a finite number, got nan$"),
    ([*TRAIN, "--set", 'train.steps="10"'], 2, r"config \[train\] steps: expected an integer, got '10' \(str\)$"),
    # the work fails: exit 1
    (["train", "--config", "{tmp}/tiny.toml", "--quiet", "--set", 'train.out="{tmp}/diverged"', "--set", "train.lr=1e30", "--set", "train.steps=3"], 1, r"train: the loss became (inf|nan) at step \d+; lower lr$"),
    ([*TRAIN, "--set", 'data.cache_dir="{tmp}/tiny.toml/cache"'], 2, r"config \[data\] cache_dir: expected a writable folder, got '.*tiny.toml/cache' \(Not a directory\)"),
]


def _ids():
    out = []
    for i, (argv, _, _) in enumerate(CASES):
        opts = [a for a in argv[1:] if a.startswith("--") and a not in ("--quiet", "--model",
                                                                        "--steps", "--out")]
        last = argv[-1].rsplit("/", 1)[-1]
        out.append(f"{i}-{argv[0]}-{opts[-1].lstrip('-') if opts else ''}-{last}")
    return out


def run_cli(argv, files, tmp_path, capsys):
    argv = [a.format(run=files / "run", tmp=files) for a in argv]
    code = main(argv)
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("argv, code, message", CASES, ids=_ids())
def test_cli_errors_are_one_line_with_their_exit_code(files, tmp_path, capsys, argv, code,
                                                      message):
    got, err = run_cli(argv, files, tmp_path, capsys)
    assert got == code, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"lineardiff {argv[0]}: error: "), err
    assert "Traceback" not in err and "allow_pickle" not in err
    assert re.search(message, err), err


def test_inputs_outside_the_data_range_warn_below_the_limit(files, tmp_path, capsys):
    code, err = run_cli([*UP, "{tmp}/high.npy"], files, tmp_path, capsys)
    assert code == 0
    assert err == ("lineardiff upscale: warning: --input: values reach 5 (the first such input: "
                   "0), outside the data range [-1, 1]; the outputs may be poor")
    assert np.isfinite(np.load(files / "u" / "upscaled.npy")).all()


def test_an_unwritable_default_cache_is_named(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LINEARDIFF_CACHE", "/proc/forbidden")
    code, err = run_cli([*TRAIN, "--set", 'data.cache_dir=""'], files, tmp_path, capsys)
    assert code == 2
    assert err == ("lineardiff train: error: the Ising data cache folder '/proc/forbidden/ising' "
                   "is not writable (No such file or directory); set [data] cache_dir or the "
                   "LINEARDIFF_CACHE environment variable to a writable folder")


# ---------------------------------------------------------------- the work fails: exit 1


def _poison(monkeypatch, module, name):
    """Make ``module.name`` return its result with one NaN at index (0, 0, 1, 2)."""
    real = getattr(module, name)

    def poisoned(*args, **kwargs):
        x = real(*args, **kwargs)
        x[0, 0, 1, 2] = float("nan")
        return x

    monkeypatch.setattr(module, name, poisoned)


def test_nan_outputs_are_not_written_and_earlier_files_are_removed(files, tmp_path, capsys,
                                                                    monkeypatch):
    import lineardiff._generate as generate

    out = tmp_path / "u"
    up = [*UP[:-5], "--out", str(out), "--input-scale", "1", "--input", "{tmp}/ok.npy"]
    assert run_cli(up, files, tmp_path, capsys)[0] == 0  # an earlier, good result
    assert (out / "upscaled.npy").exists() and (out / "upscaled.png").exists()
    _poison(monkeypatch, generate, "super_resolve")
    code, err = run_cli(up, files, tmp_path, capsys)
    assert code == 1
    assert err == ("lineardiff upscale: error: upscale: expected finite outputs, got 1 NaN or inf "
                   "value (the first at index (0, 0, 1, 2)); upscaled.npy and upscaled.png not "
                   "written (the earlier upscaled.npy and upscaled.png removed)")
    assert sorted(p.name for p in out.iterdir()) == []  # no temporary files left either

    _poison(monkeypatch, generate, "generate")
    code, err = run_cli(["sample", *RUN, "--n", "2", "--out", str(tmp_path / "s")], files,
                        tmp_path, capsys)
    assert code == 1
    assert err == ("lineardiff sample: error: sample: expected finite outputs, got 1 NaN or inf "
                   "value (the first at index (0, 0, 1, 2)); samples.npy and samples.png not "
                   "written")
    assert not (tmp_path / "s" / "samples.npy").exists()


def test_non_finite_samples_in_an_evaluation_fail_the_work(files, tmp_path, capsys,
                                                          monkeypatch):
    import lineardiff.app.ising_eval as ising_eval

    _poison(monkeypatch, ising_eval, "generate")
    code, err = run_cli(EV, files, tmp_path, capsys)
    assert code == 1
    assert err == ("lineardiff evaluate: error: binarize: expected finite x, got 1 NaN or inf "
                   "value (the first at index (0, 1, 2))")


def test_a_model_that_outputs_nan_fails_the_work(files, tmp_path, capsys, monkeypatch):
    import lineardiff.app.pretrained as pretrained

    real = pretrained.load_model

    def broken(*args, **kwargs):  # a checkpoint cannot hold NaN weights: break them after
        m = real(*args, **kwargs)
        with torch.no_grad():
            for p in m.net.parameters():
                p.fill_(float("nan"))
        return m

    monkeypatch.setattr(pretrained, "load_model", broken)
    code, err = run_cli(["sample", *RUN, "--n", "2", "--out", str(tmp_path / "s")], files,
                        tmp_path, capsys)
    assert code == 1
    assert re.fullmatch(r"lineardiff sample: error: ancestral_sample: expected finite model "
                        r"output at t=\d+, got \d+ NaN or inf values \(the first at index "
                        r"\(0, 0, 0, 0\)\)", err), err
    assert not (tmp_path / "s" / "samples.npy").exists()


def test_a_full_disk_fails_the_work(files, tmp_path, capsys, monkeypatch):
    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    code, err = run_cli(["sample", *RUN, "--n", "2", "--out", str(tmp_path / "s")], files,
                        tmp_path, capsys)
    assert code == 1
    assert re.fullmatch(r"lineardiff sample: error: sample: could not write .*samples.npy "
                        r"\(No space left on device\)", err), err
    assert list((tmp_path / "s").iterdir()) == []


def test_internal_errors_are_one_line_and_debug_shows_the_traceback(files, tmp_path, capsys,
                                                                    monkeypatch):
    import lineardiff._generate as generate

    def bug(*args, **kwargs):
        raise KeyError("oops")

    monkeypatch.setattr(generate, "generate", bug)
    argv = ["sample", *RUN, "--n", "2", "--out", str(tmp_path / "s")]
    code, err = run_cli(argv, files, tmp_path, capsys)
    assert code == 1
    assert err == ("lineardiff sample: error: KeyError: 'oops' (rerun with --debug for the "
                   "traceback)")
    for debug in (["--debug", *argv], [*argv, "--debug"]):  # before or after the command
        with pytest.raises(KeyError, match="oops"):
            run_cli(debug, files, tmp_path, capsys)
    # usage errors too: --debug shows where they were raised
    with pytest.raises(ValueError, match=r"expected values in the data range"):
        run_cli(["--debug", *UP, "{tmp}/huge.npy"], files, tmp_path, capsys)


# ---------------------------------------------------------------- load_model's device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only build")
def test_load_model_on_a_missing_cuda_device_names_what_is_available(files):
    with pytest.raises(ValueError, match=re.escape(
            "load_model: expected device among the available devices (cpu), got 'cuda:0'; "
            "this torch build has no CUDA" if torch.version.cuda is None else
            "load_model: expected device among the available devices (cpu), got 'cuda:0'; "
            "no CUDA device is visible")):
        load_model(files / "run", device="cuda:0")


@pytest.mark.parametrize("device, exc, message", [
    ("cuda:99", ValueError, r"load_model: expected device among the available devices \(cpu"),
    ("gpu", ValueError, r"load_model: expected device such as 'cpu' or 'cuda:0', got 'gpu'$"),
    (0, TypeError, r"load_model: expected device as a str or torch.device, got 0$"),
])
def test_load_model_refuses_devices_it_cannot_use(files, device, exc, message):
    with pytest.raises(exc, match=message):
        load_model(files / "run", device=device)


def test_load_model_accepts_the_cpu(files):
    assert next(load_model(files / "run", device=torch.device("cpu")).net.parameters()).is_cpu
