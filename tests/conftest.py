"""Shared fixtures: offline Hugging Face, the smoke config and a prepared smoke dataset (built once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent


# An overlay that extends other overlays: the ones it is given after (its own header says so), after the default.
OVERLAY_BASES = {"scale-designs.yaml": ["designs.yaml", "scale.yaml"]}


def load_shipped_config(path: Path) -> dict:
    """A config/*.yaml as it is run: an overlay (no run_name) merged onto config/config.yaml and the overlays it
    extends, which it is given after; a real dataset's config with a placeholder data_root."""
    import yaml

    from vtrbench import config

    content = yaml.safe_load(path.read_text())
    if "run_name" not in content:
        merged: dict = {}
        for base in OVERLAY_BASES.get(path.name, []):
            config.deep_update(merged, yaml.safe_load((path.parent / base).read_text()))
        config.deep_update(merged, content)
        return config.load(REPO / "config" / "config.yaml", merged)
    name = content.get("dataset", {}).get("name", "synthetic")
    return config.load(path, {} if name == "synthetic" else {"dataset": {"data_root": "/data"}})


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


# The gallery-scale step on the smoke run (kept out of config/smoke.yaml, which many tests derive other configs
# from): two distractor shards (2,000 + 992 videos) of one method, every index family.
SMOKE_SCALE = """
scale:
  enabled: true
  gallery_sizes: [8, 3000]
  methods: {dual_seq: 3000, cross_encoder: 3000}  # an embedding and a pair method
  shard_size: 2000
  single_queries: 4
  repeats: 1
  train_size: 1000
  indexes:
    hnsw: {M: [8], ef_search: [16]}
    ivf_flat: {nlist: [16], nprobe: [4]}
    ivf_pq: {nlist: [16], code_bytes: [4], nprobe: [4]}
"""


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory):
    """One `snakemake --configfile config/smoke.yaml` run in a fresh folder, shared by every test that reads it.

    Returns ``(folder, command, completed_process)``; the tests assert on the return code themselves.
    """
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("smoke_run")
    copy_workflow(folder)
    (folder / "scale.yaml").write_text(SMOKE_SCALE)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml", "scale.yaml"]
    proc = subprocess.run(cmd, cwd=folder, env=snakemake_env(), capture_output=True, text=True, timeout=900)
    return folder, cmd, proc


# ----- the tiny towers and batch the method tests share -----------------------------------------------------------
TINY_TOWERS = {
    "text": {"hidden": 32, "layers": 2, "heads": 2, "max_length": 12},
    "frame": {"hidden": 32, "layers": 2, "heads": 2, "patch_size": 8},
    "temporal": {"layers": 2, "heads": 2},
}
TINY_SIZE = 32  # frame resolution of the tiny batches


def tiny_backbones():
    from vtrbench.backbones import BackboneConfig, Backbones

    return Backbones(BackboneConfig.from_dict(TINY_TOWERS), vocab_size=60, image_size=TINY_SIZE)


def method_batch(videos: int, frames: int, length: int, seed: int, padded: dict[int, int], n_text: int | None = None):
    """A random training batch of ``videos`` uint8 videos and ``n_text`` (default: as many) captions; caption i is
    cut to ``padded[i]`` real tokens."""
    import torch

    n_text = videos if n_text is None else n_text
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(n_text, length, dtype=torch.long)
    for row, real in padded.items():
        mask[row, real:] = 0
    return {
        "frames": torch.randint(0, 256, (videos, frames, TINY_SIZE, TINY_SIZE, 3), generator=g, dtype=torch.uint8),
        "input_ids": torch.randint(5, 50, (n_text, length), generator=g) * mask,
        "attention_mask": mask,
        "group_id": torch.zeros(videos, dtype=torch.long),
    }
