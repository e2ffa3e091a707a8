"""A prepared split is written atomically: both tables go to a temporary sibling folder that is moved into place, so a
process killed mid-write never leaves a half-written split under its final name (vtrbench/data/records.py)."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from vtrbench.data import records

FEATURES = records.video_features(num_frames=2, height=4, width=4)


def _tables(n: int) -> tuple[dict, dict]:
    videos = {
        "video_id": [f"v{i}" for i in range(n)],
        "frames": [np.full((2, 4, 4, 3), i, dtype=np.uint8) for i in range(n)],
        "group_id": [records.NO_GROUP] * n,
        "variant": [records.ORIGINAL] * n,
    }
    captions = {"video_id": [f"v{i}" for i in range(n)], "text": [f"caption {i}" for i in range(n)]}
    return videos, captions


def _leftovers(root) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_write_split_puts_both_tables_in_place_and_leaves_no_temporary_folder(tmp_path):
    videos, captions = _tables(3)
    records.write_split(tmp_path, "test", videos, captions, FEATURES)
    split = records.load_split(tmp_path, "test")
    assert split.video_ids == ["v0", "v1", "v2"] and split.captions == ["caption 0", "caption 1", "caption 2"]
    assert int(split.frames[[2]][0, 0, 0, 0, 0]) == 2
    assert _leftovers(tmp_path) == []


def test_a_write_killed_between_the_tables_leaves_the_old_split_untouched(tmp_path, monkeypatch):
    videos, captions = _tables(3)
    records.write_split(tmp_path, "train", videos, captions, FEATURES)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "train").rglob("*"))

    real_save = Dataset.save_to_disk

    def save_videos_then_die(self, path, *args, **kwargs):
        if path.endswith("captions"):
            raise KeyboardInterrupt("killed after the videos table")
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(Dataset, "save_to_disk", save_videos_then_die)
    new_videos, new_captions = _tables(5)
    with pytest.raises(KeyboardInterrupt):
        records.write_split(tmp_path, "train", new_videos, new_captions, FEATURES)
    monkeypatch.undo()

    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "train").rglob("*")) == before
    assert records.load_split(tmp_path, "train").num_videos == 3  # the old, complete split
    assert _leftovers(tmp_path) == []


def test_a_first_write_that_dies_leaves_no_split_folder(tmp_path, monkeypatch):
    def die(self, path, *args, **kwargs):
        (tmp_path / "partial-marker").write_text(path)  # it did start writing
        raise OSError("disk full")

    monkeypatch.setattr(Dataset, "save_to_disk", die)
    videos, captions = _tables(2)
    with pytest.raises(OSError, match="disk full"):
        records.write_split(tmp_path, "val", videos, captions, FEATURES)
    assert not (tmp_path / "val").exists()
    assert ".val." in (tmp_path / "partial-marker").read_text()  # it wrote into the temporary sibling, not val/
    assert _leftovers(tmp_path) == []
