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
