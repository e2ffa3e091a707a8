"""Shared fixtures: offline Hugging Face, the smoke config and a prepared smoke dataset (built once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def smoke_config() -> dict:
    from vtrbench import config

    return config.load(REPO / "config" / "smoke.yaml")


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vtrbench import config
    from vtrbench.data.prepare import prepare

    out = tmp_path_factory.mktemp("smoke") / "data"
    prepare(config.load(REPO / "config" / "smoke.yaml"), out)
    return out


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow (the package itself is installed), so runs leave nothing in the repo."""
    import shutil

    for folder in ("workflow", "config", "data"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def run_folder(root: Path, run_name: str, method: str, seed: int = 0) -> Path:
    """``results/{run_name}/runs/{method}/{fingerprint}/seed{seed}`` (the one fingerprint folder of that method)."""
    found = sorted((root / "results" / run_name / "runs" / method).glob(f"*/seed{seed}"))
    assert len(found) == 1, f"expected one run folder of {method}, found {found}"
    return found[0]


def snakemake_env() -> dict:
    import sys

    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory):
    """One `snakemake --configfile config/smoke.yaml` run in a fresh folder, shared by every test that reads it.

    Returns ``(folder, command, completed_process)``; the tests assert on the return code themselves.
    """
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("smoke_run")
    copy_workflow(folder)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml"]
    proc = subprocess.run(cmd, cwd=folder, env=snakemake_env(), capture_output=True, text=True, timeout=900)
    return folder, cmd, proc
