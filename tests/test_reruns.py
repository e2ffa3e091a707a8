"""Reruns that never lose or wedge (issue #16): each test replays one defect a new user hit on the old layout.

1. a changed value made Snakemake delete the old run and the job then refused its checkpoint;
2. a job killed after its final checkpoint could never finish (logs never written again);
3. a failing job's one-line error did not reach the console;
4. links between config entries (init_from, first, second), repeated seeds and command-line values were not checked;
5. file-system errors ended in tracebacks (an unwritable --out, missing or truncated Arrow files).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import REPO, copy_workflow, snakemake_env
from vtrbench import config, plan
from vtrbench.cli import main
from vtrbench.runs import build, effective_train, resolved_config

SMOKE = str(REPO / "config" / "smoke.yaml")


def _snakemake(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=folder, env=snakemake_env(), capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc


def _small(run_name: str, **train: object) -> dict:
    """The smoke config with two methods and no timing steps: a workflow run of a few seconds."""
    cfg = yaml.safe_load(Path(SMOKE).read_text())
    cfg.update(run_name=run_name, latency={"enabled": False}, throughput={"enabled": False})
    cfg["methods"] = {k: cfg["methods"][k] for k in ("dual_mean", "cret")}
    cfg["train"].update(train)
    return cfg


# --- 1. a changed value: new folders, the old run untouched --------------------------------------------------------


@pytest.mark.slow
def test_changed_value_keeps_the_old_run_and_trains_the_new_one(tmp_path):
    copy_workflow(tmp_path)
    path = tmp_path / "config" / "mine.yaml"
    path.write_text(yaml.safe_dump(_small("mine")))
    _snakemake(tmp_path, "--configfile", str(path))
    old = {p: p.read_bytes() for p in (tmp_path / "results" / "mine" / "runs").glob("*/*/seed0/model.pt")}
    assert len(old) == 2

    path.write_text(yaml.safe_dump(_small("mine", lr=0.002)))  # change one value, run again
    rerun = _snakemake(tmp_path, "--configfile", str(path))
    assert "written for a different" not in rerun.stdout + rerun.stderr
    for model, content in old.items():
        assert model.read_bytes() == content  # the old run: still there, byte for byte
        assert (model.parent / "metrics.json").exists()
    new = set((tmp_path / "results" / "mine" / "runs").glob("*/*/seed0/model.pt")) - set(old)
    assert len(new) == 2  # one new folder per method (its fingerprint follows train.lr)
    for model in new:
        assert json.loads((model.parent.parent / "config.json").read_text())["train"]["lr"] == 0.002
    assert "Nothing to be done" in _snakemake(tmp_path, "--configfile", str(path), "-n").stdout


@pytest.mark.slow
def test_smoke_then_default_reuses_and_destroys_nothing(smoke_run):
    folder, _, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = {p: p.stat().st_mtime_ns for p in (folder / "results" / "smoke").rglob("*") if p.is_file()}
    dry = _snakemake(folder, "-n")  # `make run`'s target: the default config, after a smoke run
    planned = dry.stdout + dry.stderr
    assert "results/synthvtt-default/" in planned and "results/smoke/" not in planned
    after = {p: p.stat().st_mtime_ns for p in (folder / "results" / "smoke").rglob("*") if p.is_file()}
    assert after == before


# --- 2. killed after the final checkpoint ---------------------------------------------------------------------------


def test_killed_after_the_final_checkpoint_finishes_on_rerun(smoke_config, smoke_data, tmp_path, monkeypatch):
    from vtrbench import train as train_lib

    reference = tmp_path / "reference"
    train_lib.train(smoke_config, "cret", 0, smoke_data, reference)

    out = tmp_path / "run"

    def killed(*args, **kwargs):  # the job dies between the last last.pt and model.pt
        raise KeyboardInterrupt

    monkeypatch.setattr(train_lib, "_finish", killed)
    with pytest.raises(KeyboardInterrupt):
        train_lib.train(smoke_config, "cret", 0, smoke_data, out)
    monkeypatch.undo()
    for name in ("train_log.csv", "val_log.csv"):  # what --rerun-incomplete deletes
        (out / name).unlink()
    assert torch.load(out / "checkpoint" / "last.pt", weights_only=False)["step"] == smoke_config["train"]["steps"]

    train_lib.train(smoke_config, "cret", 0, smoke_data, out)  # the rerun: nothing left to train, files written
    timing = ["train_seconds", "samples_per_s"]  # the clock differs between two runs, nothing else may
    for name in ("train_log.csv", "val_log.csv"):
        ours, theirs = pd.read_csv(out / name), pd.read_csv(reference / name)
        pd.testing.assert_frame_equal(
            ours.drop(columns=timing, errors="ignore"), theirs.drop(columns=timing, errors="ignore")
        )
    ours, theirs = (
        torch.load(out / "model.pt", weights_only=False),
        torch.load(reference / "model.pt", weights_only=False),
    )
    assert ours["step"] == theirs["step"] and all(torch.equal(ours["model"][k], v) for k, v in theirs["model"].items())


# --- 3. the error reaches the console, and commands are short -------------------------------------------------------


@pytest.mark.slow
def test_a_failing_job_prints_its_one_line_error(tmp_path):
    copy_workflow(tmp_path)
    cfg = _small("broken")
    cfg["dataset"] = {"name": "msrvtt", "data_root": str(tmp_path / "no_such_folder"), "frames": 4, "resolution": 16}
    path = tmp_path / "config" / "broken.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = _snakemake(tmp_path, "--configfile", str(path), check=False)
    assert proc.returncode != 0
    console = proc.stdout + proc.stderr
    assert "vtrbench prepare: error:" in console and "no_such_folder" in console  # the log, shown by the profile
    dry = _snakemake(tmp_path, "--configfile", SMOKE, "-n", "-p")
    commands = [line for line in dry.stdout.splitlines() if "python -m vtrbench.cli train" in line]
    assert commands and max(map(len, commands)) < 500  # paths only: the config travels as a file, not as JSON


# --- 4. links between entries, seeds, command-line values -----------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"cross_encoder": {"init_from": "dual_sqe"}},
            r"methods\.cross_encoder\.init_from: 'dual_sqe' is not a configured",
        ),
        ({"rerank": {"first": "nope"}}, r"methods\.rerank\.first: 'nope' is not a configured method"),
        ({"rerank": {"second": "dual_seq"}}, r"methods\.rerank\.second: 'dual_seq' is a embedding method; second must"),
        ({"rerank": {"first": "cross_encoder"}}, r"methods\.rerank\.first: 'cross_encoder' is a pair method"),
    ],
)
def test_links_between_methods_are_checked(smoke_config, edit, message):
    for name, options in edit.items():
        smoke_config["methods"][name].update(options)
    with pytest.raises(config.ConfigError, match=message):
        config.validate(smoke_config)


def test_seeds_must_be_unique(smoke_config):
    smoke_config["seeds"] = [0, 1, 0]
    with pytest.raises(config.ConfigError, match=r"seeds: \[0\] listed twice"):
        config.validate(smoke_config)


def test_command_line_strings_become_numbers_where_the_schema_says_so(smoke_config):
    smoke_config["train"] = {"steps": "20", "lr": "3e-3", "amp": "false", "frames": "4"}  # `--config 'train={...}'`
    smoke_config["seeds"] = ["0", "1"]
    cfg = config.validate(smoke_config)
    assert cfg["train"]["steps"] == 20 and cfg["train"]["lr"] == 0.003 and cfg["train"]["amp"] is False
    assert cfg["seeds"] == [0, 1] and cfg["run_name"] == "smoke"  # strings the schema wants stay strings


def test_yaml_syntax_error_names_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_name: x\nseeds: [0, 1\nmethods: {}\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vtrbench check-config: error: config file {bad} is not valid YAML at line 3")


@pytest.mark.slow
def test_workflow_refuses_a_bad_link_before_any_job(tmp_path):
    copy_workflow(tmp_path)
    cfg = yaml.safe_load(Path(SMOKE).read_text())
    cfg["methods"]["cross_encoder"]["init_from"] = "dual_sqe"
    path = tmp_path / "config" / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = _snakemake(tmp_path, "--configfile", str(path), "-n", check=False)
    assert proc.returncode != 0
    assert "methods.cross_encoder.init_from: 'dual_sqe' is not a configured method" in proc.stdout + proc.stderr
    assert "KeyError" not in proc.stdout + proc.stderr and "MissingInputException" not in proc.stdout + proc.stderr
    ok = _snakemake(tmp_path, "--configfile", SMOKE, "-n", "--config", "train={steps: 20, eval_every: 10}")
    assert "This was a dry-run" in ok.stdout


# --- 5. file-system errors ------------------------------------------------------------------------------------------


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_unwritable_out_fails_before_any_work(smoke_data, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "run"  # its parent is a file: no folder can be made there (root can write anywhere else)
    args = ["train", "--config", SMOKE, "--method", "cret", "--seed", "0", "--data", str(smoke_data), "--out", str(out)]
    assert main(args) == 2
    line = _one_line(capsys)
    assert line.startswith("vtrbench train: error: cannot write to the run folder") and str(out) in line


def _damaged_copy(smoke_data: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(smoke_data, dest)
    return dest


def test_missing_or_truncated_arrow_file_says_re_run_prepare(smoke_data, tmp_path, capsys):
    run = ["--method", "cret", "--seed", "0", "--out", str(tmp_path / "run")]
    deleted = _damaged_copy(smoke_data, tmp_path / "deleted")
    next((deleted / "val" / "videos").glob("*.arrow")).unlink()
    assert main(["train", "--config", SMOKE, *run, "--data", str(deleted)]) == 2
    line = _one_line(capsys)
    assert f"prepared dataset {deleted} is damaged" in line and "re-run prepare" in line

    truncated = _damaged_copy(smoke_data, tmp_path / "truncated")
    arrow = next((truncated / "val" / "videos").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 3])
    assert main(["train", "--config", SMOKE, *run, "--data", str(truncated)]) == 2
    assert "re-run prepare" in _one_line(capsys)


def test_run_folders_follow_the_fingerprint(smoke_config):
    """The mechanism behind 1: a unit's folder is a pure function of what it depends on."""
    base = plan.run_unit(smoke_config, "cret")
    seeds = {**smoke_config, "seeds": [0, 1, 2]}
    other_method = {**smoke_config, "methods": {**smoke_config["methods"], "new": {"class": "dual_encoder"}}}
    assert plan.run_unit(seeds, "cret").fp == base.fp == plan.run_unit(other_method, "cret").fp
    lr = {**smoke_config, "train": {**smoke_config["train"], "lr": 0.5}}
    assert plan.run_unit(lr, "cret").fp != base.fp
    warm = plan.run_unit(smoke_config, "cross_encoder")
    changed_source = {**smoke_config, "methods": {**smoke_config["methods"], "dual_seq": {"class": "dual_encoder"}}}
    assert plan.run_unit(changed_source, "cross_encoder").fp != warm.fp  # its warm start changed


def test_the_budget_tests_longer_runs_scale_every_budget(smoke_config, smoke_data):
    """plan.longer: the steps each method trains (train.steps, or its own steps option and its default)."""
    long = plan.longer(smoke_config, 2)
    steps = {
        m: effective_train(smoke_config, build(smoke_config, m, smoke_data).method)["steps"]
        for m in ("dual_mean", "cross_encoder")
    }
    for m, n in steps.items():
        assert effective_train(long, build(long, m, smoke_data).method)["steps"] == 2 * n
    assert steps == {
        "dual_mean": smoke_config["train"]["steps"],
        "cross_encoder": smoke_config["methods"]["cross_encoder"]["steps"],
    }
    del smoke_config["methods"]["cross_encoder"]["steps"]
    three = plan.longer(smoke_config, 3)
    assert effective_train(three, build(three, "cross_encoder", smoke_data).method)["steps"] == 3000  # 3 x the default
    assert plan.run_unit(long, "cross_encoder").fp != plan.run_unit(smoke_config, "cross_encoder").fp
    assert plan.run_unit(plan.longer(smoke_config, 1), "dual_mean").fp == plan.run_unit(smoke_config, "dual_mean").fp
    assert (
        resolved_config(long, build(long, "dual_mean", smoke_data).method)["train"]["steps"] == 2 * steps["dual_mean"]
    )
