"""Throughput benchmark: raw-row schema on a tiny grid, aggregation by hand, the CLI. Never asserts timings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vtrbench import throughput
from vtrbench.cli import main
from vtrbench.report import throughput as report_throughput


@pytest.fixture
def tiny(smoke_config):
    smoke_config["throughput"].update(frames=[2, 3], batch_sizes=[4], warmup=0, repeats=2, loss_repeats=2)
    return smoke_config


def test_measure_method_rows_for_every_grid_point(tiny, smoke_data):
    raw = throughput.measure_method(tiny, "cret", smoke_data, [2, 3], [4, 8], warmup=0, repeats=2)
    assert list(raw.columns) == throughput.RAW_COLUMNS
    assert len(raw) == 2 * 2 * len(throughput.PHASES) * 2  # frames x batch sizes x phases x repeats
    points = raw.groupby(["frames", "batch_size", "phase"]).rep.nunique()
    assert set(points.index) == {(f, b, p) for f in (2, 3) for b in (4, 8) for p in throughput.PHASES}
    assert (points == 2).all()
    assert (raw.ms > 0).all() and (raw.peak_mem_mb > 0).all()
    assert set(raw.loss) == {"gees"} and set(raw.method_class) == {"cret"} and set(raw.device) == {"cpu"}


def test_measure_losses_rows(tiny):
    from cret.model import CRET

    raw = throughput.measure_losses(CRET.loss_benchmarks(), [2, 4], [4, 8], dim=16, warmup=1, repeats=3)
    assert list(raw.columns) == throughput.LOSS_COLUMNS
    counts = raw.groupby(["loss", "frames", "batch_size"]).size()
    assert len(counts) == 2 * 2 * 2 and (counts == 3).all()
    assert (raw.ms > 0).all()


def _raw_row(phase: str, rep: int, ms: float, peak: float = 100.0) -> dict:
    return {
        "method": "m",
        "method_class": "cret",
        "kind": "embedding",
        "loss": "gees",
        "frames": 4,
        "batch_size": 8,
        "phase": phase,
        "rep": rep,
        "ms": ms,
        "peak_mem_mb": peak,
        "mem_kind": "rss_hwm",
        "device": "cpu",
        "dtype": "float32",
        "threads": 1,
        "resolution": 16,
    }


def test_summarize_by_hand():
    # step 10, 20, 40 -> median 20; forward 8, 9, 12; encode 6, 6, 6 -> paired head 2, 3, 6 -> median 3
    # bare 8, 20, 32 -> median 20; paired step / bare 1.25, 1.0, 1.25 -> overhead 1.25
    rows = []
    for rep, (step, fwd, enc, bare) in enumerate([(10, 8, 6, 8), (20, 9, 6, 20), (40, 12, 6, 32)]):
        rows += [_raw_row("step", rep, step, 100 + rep), _raw_row("forward", rep, fwd), _raw_row("encode", rep, enc)]
        rows += [_raw_row("bare", rep, bare)]
    table = report_throughput.summarize(pd.DataFrame(rows))
    assert len(table) == 1
    row = table.iloc[0]
    assert row.reps == 3 and row.step_ms == 20 and row.forward_ms == 9 and row.encode_ms == 6 and row.head_ms == 3
    assert row.bare_ms == 20 and row.overhead == pytest.approx(1.25)
    assert row.clips_per_s == pytest.approx(8 / 0.020)
    assert row.loss_share == pytest.approx(3 / 9)
    assert row.peak_mem_mb == 102
    assert row.step_ms_p95 == pytest.approx(np.percentile([10, 20, 40], 95))


def test_summarize_losses_ratio():
    raw = pd.DataFrame(
        [
            {"loss": loss, "frames": 4, "batch_size": 8, "dim": 16, "rep": r, "ms": ms, "device": "cpu"}
            | {"dtype": "float32", "threads": 1}
            for loss, values in (("gees", [3.0, 4.0, 5.0]), ("nce", [1.0, 2.0, 9.0]))
            for r, ms in enumerate(values)
        ]
    )
    table = report_throughput.summarize_losses(raw).set_index("loss")
    assert table.loc["gees", "ms"] == 4.0 and table.loc["nce", "ms"] == 2.0
    assert table.loc["gees", "gees_over_nce"] == 2.0 and np.isnan(table.loc["nce", "gees_over_nce"])


def test_cli_throughput_and_aggregate(tiny, smoke_data, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(tiny))
    methods = [m for m, e in tiny["methods"].items() if e["class"] != "rerank"]
    for method in methods:
        out = tmp_path / method / "throughput.csv"
        assert main(["throughput", "--config", str(cfg), "--method", method, "--data", str(smoke_data), "--out",
                     str(out)]) == 0  # fmt: skip
    assert main(["throughput", "--config", str(cfg), "--losses", "--out", str(tmp_path / "loss.csv")]) == 0
    files = [str(tmp_path / m / "throughput.csv") for m in methods]
    args = ["throughput-aggregate", "--files", *files, "--losses", str(tmp_path / "loss.csv")]
    assert main([*args, "--tables", str(tmp_path / "tables")]) == 0
    table = pd.read_csv(tmp_path / "tables" / "throughput.csv")
    assert set(table.method) == set(methods)
    assert len(table) == len(methods) * 2  # frames x batch sizes
    assert (table.step_ms > 0).all() and (table.clips_per_s > 0).all() and (table.overhead > 0).all()
    losses = pd.read_csv(tmp_path / "tables" / "loss_throughput.csv")
    assert set(losses.loss) == {"gees", "nce"} and len(losses) == 2 * 2  # declared by the CRET class


def test_cli_throughput_needs_method_or_losses(tiny, capsys, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(tiny))
    assert main(["throughput", "--config", str(cfg), "--out", str(tmp_path / "never.csv")]) == 2
    assert "--losses" in capsys.readouterr().err
