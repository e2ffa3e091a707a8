"""prepare_real on the real MSR-VTT folder (1000 listed test videos, 2 on disk) and on small folders built
from copies of those two clips: the problem policy, the written split, resumption and thread invariance."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vtrbench.data import video as video_io
from vtrbench.data.real import DataProblemsError, RealDataConfig, prepare_real
from vtrbench.data.records import load_split

SHARED = Path(os.environ.get("VTRBENCH_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
MSRVTT = SHARED / "msrvtt"
CLIPS = [MSRVTT / "videos" / "video9770.mp4", MSRVTT / "videos" / "video9771.mp4"]
FRAMES, RES = 4, 32

pytestmark = pytest.mark.skipif(
    not all(c.is_file() for c in CLIPS),
    reason=f"real clips not found under {SHARED} (set VTRBENCH_SHARED_DATA)",
)


def read_problems(out: Path) -> list[dict]:
    with (out / "problems.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def msrvtt_test_root(root: Path, n: int, extra: dict[str, bytes] | None = None) -> Path:
    """An MSR-VTT-style folder: a test csv of n videos, each a copy of one of the two real clips."""
    (root / "videos").mkdir(parents=True)
    rows = ["key,vid_key,video_id,sentence"]
    for i in range(n):
        shutil.copy(CLIPS[i % 2], root / "videos" / f"clip{i}.mp4")
        rows.append(f"ret{i},msr{i},clip{i},caption of clip {i}")
    for name, data in (extra or {}).items():
        (root / "videos" / f"{name}.mp4").write_bytes(data)
        rows.append(f"ret_{name},msr_{name},{name},caption of {name}")
    (root / "MSRVTT_JSFUSION_test.csv").write_text("\n".join(rows) + "\n")
    return root


def config(root: Path, **kw) -> RealDataConfig:
    return RealDataConfig("msrvtt", str(root), frames=FRAMES, resolution=RES, splits=("test",), **kw)


def test_strict_names_the_missing_videos(tmp_path):
    with pytest.raises(DataProblemsError) as err:
        prepare_real(config(MSRVTT), tmp_path)
    message = str(err.value)
    assert "998 data problems (missing: 998)" in message
    assert "test/video7020: missing" in message and "... and 993 more" in message
    assert "dataset.on_problem: skip" in message
    assert len(read_problems(tmp_path)) == 998
    assert not (tmp_path / "_cache").exists() and not (tmp_path / "test").exists()  # nothing decoded


def test_skip_prepares_the_two_real_clips(tmp_path):
    summary = prepare_real(config(MSRVTT, on_problem="skip"), tmp_path)
    assert summary["counts"] == {"test": {"listed": 1000, "videos": 2, "captions": 2}}
    assert summary["problems"] == 998 and summary["problem_kinds"] == {"missing": 998}
    assert summary["incomplete"] is True and summary["duplicate_captions"] == {"test": 4}
    assert summary["config"]["on_problem"] == "skip"
    json.dumps(summary)  # the caller writes it into manifest.json

    split = load_split(tmp_path, "test")
    assert split.video_ids == ["video9770", "video9771"]
    assert split.captions == ["a person is connecting something to system", "a little girl does gymnastics"]
    assert split.frames.shape == (2, FRAMES, RES, RES, 3)
    for i, clip in enumerate(CLIPS):
        assert np.array_equal(split.frames[[i]][0], video_io.decode_video(clip, FRAMES, RES))
    assert split.group_id.tolist() == [-1, -1] and split.variant.tolist() == ["original", "original"]

    problems = read_problems(tmp_path)
    assert len(problems) == 998 and {p["problem"] for p in problems} == {"missing"}
    assert {p["split"] for p in problems} == {"test"} and problems[0]["video_id"] == "video7020"
    assert not (tmp_path / "_cache").exists()  # cache removed once the split is written
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".test-*"))


def test_resume_decodes_only_missing_shards(tmp_path, monkeypatch):
    root = msrvtt_test_root(tmp_path / "data", 5)
    out = tmp_path / "out"
    real_decode = video_io.decode_video
    calls = []

    def killed_on_fifth(path, num_frames, resolution):
        calls.append(Path(path).name)
        if len(calls) == 5:
            raise KeyboardInterrupt  # the run is killed while decoding the last shard
        return real_decode(path, num_frames, resolution)

    monkeypatch.setattr(video_io, "decode_video", killed_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        prepare_real(config(root), out, shard_size=2)
    assert len(list((out / "_cache" / "test").glob("shard-*.npz"))) == 2  # shards [0, 1] and [2, 3]
    assert not (out / "test").exists()

    calls.clear()
    monkeypatch.setattr(video_io, "decode_video", lambda p, n, r: calls.append(Path(p).name) or real_decode(p, n, r))
    summary = prepare_real(config(root), out, shard_size=2)
    assert calls == ["clip4.mp4"]
    assert summary["decode"]["decoded"] == 1 and summary["decode"]["from_cache"] == 4

    monkeypatch.setattr(video_io, "decode_video", real_decode)
    fresh = tmp_path / "fresh"
    prepare_real(config(root), fresh, shard_size=2)
    resumed, clean = load_split(out, "test"), load_split(fresh, "test")
    assert resumed.video_ids == clean.video_ids == [f"clip{i}" for i in range(5)]
    assert np.array_equal(resumed.frames[range(5)], clean.frames[range(5)])


def test_changed_settings_do_not_reuse_the_cache(tmp_path, monkeypatch):
    root = msrvtt_test_root(tmp_path / "data", 2)
    out = tmp_path / "out"
    real_decode = video_io.decode_video

    def killed_on_clip1(path, num_frames, resolution):
        if Path(path).name == "clip1.mp4":
            raise KeyboardInterrupt
        return real_decode(path, num_frames, resolution)

    monkeypatch.setattr(video_io, "decode_video", killed_on_clip1)
    with pytest.raises(KeyboardInterrupt):
        prepare_real(config(root), out, shard_size=1)  # leaves clip0's shard at 4 frames of 32 px
    assert len(list((out / "_cache" / "test").glob("shard-*.npz"))) == 1
    monkeypatch.setattr(video_io, "decode_video", real_decode)
    summary = prepare_real(RealDataConfig("msrvtt", str(root), frames=2, resolution=16, splits=("test",)), out)
    assert summary["decode"]["from_cache"] == 0
    assert load_split(out, "test").frames.shape == (2, 2, 16, 16, 3)


def test_two_threads_give_the_same_frames(tmp_path):
    root = msrvtt_test_root(tmp_path / "data", 6)
    one, two = tmp_path / "t1", tmp_path / "t2"
    prepare_real(config(root), one, threads=1, shard_size=4)
    prepare_real(config(root), two, threads=2, shard_size=4)
    a, b = load_split(one, "test"), load_split(two, "test")
    assert a.video_ids == b.video_ids
    assert np.array_equal(a.frames[range(6)], b.frames[range(6)])


def test_undecodable_files_follow_the_policy(tmp_path):
    root = msrvtt_test_root(tmp_path / "data", 2, extra={"broken": b"not a video" * 50})
    frames_dir = root / "videos" / "frames_video"
    frames_dir.mkdir()
    for i in range(3):
        Image.fromarray(np.full((24, 40, 3), 60 * i, np.uint8)).save(frames_dir / f"{i:04d}.jpg")
    with (root / "MSRVTT_JSFUSION_test.csv").open("a") as f:
        f.write("ret_f,msr_f,frames_video,caption of a frames folder\n")

    with pytest.raises(DataProblemsError, match=r"1 data problems \(decode_error: 1\)") as err:
        prepare_real(config(root), tmp_path / "strict")
    assert "broken.mp4: cannot_open" in str(err.value)

    summary = prepare_real(config(root, on_problem="skip"), tmp_path / "skip")
    assert summary["counts"]["test"]["videos"] == 3 and summary["problem_kinds"] == {"decode_error": 1}
    assert [p["video_id"] for p in read_problems(tmp_path / "skip")] == ["broken"]
    assert load_split(tmp_path / "skip", "test").video_ids == ["clip0", "clip1", "frames_video"]


def test_ids_in_two_splits_stay_in_the_evaluation_split(tmp_path):
    root = tmp_path / "msvd"
    (root / "videos").mkdir(parents=True)
    for i, name in enumerate(["a", "b", "c", "d"]):
        shutil.copy(CLIPS[i % 2], root / "videos" / f"{name}.avi")  # the container is probed, not the name
    (root / "captions_msvd.json").write_text(json.dumps({"a": ["x", "y"], "b": ["x"], "c": ["z"], "d": ["w"]}))
    (root / "train_list.txt").write_text("a\nb\n")
    (root / "val_list.txt").write_text("c\n")
    (root / "test_list.txt").write_text("b\nd\n")
    cfg = RealDataConfig("msvd", str(root), frames=2, resolution=16)
    with pytest.raises(DataProblemsError, match=r"1 data problems \(in_several_splits: 1\)"):
        prepare_real(cfg, tmp_path / "strict")
    cfg.on_problem = "skip"
    summary = prepare_real(cfg, tmp_path / "out")
    assert {s: c["videos"] for s, c in summary["counts"].items()} == {"train": 1, "val": 1, "test": 2}
    assert load_split(tmp_path / "out", "train").video_ids == ["a"]
    assert load_split(tmp_path / "out", "test").captions == ["x", "w"]
    assert summary["duplicate_captions"] == {"train": 1}  # "x" on a and b, reported, not dropped


def test_split_without_videos_is_an_error(tmp_path):
    root = tmp_path / "data"
    (root / "videos").mkdir(parents=True)
    (root / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,video_id,sentence\nret0,m0,video0,a dog\n")
    with pytest.raises(ValueError, match="split 'test' has no usable video"):
        prepare_real(config(root, on_problem="skip"), tmp_path / "out")


def test_bad_config(tmp_path):
    with pytest.raises(ValueError, match="'strict' or 'skip'"):
        prepare_real(config(MSRVTT, on_problem="lenient"), tmp_path)
    with pytest.raises(FileNotFoundError, match="video folder not found"):
        prepare_real(config(MSRVTT, video_dir="clips"), tmp_path)
    with pytest.raises(ValueError, match="choose one of: msrvtt, msvd, didemo"):
        prepare_real(RealDataConfig("lsmdc", str(MSRVTT)), tmp_path)
