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

from tests.conftest import REPO, copy_workflow, snakemake_env
from vtrbench import config, plan, sweep
from vtrbench.cli import main
from vtrbench.report import findings
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


def _write_run(
    root: Path, loss: str, frames: int, seed: int, r5: float, step_s: float, ranks: np.ndarray | None = None
) -> Path:
    """A sweep run's result files; ``ranks``: the positive's test t2v rank per query (default 1, 2, ..., 10)."""
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
    ranks = np.arange(1, 11) if ranks is None else np.asarray(ranks)
    t2v_ranks = pd.DataFrame({"direction": "t2v", "query": np.arange(len(ranks)), "rank": ranks})
    v2t_ranks = pd.DataFrame({"direction": "v2t", "query": [0], "rank": [1]})  # never read by the comparisons
    pd.concat([t2v_ranks, v2t_ranks], ignore_index=True).to_parquet(d / "ranks.parquet")
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
    for name in ("frame_sweep", "sweep_runs", "sweep_curves", "sweep_equal_cost", "sweep_comparisons"):
        assert (tmp_path / "tables" / f"{name}.csv").stat().st_size > 0
    assert pd.read_csv(tmp_path / "tables" / "frame_sweep.csv")["paper_R@5"].notna().all()  # from the ledger
    # without --pairs: each loss pair at equal frames; with it, exactly the pairs named
    compared = pd.read_csv(tmp_path / "tables" / "sweep_comparisons.csv")
    assert list(zip(compared.a, compared.b, compared.metric, strict=True)) == [
        ("gees@2", "nce@2", "t2v_R@1"), ("gees@2", "nce@2", "t2v_R@5"),
        ("gees@4", "nce@4", "t2v_R@1"), ("gees@4", "nce@4", "t2v_R@5"),
    ]  # fmt: skip
    assert main([*args, "--tables", str(tmp_path / "t2"), "--pairs", "gees@2:nce@4"]) == 0
    compared = pd.read_csv(tmp_path / "t2" / "sweep_comparisons.csv")
    assert set(compared.a) == {"gees@2"} and set(compared.b) == {"nce@4"} and len(compared) == 2
    assert main([*args, "--tables", str(tmp_path / "t3"), "--pairs", "gees@2:nce@8"]) == 2  # no such point


def test_sweep_pairs_from_the_config(smoke_config):
    """gees@M - nce@M at each swept M, then gees@{train.frames} - nce@{max M} (the paper's claim, 4 vs 16)."""
    smoke_config["sweep"].update(frames=[16, 2, 8, 4], losses=["gees", "nce"])
    assert smoke_config["train"]["frames"] == 4
    assert sweep.sweep_pairs(smoke_config) == [
        (("gees", 2), ("nce", 2)), (("gees", 4), ("nce", 4)), (("gees", 8), ("nce", 8)), (("gees", 16), ("nce", 16)),
        (("gees", 4), ("nce", 16)),
    ]  # fmt: skip
    p = plan.Plan(smoke_config)
    assert p.sweep_pairs() == ["gees@2:nce@2", "gees@4:nce@4", "gees@8:nce@8", "gees@16:nce@16", "gees@4:nce@16"]
    assert [sweep.parse_pair(text) for text in p.sweep_pairs()] == sweep.sweep_pairs(smoke_config)
    assert f"{p.root}/tables/sweep_comparisons.csv" in p.section_tables("sweep")
    smoke_config["sweep"]["enabled"] = True
    assert f"{p.root}/tables/sweep_comparisons.csv" in plan.Plan(smoke_config).report_tables()
    # the main frame count is the largest (or not swept): equal frames only; one loss: nothing to compare
    assert sweep.pairs_of(["gees", "nce"], [2, 4], 4) == [(("gees", 2), ("nce", 2)), (("gees", 4), ("nce", 4))]
    assert sweep.pairs_of(["gees", "nce"], [2, 8], 4) == [(("gees", 2), ("nce", 2)), (("gees", 8), ("nce", 8))]
    assert sweep.pairs_of(["nce"], [2, 4, 8], 2) == []
    with pytest.raises(ValueError, match="like gees@4:nce@16"):
        sweep.parse_pair("gees4:nce@16")


@pytest.fixture
def compared_runs(tmp_path):
    """Ranks of 40 queries, 2 seeds: gees@2 ranks every query first, nce@2 at random (1-11); gees@4 and nce@4 rank
    alike, never first (2-11)."""
    rng = np.random.default_rng(0)
    never_first = rng.integers(2, 12, size=(2, 40))
    ranks = {
        ("gees", 2): np.ones((2, 40), int),
        ("nce", 2): rng.integers(1, 12, size=(2, 40)),
        ("gees", 4): never_first,
        ("nce", 4): never_first.copy(),
    }
    step_s = {2: 0.1, 4: 0.3}
    return [
        _write_run(tmp_path / "runs", loss, f, seed, 10.0, step_s[f], ranks[loss, f][seed])
        for (loss, f) in ranks
        for seed in (0, 1)
    ]


def test_sweep_comparisons_paired_intervals(compared_runs):
    pairs = sweep.pairs_of(["gees", "nce"], [2, 4], 2)
    assert pairs[-1] == (("gees", 2), ("nce", 4))
    runs = report_sweep.load_runs(compared_runs)
    table = report_sweep.comparison_table(compared_runs, pairs, runs)
    assert list(table.columns) == report_sweep.COMPARISON_COLUMNS
    rows = table.set_index(["a", "b", "metric"])
    # every query first against never: +100 points, an interval of exactly [100, 100], A wins every seed pair
    claim = rows.loc[("gees@2", "nce@4", "t2v_R@1")]
    assert (claim["diff"], claim.ci_low, claim.ci_high, claim.p_a_beats_b) == (100.0, 100.0, 100.0, 1.0)
    assert (claim.a_mean, claim.b_mean, claim.seeds, claim.queries) == (100.0, 0.0, 2, 40)
    assert bool(claim.paired_seeds)
    # step time: 20 steps of 0.1 s against 0.3 s (the warm-up dropped) -> 100 vs 300 ms
    assert claim.step_ms_a == pytest.approx(100.0) and claim.step_ms_b == pytest.approx(300.0)
    assert claim.step_ratio == pytest.approx(1 / 3)
    # identical ranks: the difference is 0 and the interval contains it
    for metric in ("t2v_R@1", "t2v_R@5"):
        same = rows.loc[("gees@4", "nce@4", metric)]
        assert same["diff"] == 0.0 and same.ci_low <= 0 <= same.ci_high and same.p_a_beats_b == 0.5
    # R@5 is the share of ranks <= 5 (the mean metrics.json holds): nce@4's, from its constructed ranks
    ranks = pd.concat(pd.read_parquet(d / "ranks.parquet").query("direction == 't2v'") for d in compared_runs[6:])
    r5 = rows.loc[("gees@2", "nce@4", "t2v_R@5")]
    assert r5.b_mean == pytest.approx(100 * (ranks["rank"] <= 5).mean()) and 0 < r5.b_mean < 100
    assert r5["diff"] == pytest.approx(100 - r5.b_mean) and r5.ci_low > 0


def test_sweep_finding_says_whether_the_papers_shape_holds(compared_runs):
    pairs = sweep.pairs_of(["gees", "nce"], [2, 4], 2)
    table = report_sweep.comparison_table(compared_runs, pairs, report_sweep.load_runs(compared_runs))
    sentence = findings.sweep_finding(table)
    assert "gees@2 beats nce@4 by +100.0 [+100.0, +100.0] on test t2v R@1" in sentence
    assert "0.33x its step time (100.0 vs 300.0 ms" in sentence and "the paper's shape holds here" in sentence
    unresolved = table.assign(ci_low=-2.0, ci_high=3.0, diff=0.5, seeds=2)
    sentence = findings.sweep_finding(unresolved)
    assert "no difference resolved between gees@2 and nce@4 with 2 seeds (+0.5 [-2.0, +3.0])" in sentence
    assert "consistent with the paper's shape (gees@2 much cheaper per step" in sentence
    barely_cheaper = unresolved.assign(step_ratio=0.87)  # the default's frozen frame tower: M hardly costs
    assert "the cost half of the paper's shape does not hold here: gees@2's step is not about a third of nce@4's" in (
        findings.sweep_finding(barely_cheaper)
    )
    worse = table.assign(diff=-5.0, ci_low=-8.0, ci_high=-1.0)
    assert "does not hold here: nce@4 is more accurate" in findings.sweep_finding(worse)
    slower = table.assign(step_ratio=1.2)
    assert "does not hold here: gees@2 is not cheaper per step" in findings.sweep_finding(slower)
    # no pair across frame counts: the equal-frame verdicts
    equal = table[table.frames_a == table.frames_b]
    assert findings.sweep_finding(equal).startswith("Frame sweep, equal frames (test t2v R@1): M = 2: gees@2 beats")
    assert findings.sweep_finding(None) is None and findings.sweep_finding(pd.DataFrame()) is None


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


def test_sweep_enabled_dry_run_plans_the_comparisons(tmp_path):
    """sweep.enabled adds the sweep to `all`: sweep_aggregate writes sweep_comparisons.csv with the config's pairs,
    and the report reads it."""
    copy_workflow(tmp_path)
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["sweep"] = {"enabled": True, "frames": [2, 4, 8], "seeds": [0], "steps": 2, "eval_every": 1}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "2", "--configfile", "sweep.yaml"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=snakemake_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert any(line.split() == ["sweep_aggregate", "1"] for line in out.splitlines()), out[-2000:]
    assert "results/smoke/tables/sweep_comparisons.csv" in out
    assert "--pairs gees@2:nce@2 gees@4:nce@4 gees@8:nce@8 gees@4:nce@8" in out  # train.frames 4 vs the most, 8
