"""Prepare a real dataset (MSR-VTT, MSVD, DiDeMo): annotations + videos -> the record schema of records.py.

The steps, in order:

1. Parse the annotation files (``annotations.py``) and look every listed video up on disk.
2. Validate before decoding anything: videos missing on disk, videos without captions, ids in more than one
   split. ``on_problem: strict`` stops here with one message; ``skip`` drops those items and goes on.
3. Decode each usable video once (``video.py``), in parallel threads, in shards of ``shard_size`` videos;
   each finished shard is saved atomically under ``out_root/_cache/{split}/``, so a killed run resumes
   where it stopped. Files that fail to decode (or give no frame) are problems too, with the same policy.
4. Assemble each split from its shards into ``out_root/{split}/{videos,captions}`` (``records.write_split``),
   then delete the cache.

``out_root/problems.csv`` (split, video_id, problem, detail) lists every problem of the last run, and
``out_root/duplicates.csv`` (split, text, count, video_ids) the captions shared by several videos: standard
benchmarks contain them (4 in MSR-VTT 1k-A, 2,202 texts in MSVD test), so they are reported, never dropped,
and never stop a strict run. The caller writes manifest.json and vocab.txt from the returned summary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, NamedSplit
from tqdm.auto import tqdm

from vtrbench import resultfiles
from vtrbench.data import video as video_io
from vtrbench.data.annotations import DATASETS, VideoAnnotation, find_duplicates, load_annotations
from vtrbench.data.records import NO_GROUP, ORIGINAL, SPLITS, video_features, write_split
from vtrbench.resultfiles import replace_dir

log = logging.getLogger(__name__)

PROBLEM_KINDS = ("missing", "no_captions", "in_several_splits", "decode_error", "truncated", "too_short")
PROBLEM_COLUMNS = ("split", "video_id", "problem", "detail")
SHARD_FORMAT = 2  # bump when the shard layout or the decoding changes (2: truncation detected whatever the threading)
SHOWN_PROBLEMS = 5


@dataclass
class RealDataConfig:
    """Where a real dataset lives and how its videos are cached."""

    name: str  # "msrvtt" | "msvd" | "didemo"
    data_root: str  # folder with the annotation files
    video_dir: str = "videos"  # relative to data_root (or absolute)
    frames: int = 16  # frames decoded and cached per video (uniform segment centres; training samples these)
    resolution: int = 224  # side of the square frames in pixels (short side resized, centre crop)
    on_problem: str = "strict"  # "strict": stop on any problem | "skip": drop bad items, list in problems.csv
    msrvtt_train: str = "7k"  # "7k" (ClipBERT/CRET protocol) | "9k" (CLIP4Clip era)
    val_size: int = 500  # MSR-VTT validation videos held out of the train list (it has no val split)
    max_videos: int | None = None  # cap per split, first in file order (smoke runs); None = all
    splits: tuple[str, ...] = ("train", "val", "test")  # splits to prepare


@dataclass(frozen=True)
class Problem:
    """One row of problems.csv."""

    split: str
    video_id: str
    problem: str  # one of PROBLEM_KINDS
    detail: str


class DataProblemsError(ValueError):
    """Strict mode met problems; the message counts them per kind and shows the first few."""

    def __init__(self, name: str, problems: list[Problem], listing: Path):
        self.problems = problems
        counts = _count_kinds(problems)
        shown = "\n".join(f"  {p.split}/{p.video_id}: {p.problem}: {p.detail}" for p in problems[:SHOWN_PROBLEMS])
        more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        super().__init__(
            f"{name}: {len(problems)} data problems ("
            + ", ".join(f"{kind}: {n}" for kind, n in counts.items())
            + f"), first {min(len(problems), SHOWN_PROBLEMS)}:\n{shown}{more}\n"
            f"Fix the files (full list in {listing}), or set `dataset.on_problem: skip` to prepare without "
            f"these items (the run is then marked incomplete)."
        )


def prepare_real(cfg: RealDataConfig, out_root: Path, threads: int = 1, shard_size: int = 64) -> dict:
    """Validate, decode and cache one real dataset into ``out_root`` (see the module docstring).

    Args:
        cfg: the dataset config.
        out_root: output folder (``results/{run_name}/data/{dataset}/{fingerprint}``); created if needed.
        threads: decoding threads (PyAV releases the GIL while decoding).
        shard_size: videos per cache shard (the unit of resumption).

    Returns:
        ``{"name", "counts": {split: {"listed", "videos", "captions"}}, "problems", "problem_kinds",
        "duplicate_captions": {split: n_texts}, "incomplete", "capped", "decode": {...}, "config"}``.

    Raises:
        DataProblemsError: ``on_problem="strict"`` and at least one problem (written to problems.csv).
        FileNotFoundError: an annotation file or the video folder is missing.
        ValueError: a bad config value, a malformed annotation file, or a split left without videos.
    """
    _check_config(cfg, threads, shard_size)
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    video_dir = Path(cfg.data_root) / cfg.video_dir
    if not video_dir.is_dir():
        raise FileNotFoundError(f"video folder not found: {video_dir} (dataset.video_dir, relative to data_root)")

    annotations = load_annotations(cfg.name, cfg.data_root, tuple(cfg.splits), cfg.msrvtt_train, cfg.val_size)
    listed = {s: len(items) for s, items in annotations.items()}
    if cfg.max_videos is not None:
        annotations = {s: items[: cfg.max_videos] for s, items in annotations.items()}
    duplicates = find_duplicates(annotations)
    _write_duplicates(out_root / "duplicates.csv", duplicates.captions)

    # 1. validation, before any decoding
    usable, problems = _validate(annotations, video_dir, duplicates.cross_split)
    _stop_if_strict(cfg, problems, out_root)
    _write_problems(out_root / "problems.csv", problems)  # before a possible "no usable video" stop
    _check_not_empty(cfg, usable, problems)

    # 2. decoding, resumable shard by shard
    start = time.perf_counter()
    decoded, resumed = 0, 0
    shards: dict[str, list[Path]] = {}
    for split, items in usable.items():
        shards[split], n_new, n_old, failed = _decode_split(cfg, split, items, out_root, threads, shard_size)
        decoded, resumed = decoded + n_new, resumed + n_old
        problems += failed
    seconds = time.perf_counter() - start
    _stop_if_strict(cfg, problems, out_root)
    bad = {(p.split, p.video_id) for p in problems}
    usable = {s: [(a, p) for a, p in items if (s, a.video_id) not in bad] for s, items in usable.items()}
    _write_problems(out_root / "problems.csv", problems)
    _check_not_empty(cfg, usable, problems)

    # 3. assembly
    counts = {}
    for split, items in usable.items():
        counts[split] = {"listed": listed[split], **_write_split(cfg, split, items, shards[split], out_root)}
        shutil.rmtree(out_root / "_cache" / split, ignore_errors=True)
    _remove_if_empty(out_root / "_cache")
    if problems:
        log.warning("%s: prepared without %d problem item(s), see %s", cfg.name, len(problems), out_root)
    return {
        "name": cfg.name,
        "counts": counts,
        "problems": len(problems),
        "problem_kinds": _count_kinds(problems),
        "duplicate_captions": {s: len(texts) for s, texts in duplicates.captions.items()},
        "incomplete": bool(problems),
        "capped": cfg.max_videos is not None and any(n > cfg.max_videos for n in listed.values()),
        "decode": {"decoded": decoded, "from_cache": resumed, "seconds": seconds, "threads": threads},
        "config": asdict(cfg),
    }


def _check_config(cfg: RealDataConfig, threads: int, shard_size: int) -> None:
    if cfg.name not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.name!r}; choose one of: {', '.join(DATASETS)}")
    if cfg.on_problem not in ("strict", "skip"):
        raise ValueError(f"dataset.on_problem must be 'strict' or 'skip', got {cfg.on_problem!r}")
    for field_name in ("frames", "resolution"):
        if getattr(cfg, field_name) < 1:
            raise ValueError(f"dataset.{field_name} must be >= 1, got {getattr(cfg, field_name)}")
    if cfg.max_videos is not None and cfg.max_videos < 1:
        raise ValueError(f"dataset.max_videos must be None or >= 1, got {cfg.max_videos}")
    if not cfg.splits or any(s not in SPLITS for s in cfg.splits) or len(set(cfg.splits)) != len(cfg.splits):
        raise ValueError(f"dataset.splits must be distinct names from {SPLITS}, got {cfg.splits}")
    if threads < 1 or shard_size < 1:
        raise ValueError(f"threads and shard_size must be >= 1, got {threads} and {shard_size}")


def _validate(
    annotations: dict[str, list[VideoAnnotation]], video_dir: Path, cross_split: dict[str, list[str]]
) -> tuple[dict[str, list[tuple[VideoAnnotation, Path]]], list[Problem]]:
    """Split listed videos into usable (annotation, path) pairs and problems, in file order."""
    usable: dict[str, list[tuple[VideoAnnotation, Path]]] = {}
    problems: list[Problem] = []
    for split, items in annotations.items():
        usable[split] = []
        for item in items:
            path = video_io.find_video(video_dir, item.path_stem)
            owners = cross_split.get(item.video_id, [])
            keeper = max(owners, key=SPLITS.index) if owners else split  # an evaluation split keeps the video
            if path is None:
                detail = f"no file {item.path_stem}[.mp4|.webm|...] or frames folder in {video_dir}"
                problems.append(Problem(split, item.video_id, "missing", detail))
            elif not item.captions:
                problems.append(Problem(split, item.video_id, "no_captions", "listed but no caption found"))
            elif split != keeper:
                detail = f"also listed in {', '.join(o for o in owners if o != split)}; kept in {keeper} only"
                problems.append(Problem(split, item.video_id, "in_several_splits", detail))
            else:
                usable[split].append((item, path))
    return usable, problems


def _stop_if_strict(cfg: RealDataConfig, problems: list[Problem], out_root: Path) -> None:
    if problems and cfg.on_problem == "strict":
        _write_problems(out_root / "problems.csv", problems)
        raise DataProblemsError(cfg.name, problems, out_root / "problems.csv")


def _check_not_empty(cfg: RealDataConfig, usable: dict[str, list], problems: list[Problem]) -> None:
    for split, items in usable.items():
        if not items:
            dropped = sum(p.split == split for p in problems)
            raise ValueError(
                f"{cfg.name}: split {split!r} has no usable video ({dropped} dropped as problems; see "
                f"problems.csv); check dataset.data_root and dataset.video_dir "
                f"({cfg.data_root}, {cfg.video_dir})"
            )


def _decode_split(
    cfg: RealDataConfig,
    split: str,
    items: list[tuple[VideoAnnotation, Path]],
    out_root: Path,
    threads: int,
    shard_size: int,
) -> tuple[list[Path], int, int, list[Problem]]:
    """Decode the split's videos into cache shards; return the shard files, counts and decode problems."""
    cache = out_root / "_cache" / split
    cache.mkdir(parents=True, exist_ok=True)
    chunks = [items[i : i + shard_size] for i in range(0, len(items), shard_size)]
    files = [cache / f"shard-{i:05d}-{_shard_key(cfg, chunk)}.npz" for i, chunk in enumerate(chunks)]
    todo = [i for i, f in enumerate(files) if not f.is_file()]
    n_old = sum(len(chunks[i]) for i in range(len(chunks)) if i not in todo)
    if n_old:
        log.info("%s/%s: %d of %d videos already decoded, resuming", cfg.name, split, n_old, len(items))
    n_new = sum(len(chunks[i]) for i in todo)
    with (
        ThreadPoolExecutor(max_workers=threads) as pool,
        tqdm(total=n_new, desc=f"decode {cfg.name}/{split}", unit="video", disable=n_new == 0) as bar,
    ):
        for i in todo:
            results = []
            for result in pool.map(lambda item: _decode_one(item[1], cfg.frames, cfg.resolution), chunks[i]):
                results.append(result)
                bar.update(1)
            _save_shard(files[i], [a.video_id for a, _ in chunks[i]], results, cfg)
    problems = []
    for f in files:
        with np.load(f, allow_pickle=False) as shard:
            for vid, kind, detail in zip(
                shard["failed_ids"], shard["failed_kinds"], shard["failed_details"], strict=True
            ):
                problems.append(Problem(split, str(vid), str(kind), str(detail)))
    return files, n_new, n_old, problems


def _decode_one(path: Path, frames: int, resolution: int) -> np.ndarray | video_io.VideoDecodeError:
    """Frames [T, res, res, 3] of one video, or the decode error (anything else propagates)."""
    try:
        if path.is_dir():
            return video_io.decode_frame_folder(path, frames, resolution)
        return video_io.decode_video(path, frames, resolution)
    except video_io.VideoDecodeError as err:
        return err


def _shard_key(cfg: RealDataConfig, chunk: list[tuple[VideoAnnotation, Path]]) -> str:
    """Hash of what a shard's content depends on: decoding settings and each file's identity."""
    files = []
    for item, path in chunk:
        stat = path.stat()
        files.append([item.video_id, str(path), stat.st_size, stat.st_mtime_ns])
    payload = json.dumps([SHARD_FORMAT, cfg.frames, cfg.resolution, files])
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _save_shard(path: Path, video_ids: list[str], results: list, cfg: RealDataConfig) -> None:
    T, R = cfg.frames, cfg.resolution
    ok = [(vid, r) for vid, r in zip(video_ids, results, strict=True) if isinstance(r, np.ndarray)]
    failed = [(vid, r) for vid, r in zip(video_ids, results, strict=True) if not isinstance(r, np.ndarray)]
    frames = np.stack([r for _, r in ok]) if ok else np.zeros((0, T, R, R, 3), np.uint8)  # [n_ok, T, R, R, 3]
    resultfiles.write_npz(
        path,
        video_ids=np.array([vid for vid, _ in ok], dtype=str),
        frames=frames,
        failed_ids=np.array([vid for vid, _ in failed], dtype=str),
        failed_kinds=np.array([_problem_kind(e) for _, e in failed]),
        failed_details=np.array([str(e) for _, e in failed], dtype=str),
    )


def _problem_kind(error: video_io.VideoDecodeError) -> str:
    """The problems.csv kind of a decoding failure: a clip with no frame, a truncated file, or another error."""
    return {"no_frames": "too_short", "truncated": "truncated"}.get(error.reason, "decode_error")


def _write_split(
    cfg: RealDataConfig,
    split: str,
    items: list[tuple[VideoAnnotation, Path]],
    shards: list[Path],
    out_root: Path,
) -> dict:
    """Write ``out_root/split`` from the cache shards, in file order, without holding the split in RAM."""
    features = video_features(cfg.frames, cfg.resolution, cfg.resolution)
    captions = {"video_id": [], "text": []}
    for item, _ in items:
        captions["video_id"] += [item.video_id] * len(item.captions)
        captions["text"] += item.captions
    work = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=out_root))
    try:
        videos = Dataset.from_generator(
            _shard_rows,
            features=features,
            cache_dir=str(work / "arrow"),
            gen_kwargs={"shards": shards},
            split=NamedSplit(split),
        )
        write_split(work / "out", split, videos, captions, features)
        n_videos = len(videos)
        del videos
        replace_dir(work / "out" / split, out_root / split)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"videos": n_videos, "captions": len(captions["text"])}


def _shard_rows(shards: list[Path]):
    for path in shards:
        with np.load(path, allow_pickle=False) as shard:
            frames = shard["frames"]  # [n, T, R, R, 3]
            for vid, clip in zip(shard["video_ids"], frames, strict=True):
                yield {"video_id": str(vid), "frames": clip, "group_id": NO_GROUP, "variant": ORIGINAL}


def _write_problems(path: Path, problems: list[Problem]) -> None:
    _write_csv_atomic(path, PROBLEM_COLUMNS, [[p.split, p.video_id, p.problem, p.detail] for p in problems])


def _write_duplicates(path: Path, captions: dict[str, dict[str, list[str]]]) -> None:
    rows = [[s, text, len(vids), " ".join(vids)] for s, texts in captions.items() for text, vids in texts.items()]
    _write_csv_atomic(path, ("split", "text", "count", "video_ids"), rows)


def _write_csv_atomic(path: Path, columns: tuple[str, ...], rows: list[list]) -> None:
    resultfiles.write_csv(pd.DataFrame(rows, columns=list(columns)), path)


def _count_kinds(problems: list[Problem]) -> dict[str, int]:
    counts = {kind: sum(p.problem == kind for p in problems) for kind in PROBLEM_KINDS}
    return {kind: n for kind, n in counts.items() if n}


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
