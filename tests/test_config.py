"""Config validation: defaults filled, and every mistake named by its key in one line."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.conftest import REPO, load_shipped_config
from vtrbench import config


def test_shipped_configs_have_their_own_results_root():
    """Each config file that names a run writes under its own results/{run_name}; overlays (no run_name) add to
    the config they are given after (e.g. config/plateau.yaml adds the budget test to the default run)."""
    names = {}
    for path in sorted((REPO / "config").glob("*.yaml")):
        run_name = yaml.safe_load(path.read_text()).get("run_name")
        if path.name != "schema.yaml" and run_name is not None:
            assert run_name not in names, f"{path.name} and {names.get(run_name)} share run_name {run_name!r}"
            names[run_name] = path.name
    assert len(names) >= 6


def test_every_shipped_config_validates_and_gets_defaults():
    shipped = sorted(p for p in (REPO / "config").glob("*.yaml") if p.name != "schema.yaml")
    assert len(shipped) >= 6
    for path in shipped:
        cfg = load_shipped_config(path)
        assert cfg["train"]["on_nonfinite"] in ("stop", "skip")  # present although no config sets it: a default


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train": {"batch_size": -4}}, r"train\.batch_size: -4 is less than the minimum"),
        ({"train": {"stepz": 3}}, r"train.stepz: unknown key; allowed here: amp, "),
        ({"train": {"frames": 0}}, r"train\.frames: 0 is less than the minimum"),
        ({"methods": {"x": {"class": "nope"}}}, r"methods\.x: unknown method class 'nope'; choose one of"),
        ({"methods": {"x": {"class": "dual_encoder", "pooling": "max"}}}, r"pooling must be 'mean' or 'seq'"),
        ({"methods": {"x": {"class": "cret", "global_loss": "ce"}}}, r"global_loss must be 'gees' or 'nce'"),
        (
            {"methods": {"x": {"class": "cret", "alhpa": 1}}},
            r"methods\.x: unknown option\(s\) alhpa; allowed:",
        ),
        ({"dataset": {"name": "msrvtt"}}, r"dataset\.data_root"),
        ({"train": {"frames": 99}}, r"train\.frames: cannot sample 99 frames from the dataset\.frames=4"),
        ({"seeds": []}, r"seeds: \[\] should be non-empty"),
        (
            {"methods": {"cret": {"num_centres": "8"}}},
            r"^config error at methods\.cret\.num_centres: expected an integer, got '8'",
        ),
        ({"methods": {"cret": {"use_ccm": 1}}}, r"methods\.cret\.use_ccm: expected true or false, got 1"),
        ({"methods": {"rerank": {"k": [2, "4"]}}}, r"methods\.rerank\.k: expected a list of integers"),
        (
            {"methods": {"dual/mean": {"class": "cret"}}},
            r"methods: the name 'dual/mean' cannot be a result folder and a Snakemake wildcard",
        ),
        ({"methods": {"my method": {"class": "cret"}}}, r"methods: the name 'my method' cannot be"),
        ({"methods": {"r": {"class": "rerank", "first": "dual_seq"}}}, r"methods\.r: 'second' is a required property"),
        ({"latency": {"gallery_sizes": [8, 10**12]}}, r"latency\.gallery_sizes: a gallery of 1,000,000,000,000 videos"),
        ({"plateau": {"methods": ["cret", "rerank"]}}, r"plateau\.methods: 'rerank' is not a trained method"),
        ({"plateau": {"methods": ["crett"]}}, r"plateau\.methods: 'crett' is not a trained method"),
    ],
)
def test_bad_values_name_the_key(smoke_config, override, message):
    cfg = config.deep_update(copy.deepcopy(smoke_config), override)
    with pytest.raises(config.ConfigError, match=message) as err:
        config.validate(cfg)
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(config.ConfigError, match="config file not found"):
        config.load(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.load(bad)
