"""Annotation parsers on the real MSR-VTT / MSVD / DiDeMo files of the shared data folder, plus tiny
hand-written files for the training-caption file MSR-VTT does not ship here and for malformed input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from vtrbench.data.annotations import (
    VideoAnnotation,
    find_duplicates,
    load_annotations,
    load_didemo,
    load_msrvtt,
    load_msvd,
)

SHARED = Path(os.environ.get("VTRBENCH_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
MSRVTT, MSVD, DIDEMO = SHARED / "msrvtt", SHARED / "msvd", SHARED / "didemo"

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared data folder not found at {SHARED} (set VTRBENCH_SHARED_DATA)"
)


@pytest.fixture
def msrvtt_with_captions(tmp_path):
    """The real MSR-VTT lists plus a tiny MSRVTT_data.json (2 captions for 3 training videos)."""
    root = tmp_path / "msrvtt"
    root.mkdir()
    for name in ("MSRVTT_JSFUSION_test.csv", "MSRVTT_train.7k.csv", "MSRVTT_train.9k.csv"):
        shutil.copy(MSRVTT / name, root / name)
    sentences = [
        {"video_id": v, "caption": f"{v} caption {j}"} for v in ("video0", "video1", "video1000") for j in (0, 1)
    ]
    (root / "MSRVTT_data.json").write_text(json.dumps({"sentences": sentences}))
    return root


@needs_shared
def test_msrvtt_1k_a_test():
    test = load_msrvtt(MSRVTT, "test")
    assert len(test) == 1000 and len({a.video_id for a in test}) == 1000
    assert all(len(a.captions) == 1 for a in test)
    assert test[0] == VideoAnnotation("video9770", ["a person is connecting something to system"], "video9770")
    assert find_duplicates({"test": test}).captions["test"]["a man playing video games"] == [
        "video7461",
        "video9808",
        "video7710",
    ]
    assert len(find_duplicates({"test": test}).captions["test"]) == 4  # the 1k-A test list repeats 4 caption strings


@needs_shared
def test_msrvtt_train_needs_caption_file():
    with pytest.raises(FileNotFoundError, match=r"MSRVTT_data\.json") as err:
        load_msrvtt(MSRVTT, "train")
    assert "splits=('test',)" in str(err.value)  # says the test split works without it
    assert len(load_annotations("msrvtt", MSRVTT, splits=("test",))["test"]) == 1000


@needs_shared
@pytest.mark.parametrize(("train_list", "total"), [("7k", 7010), ("9k", 9000)])
def test_msrvtt_train_lists_and_held_out_val(msrvtt_with_captions, train_list, total):
    splits = load_annotations("msrvtt", msrvtt_with_captions, ("train", "val"), train_list, val_size=500)
    train, val = splits["train"], splits["val"]
    assert len(train) == total - 500 and len(val) == 500
    assert not {a.video_id for a in train} & {a.video_id for a in val}
    with_captions = {a.video_id: a.captions for a in train + val if a.captions}
    assert with_captions["video1"] == ["video1 caption 0", "video1 caption 1"]
    assert sum(1 for a in train + val if not a.captions) == total - len(with_captions)  # reported later
    again = load_annotations("msrvtt", msrvtt_with_captions, ("val",), train_list, val_size=500)["val"]
    assert [a.video_id for a in again] == [a.video_id for a in val]  # deterministic
    other = load_annotations("msrvtt", msrvtt_with_captions, ("val",), train_list, 500, seed=1)["val"]
    assert {a.video_id for a in other} != {a.video_id for a in val}


@needs_shared
def test_msrvtt_val_does_not_depend_on_list_order(msrvtt_with_captions, tmp_path):
    path = msrvtt_with_captions / "MSRVTT_train.7k.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    val = load_msrvtt(msrvtt_with_captions, "val", "7k", 50)
    original = load_msrvtt(_copy_lists(tmp_path / "orig"), "val", "7k", 50)
    assert {a.video_id for a in val} == {a.video_id for a in original}


def _copy_lists(dest: Path) -> Path:
    dest.mkdir()
    shutil.copy(MSRVTT / "MSRVTT_train.7k.csv", dest / "MSRVTT_train.7k.csv")
    (dest / "MSRVTT_data.json").write_text(json.dumps({"sentences": []}))
    return dest


@needs_shared
def test_msrvtt_bad_val_size(msrvtt_with_captions):
    with pytest.raises(ValueError, match="val_size"):
        load_msrvtt(msrvtt_with_captions, "train", "7k", 7010)
    with pytest.raises(ValueError, match="val_size=0"):
        load_msrvtt(msrvtt_with_captions, "val", "7k", 0)
    assert len(load_msrvtt(msrvtt_with_captions, "train", "7k", 0)) == 7010


@needs_shared
def test_msvd_splits_keep_every_caption():
    splits = load_annotations("msvd", MSVD)
    assert {s: len(v) for s, v in splits.items()} == {"train": 1200, "val": 100, "test": 670}
    assert sum(len(a.captions) for a in splits["test"]) == 27763
    first = splits["train"][0]
    assert first.video_id == first.path_stem == "-4wsuPCjDBc_5_15"
    assert first.captions[0] == "a squirrel is eating a peanut in it s shell"
    assert find_duplicates(splits).cross_split == {}


@needs_shared
def test_didemo_paragraphs():
    test = load_didemo(DIDEMO, "test")
    assert len(test) == 1037 and all(len(a.captions) == 1 for a in test)
    moments = json.loads((DIDEMO / "test_data.json").read_text())
    first = moments[0]["video"]
    expected = []
    for m in moments:
        if m["video"] == first and m["description"].strip() not in expected:
            expected.append(m["description"].strip())
    assert test[0].video_id == test[0].path_stem == first
    assert test[0].captions == [" ".join(expected)]
    assert len(load_didemo(DIDEMO, "val")) == 1094


def test_didemo_joins_in_order_and_drops_exact_repeats(tmp_path):
    moments = [
        {"description": "a dog runs.", "video": "x.mov"},
        {"description": "a cat sits.", "video": "y.avi"},
        {"description": " a dog runs. ", "video": "x.mov"},
        {"description": "the dog stops.", "video": "x.mov"},
        {"description": "a dog runs.", "video": "x.mp4"},  # same Flickr id, other container: another video
    ]
    (tmp_path / "val_data.json").write_text(json.dumps(moments))
    val = load_didemo(tmp_path, "val")
    assert [(a.video_id, a.captions) for a in val] == [
        ("x.mov", ["a dog runs. the dog stops."]),
        ("y.avi", ["a cat sits."]),
        ("x.mp4", ["a dog runs."]),
    ]
    with pytest.raises(FileNotFoundError, match=r"train_data\.json"):
        load_didemo(tmp_path, "train")


def test_find_duplicates_across_splits():
    splits = {
        "train": [VideoAnnotation("a", ["x", "x"], "a"), VideoAnnotation("b", ["y"], "b")],
        "val": [VideoAnnotation("c", ["x"], "c")],
        "test": [VideoAnnotation("b", ["z"], "b")],
    }
    dup = find_duplicates(splits)
    assert dup.captions == {"train": {"x": ["a", "a"]}}  # within a split only
    assert dup.cross_split == {"b": ["train", "test"]}


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MSRVTT_JSFUSION_test\.csv") as err:
        load_msrvtt(tmp_path, "test")
    assert str(tmp_path) in str(err.value)
    with pytest.raises(FileNotFoundError, match=r"test_list\.txt"):
        load_msvd(tmp_path, "test")
    (tmp_path / "test_list.txt").write_text("v1\n")
    with pytest.raises(FileNotFoundError, match=r"captions_msvd\.json"):
        load_msvd(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match=r"test_data\.json"):
        load_didemo(tmp_path, "test")


def test_malformed_csv(tmp_path):
    path = tmp_path / "MSRVTT_JSFUSION_test.csv"
    path.write_text("key,vid_key,video_id,caption\nret0,msr1,video1,a dog\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sentence'\]") as err:
        load_msrvtt(tmp_path, "test")
    assert str(path) in str(err.value)
    path.write_text("key,vid_key,video_id,sentence\nret0,msr1,video1,a dog\nret1,msr2,,a cat\n")
    with pytest.raises(ValueError, match="row 3: empty or missing field 'video_id'"):
        load_msrvtt(tmp_path, "test")


def test_malformed_json(tmp_path):
    (tmp_path / "test_list.txt").write_text("v1\n")
    (tmp_path / "captions_msvd.json").write_text(json.dumps({"v1": "one caption, not a list"}))
    with pytest.raises(ValueError, match="entry 'v1': captions must be a list of strings"):
        load_msvd(tmp_path, "test")
    (tmp_path / "captions_msvd.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_msvd(tmp_path, "test")
    moments = [{"description": "a", "video": "v.mp4"}, {"description": "b"}]
    (tmp_path / "test_data.json").write_text(json.dumps(moments))
    with pytest.raises(ValueError, match=r"test_data\.json: moment 1: missing or non-string field 'video'"):
        load_didemo(tmp_path, "test")
    (tmp_path / "MSRVTT_train.7k.csv").write_text("video_id\nv1\nv2\nv3\n")
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps({"sentences": [{"video_id": "v1"}]}))
    with pytest.raises(ValueError, match=r"sentences\[0\]: missing or non-string field 'caption'"):
        load_msrvtt(tmp_path, "train", "7k", 1)


def test_unknown_names():
    with pytest.raises(ValueError, match="choose one of: msrvtt, msvd, didemo"):
        load_annotations("lsmdc", ".")
    with pytest.raises(ValueError, match="choose from: train, val, test"):
        load_annotations("msvd", ".", splits=("dev",))
    with pytest.raises(ValueError, match="choose one of: 7k, 9k"):
        load_msrvtt(".", "train", "8k")
