"""End to end: `snakemake --configfile config/smoke.yaml` in a fresh directory, every stage for real."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

from tests.conftest import run_folder, snakemake_env


@pytest.mark.slow
def test_smoke_workflow_end_to_end(smoke_run):
    folder, cmd, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(folder / "results" / "smoke" / "tables" / "summary.csv")
    assert {"cret", "dual_mean"} <= set(summary.method)
    metrics = json.loads((run_folder(folder, "smoke", "cret") / "metrics.json").read_text())
    html = (folder / "results" / "smoke" / "report.html").read_text()
    assert "dual_mean" in html and "cret" in html
    assert f"{metrics['t2v']['R@1']:.1f}" in html
    # the gallery-scale step: two distractor shards per method, exact recall at both sizes, and every index family
    # measured for the embedding method (a pair method's gallery is searched exactly)
    tables = folder / "results" / "smoke" / "tables"
    scale, points = pd.read_csv(tables / "scale.csv"), pd.read_csv(tables / "recall_qps.csv")
    assert sorted(scale[["method", "gallery_size"]].values.tolist()) == [
        ["cross_encoder", 8], ["cross_encoder", 3000], ["dual_seq", 8], ["dual_seq", 3000]
    ]  # fmt: skip
    assert scale.exact_s.gt(0).all() and scale["t2v_R@1"].between(0, 100).all()
    assert set(points.method) == {"dual_seq"}
    assert set(points[points.gallery_size == 3000].family) == {"flat", "hnsw", "ivf_flat", "ivf_pq"}
    assert points.groupby(["gallery_size", "family"]).chosen.sum().eq(1).all()
    shards = sorted(p.name for p in (folder / "results" / "smoke" / "distractors").rglob("*.npy"))
    assert shards == ["0-2000.npy", "0-2000.npy", "2000-2992.npy", "2000-2992.npy"]
    assert 'id="scale-table"' in html
    # a second run has nothing to do: outputs are complete and up to date
    again = subprocess.run([*cmd, "--dry-run"], cwd=folder, env=snakemake_env(), capture_output=True, text=True)
    assert "Nothing to be done" in again.stdout + again.stderr
