"""Frame sweep: per-point configs, aggregation on hand-made result files, the equal-cost curve, the workflow DAG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, copy_workflow
from vtrbench import config, plan, sweep
from vtrbench.cli import main
from vtrbench.report import sweep as report_sweep
from vtrbench.report.aggregate import training_speed


def test_sweep_config_overrides_frames_budget_and_loss(smoke_config):
    smoke_config["sweep"].update(frames=[2, 4], steps=7, eval_every=3)
    cfg, name = sweep.sweep_config(smoke_config, "nce", 2)
    assert name == "cret_nce_f2" and list(cfg["methods"]) == ["cret_nce_f2"]
    assert cfg["methods"]["cret_nce_f2"] == {**smoke_config["methods"]["cret"], "global_loss": "nce"}
    assert cfg["dataset"]["frames"] == 4 and cfg["train"]["frames"] == 2 and cfg["eval"]["frames"] == 2
    assert cfg["train"]["steps"] == 7 and cfg["train"]["eval_every"] == 3
    assert smoke_config["train"]["frames"] == 4  # the main config is left alone
    points = dict(sweep.sweep_points(smoke_config))
    assert set(points) == {f"cret_{loss}_f{f}" for loss in ("gees", "nce") for f in (2, 4)}
    # every point reads one dataset (stored with max(frames)), and the sweep's folders follow its config
    assert len({plan.dataset_unit(c).fp for c in points.values()}) == 1
    smoke_config["sweep"]["steps"] = 8  # a longer sweep: new folders for its points, the old ones untouched
    longer = dict(sweep.sweep_points(smoke_config))[name]
    assert plan.run_unit(longer, name).fp != plan.run_unit(points[name], name).fp


def test_sweep_config_needs_a_method_with_a_global_loss(smoke_config):
    smoke_config["sweep"]["method"] = "dual_mean"
    with pytest.raises(config.ConfigError, match=r"sweep.method: 'dual_mean' \(class 'dual_encoder'\) cannot take"):
        config.check_method_options(smoke_config)


def test_training_speed_from_cumulative_seconds():
    # per-step seconds: 1.0 (warm-up, dropped), then 0.1, 0.2, 0.3 -> median 0.2 s; samples/s median 40
    log = pd.DataFrame({"step": [1, 2, 3, 4], "train_seconds": [1.0, 1.1, 1.3, 1.6], "samples_per_s": [8, 80, 40, 26]})
    stats = training_speed(log, warmup=1)
    assert stats["step_ms"] == pytest.approx(200.0)
    assert stats["clips_per_s"] == pytest.approx(40.0)
    assert stats["train_seconds"] == pytest.approx(1.6)
    assert training_speed(log, warmup=10)["step_ms"] == pytest.approx(250.0)  # shorter than the warm-up: all 4


def _write_run(root: Path, loss: str, frames: int, seed: int, r5: float, step_s: float) -> Path:
    d = root / f"cret_{loss}_f{frames}" / "0123abcd" / f"seed{seed}"
    d.mkdir(parents=True)
    unit = {"methods": {f"cret_{loss}_f{frames}": {"class": "cret", "global_loss": loss}}, "train": {"frames": frames}}
    (d.parent / "config.json").write_text(json.dumps(unit))
    t2v = {"R@1": r5 / 2, "R@5": r5, "R@10": r5 * 1.5, "MdR": 10.0, "MnR": 20.0}
    metrics = {"method": f"cret_{loss}", "seed": seed, "t2v": t2v, "v2t": t2v, "selected_step": 20}
    (d / "metrics.json").write_text(json.dumps(metrics))
    steps = np.arange(1, 21)
    log = pd.DataFrame({"step": steps, "train_seconds": steps * step_s, "samples_per_s": 8 / step_s})  # batch of 8
    log.to_csv(d / "train_log.csv", index=False)
    val = pd.DataFrame({"step": [10, 20], "train_seconds": [10 * step_s, 20 * step_s], "val": [1.0, 2.0]})
    val["t2v_R@1"], val["t2v_R@5"], val["t2v_R@10"] = [0.5, 1.0], [r5 - 1, r5], [2.0, 3.0]
    val.to_csv(d / "val_log.csv", index=False)
    return d


@pytest.fixture
def runs(tmp_path):
    # gees R@5: f2 seeds 10, 14 (mean 12, sd 2.828); f4 seeds 20, 22; nce: f2 6, 6; f4 9, 13
    r5 = {("gees", 2): (10, 14), ("gees", 4): (20, 22), ("nce", 2): (6, 6), ("nce", 4): (9, 13)}
    step_s = {2: 0.1, 4: 0.2}
    return [
        _write_run(tmp_path / "runs", loss, f, seed, r5[loss, f][seed], step_s[f])
        for (loss, f) in r5
        for seed in (0, 1)
    ]


def test_frame_sweep_table_mean_std_by_hand(runs):
    paper = report_sweep.paper_r5(REPO / "data" / "published.csv")
    table = report_sweep.frame_sweep_table(report_sweep.load_runs(runs), paper).set_index(["frames", "loss"])
    assert len(table) == 4 and (table.seeds == 2).all()
    assert table.loc[(2, "gees"), "t2v_R@5_mean"] == pytest.approx(12.0)
    assert table.loc[(2, "gees"), "t2v_R@5_std"] == pytest.approx(np.sqrt(((10 - 12) ** 2 + (14 - 12) ** 2) / 1))
    assert table.loc[(2, "nce"), "t2v_R@5_std"] == 0.0
    assert table.loc[(4, "nce"), "t2v_R@1_mean"] == pytest.approx(5.5)  # (4.5 + 6.5) / 2
    # 20 steps of 0.1 s: WARMUP_STEPS (10) dropped, median 0.1 s -> 100 ms, 80 clips/s at B = 8
    assert table.loc[(2, "gees"), "step_ms"] == pytest.approx(100.0)
    assert table.loc[(4, "gees"), "clips_per_s"] == pytest.approx(40.0)
    assert table.loc[(4, "gees"), "paper_R@5"] == 50.7


def test_curves_and_recall_at_budget(runs):
    curves = report_sweep.sweep_curves(runs)
    assert len(curves) == 8 * 2
    assert list(curves.columns) == [
        "loss", "frames", "seed", "step", "train_seconds", "val_R@1", "val_R@5", "val_R@10", "val",
    ]  # fmt: skip
    # budget 2.5 s: f2 runs (0.1 s/step) reached step 20 (2.0 s); f4 runs (0.2 s/step) only step 10 (2.0 s)
    at = report_sweep.recall_at_budget(curves, 2.5).set_index(["loss", "frames", "seed"])
    assert at.loc[("gees", 2, 1), "step"] == 20 and at.loc[("gees", 2, 1), "val_R@5"] == 14
    assert at.loc[("gees", 4, 0), "step"] == 10 and at.loc[("gees", 4, 0), "val_R@5"] == 19
    # budget below the first validation point: nothing reached
    assert report_sweep.recall_at_budget(curves, 0.5)["val_R@5"].isna().all()
    table = report_sweep.equal_cost_table(curves)
    assert sorted(table.budget_s.unique()) == pytest.approx([2.0, 4.0])
    row = table[(table.budget_of_frames == 2) & (table.loss == "gees") & (table.frames == 4)].iloc[0]
    assert row["val_R@5_mean"] == pytest.approx(20.0)  # (19 + 21) / 2 at step 10


def test_cli_sweep_aggregate_writes_tables(runs, tmp_path):
    args = ["sweep-aggregate", "--runs", *map(str, runs)]
    assert main([*args, "--tables", str(tmp_path / "tables"), "--ledger", str(REPO / "data" / "published.csv")]) == 0
    for name in ("frame_sweep", "sweep_runs", "sweep_curves", "sweep_equal_cost"):
        assert (tmp_path / "tables" / f"{name}.csv").stat().st_size > 0
    assert pd.read_csv(tmp_path / "tables" / "frame_sweep.csv")["paper_R@5"].notna().all()  # from the ledger


def test_sweep_target_dry_run(tmp_path):
    """The opt-in `sweep` target plans prepare + train/evaluate per (loss, frames, seed) + aggregation."""
    copy_workflow(tmp_path)
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["sweep"] = {"frames": [2, 4], "losses": ["gees", "nce"], "seeds": [0], "steps": 2, "eval_every": 1}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "sweep", "-n", "--cores", "2", "--configfile", "sweep.yaml"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for rule, count in (("prepare", 1), ("train", 4), ("evaluate", 4), ("sweep_aggregate", 1)):
        assert any(line.split() == [rule, str(count)] for line in out.splitlines()), (rule, out[-2000:])
