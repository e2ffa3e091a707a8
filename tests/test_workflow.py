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
    # a second run has nothing to do: outputs are complete and up to date
    again = subprocess.run([*cmd, "--dry-run"], cwd=folder, env=snakemake_env(), capture_output=True, text=True)
    assert "Nothing to be done" in again.stdout + again.stderr
