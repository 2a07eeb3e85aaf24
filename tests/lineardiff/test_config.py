"""Run configurations: every key validated, overrides, builders, shipped configs."""

import pytest
import torch

import lineardiff
import models
from lineardiff.app.config import (
    ConfigError,
    apply_overrides,
    build_model,
    build_process,
    data_shape,
    load_config,
    parse_config,
    shipped_configs,
)

BASE = """
[data]
name = "ising"
L = 16
[process]
name = "ssd"
n_levels = 3
[model]
name = "flexi_unet"
base_channels = 8
channel_mult = [1, 2, 2]
num_groups = 4
attention_levels = []
[train]
steps = 10
"""


def with_lines(**tables):
    """BASE with extra ``key = value`` lines appended to the given tables."""
    text = BASE
    for table, line in tables.items():
        text = text.replace(f"[{table}]\n", f"[{table}]\n{line}\n", 1)
    return text


def test_valid_config_builds_the_configured_objects():
    cfg = parse_config(BASE)
    assert data_shape(cfg) == (1, 16, 16)
    process = build_process(cfg)
    assert isinstance(process, lineardiff.ScaleSpaceDiffusion)
    assert process.resolutions == (4, 8, 16)
    net = build_model(cfg)
    assert isinstance(net, models.FlexiUNet)
    assert net.resolutions == (16, 8, 4) and net.widths == (8, 16, 16)
    assert cfg["train"] == {"steps": 10} and cfg["sample"] == {}


@pytest.mark.parametrize(
    "text, match",
    [
        (
            with_lines(data="colour = 1"),
            r"config \[data\]: unknown key 'colour'; expected one of L",
        ),
        (with_lines(model="width = 3"), r"config \[model\]: unknown key 'width'"),
        (with_lines(train="stepz = 3"), r"config \[train\]: unknown key 'stepz'"),
        (BASE + "\n[extra]\na = 1\n", r"config: unknown table \[extra\]"),
        (
            BASE.replace("steps = 10", 'steps = "ten"'),
            r"config \[train\] steps: expected an integer, got 'ten'",
        ),
        (with_lines(train="lr = true"), r"config \[train\] lr: expected a number, got True"),
        (with_lines(model="padding_mode = 3"), r"config \[model\] padding_mode: expected a string"),
        (with_lines(model="num_res_blocks = 1.5"), r"num_res_blocks: expected an integer"),
        (
            BASE.replace('name = "ssd"', 'name = "ssdd"'),
            r"config \[process\] name: expected one of bd, ddpm, skild, ssd, ve, got 'ssdd'",
        ),
        (BASE.replace("L = 16\n", ""), r"config \[data\]: missing required key 'L'"),
        (BASE.replace("[train]\nsteps = 10\n", ""), r"config: missing table \[train\]"),
        (
            BASE.replace('"flexi_unet"', '"unet"'),
            r"SSD changes the resolution between steps and needs 'flexi_unet', got 'unet'",
        ),
        (
            BASE.replace('"ssd"', '"ddpm"').replace("n_levels = 3\n", ""),
            r"'flexi_unet' is for the 'ssd' process, got process 'ddpm'",
        ),
        (
            BASE.replace("n_levels = 3", "n_levels = 6"),
            r"n_levels: expected a level count whose coarsest size 16 / 2\^\(n_levels - 1\) is an integer, got 6",
        ),
        (
            BASE.replace("channel_mult = [1, 2, 2]", "channel_mult = [1, 2]"),
            r"expected at least n_levels = 3 entries",
        ),
        (with_lines(train='prediction = "x0"'), r"prediction: expected 'signal', 'eps' or ''"),
        (
            with_lines(train='symmetries = ["mirror"]'),
            r"config \[train\]: expected symmetries entries from \['sign', 'dihedral', 'translate'\], got 'mirror'",
        ),
        (
            with_lines(train='symmetries = "sign"'),
            r"config \[train\] symmetries: expected a list, got 'sign'",
        ),
        ("[data\n", r"config: not valid TOML"),
    ],
)
def test_bad_configs_name_the_table_and_key(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(text)


def test_symmetries_and_lr_decay_are_train_keys_and_the_decay_may_change_on_resume():
    from lineardiff.app.runs import _comparable

    cfg = parse_config(with_lines(train='symmetries = ["translate", "sign"]\nlr_decay_steps = 5'))
    assert cfg["train"]["symmetries"] == ["translate", "sign"]
    assert lineardiff.TrainConfig(steps=10, symmetries=cfg["train"]["symmetries"]).symmetries == (
        "sign",
        "translate",
    )
    other = parse_config(with_lines(train='symmetries = ["translate", "sign"]\nlr_decay_steps = 9'))
    assert _comparable(cfg) == _comparable(other)  # a schedule, like steps
    assert _comparable(cfg) != _comparable(parse_config(BASE))  # the data law is not


def test_impossible_values_are_reported_by_the_builders():
    cfg = parse_config(BASE.replace("num_groups = 4", "num_groups = 3"))
    with pytest.raises(ConfigError, match=r"config \[model\]: .*divisible by num_groups=3"):
        build_model(cfg)
    cfg = parse_config(
        BASE.replace('"ssd"', '"ddpm"')
        .replace("n_levels = 3\n", 'schedule = "nope"\n')
        .replace('"flexi_unet"', '"unet"')
    )
    with pytest.raises(ConfigError, match=r"config \[process\]: "):
        build_process(cfg)


def test_overrides_take_toml_values_and_bare_strings():
    raw = {"train": {"steps": 5}, "model": {}}
    out = apply_overrides(
        raw,
        [
            "train.steps=7",
            "model.channel_mult=[1, 2]",
            "train.out=runs/x",
            'train.prediction="eps"',
            "train.lr=1e-3",
        ],
    )
    assert out == {
        "train": {"steps": 7, "out": "runs/x", "prediction": "eps", "lr": 1e-3},
        "model": {"channel_mult": [1, 2]},
    }
    assert raw == {"train": {"steps": 5}, "model": {}}  # the input is not modified
    for bad in ["steps=3", "train.steps", ".x=1", "train.=1"]:
        with pytest.raises(ConfigError, match="expected 'table.key=value'"):
            apply_overrides(raw, [bad])


def test_load_config_file_overrides_and_missing_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(BASE)
    cfg = load_config(f, ["train.steps=3", "model.base_channels=4"])
    assert cfg["train"]["steps"] == 3 and cfg["model"]["base_channels"] == 4
    with pytest.raises(
        ConfigError,
        match=r"config: no file '.*nope.toml'; expected a TOML file or one of the shipped configs .*ising32-ssd",
    ):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("name", sorted(shipped_configs()))
def test_shipped_configs_validate_and_build(name):
    cfg = load_config(name)
    net = build_model(cfg)
    # random +-1 images: SKILD fits its noise spectrum to them (constant data have none)
    data = torch.randn(4, *data_shape(cfg), generator=torch.Generator().manual_seed(0)).sign()
    process = build_process(cfg, data)
    x = torch.zeros(2, *process.shape_at(0))
    assert net(x, torch.tensor([1, 2])).shape == x.shape
