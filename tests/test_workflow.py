"""End to end: `snakemake --configfile config/smoke.yaml` in a fresh directory, every stage for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO


def _copy_workflow(dest: Path) -> None:
    shutil.copy(REPO / "Snakefile", dest / "Snakefile")
    shutil.copytree(REPO / "workflow", dest / "workflow")
    shutil.copytree(REPO / "config", dest / "config")


@pytest.mark.slow
def test_smoke_workflow_end_to_end(tmp_path):
    _copy_workflow(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "results" / "tables" / "summary.csv")
    assert sorted(summary.method) == ["cret", "dual_mean"]
    metrics = json.loads((tmp_path / "results/runs/synthetic/cret/seed0/metrics.json").read_text())
    html = (tmp_path / "results" / "report.html").read_text()
    assert "dual_mean" in html and "cret" in html
    assert f"{metrics['t2v']['R@1']:.1f}" in html
    # a second run has nothing to do: outputs are complete and up to date
    again = subprocess.run([*cmd, "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "Nothing to be done" in again.stdout + again.stderr
