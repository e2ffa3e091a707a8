"""The prepare step through the CLI on the real MSR-VTT folder (1000 listed test videos, 2 on disk)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO
from vtrbench.cli import main
from vtrbench.data.records import load_split

SHARED = Path(os.environ.get("VTRBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))
MSRVTT = SHARED / "msrvtt"
pytestmark = pytest.mark.skipif(not MSRVTT.is_dir(), reason=f"shared data not found at {MSRVTT}")


def _msrvtt_root(tmp_path: Path) -> Path:
    """The real files plus a tiny caption json (the real 200k-caption MSRVTT_data.json is not available)."""
    root = tmp_path / "msrvtt"
    root.mkdir()
    for name in ("MSRVTT_JSFUSION_test.csv", "MSRVTT_train.7k.csv", "videos"):
        (root / name).symlink_to(MSRVTT / name)
    ids = (MSRVTT / "MSRVTT_train.7k.csv").read_text().split()[1:]
    sentences = [{"video_id": v, "caption": f"a clip number {i}"} for i, v in enumerate(ids)]
    (root / "MSRVTT_data.json").write_text(json.dumps({"sentences": sentences}))
    return root


def _args(root: Path, out: Path, policy: str) -> list[str]:
    return [
        "prepare",
        "--config",
        str(REPO / "config" / "smoke.yaml"),
        "--set",
        "dataset.name=msrvtt",
        "--set",
        f"dataset.data_root={root}",
        "--set",
        f"dataset.on_problem={policy}",
        "--set",
        "dataset.val_size=10",
        "--out",
        str(out),
    ]


def test_strict_names_the_missing_videos(tmp_path, capsys):
    assert main(_args(_msrvtt_root(tmp_path), tmp_path / "out", "strict")) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "on_problem" in err and "Traceback" not in err


def test_missing_training_captions_file_is_named(tmp_path, capsys):
    root = _msrvtt_root(tmp_path)
    (root / "MSRVTT_data.json").unlink()
    assert main(_args(root, tmp_path / "out", "skip")) == 2
    assert "MSRVTT_data.json" in capsys.readouterr().err


def test_skip_with_no_training_video_on_disk_stops_clearly(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(_msrvtt_root(tmp_path), out, "skip")) == 2  # none of the 7k training videos is on disk
    assert "split 'train' has no usable video" in capsys.readouterr().err
    problems = (out / "problems.csv").read_text().splitlines()
    assert len(problems) > 1000 and problems[0] == "split,video_id,problem,detail"


def test_test_split_only_dataset_loads(tmp_path):
    from vtrbench.data.real import RealDataConfig, prepare_real

    cfg = RealDataConfig(
        name="msrvtt", data_root=str(MSRVTT), frames=4, resolution=16, on_problem="skip", splits=("test",)
    )
    info = prepare_real(cfg, tmp_path / "out")
    test = load_split(tmp_path / "out", "test")
    assert test.video_ids == ["video9770", "video9771"] and info["incomplete"]
    assert test.frames.shape == (2, 4, 16, 16, 3) and test.frames[[0]].mean() > 10
