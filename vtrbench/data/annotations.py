"""Parsers for the standard annotation files of MSR-VTT, MSVD and DiDeMo, into one schema.

Every parser returns, per split, a list of :class:`VideoAnnotation` in the file's order. Files are the ones
the CLIP4Clip / X-Pool / ClipBERT code bases read (anchors §2.1):

- MSR-VTT: ``MSRVTT_JSFUSION_test.csv`` (1k-A test, one caption per video), ``MSRVTT_train.{7k,9k}.csv``
  (training ids) and ``MSRVTT_data.json`` (all 200k captions, needed for training only). MSR-VTT has no
  validation split; CLIP4Clip selects the best epoch on the test set (anchors §1.1), so we hold out
  ``val_size`` training videos instead.
- MSVD: ``captions_msvd.json`` (video id -> captions) and ``{train,val,test}_list.txt``; every caption is
  kept (multi-caption retrieval).
- DiDeMo: LocalizingMoments ``{train,val,test}_data.json``; paragraph-to-video retrieval, so all
  descriptions of a video are joined into one query (as CLIP4Clip and ClipBERT do).

A video listed without any caption gets ``captions=[]``; the prepare step reports it rather than the parser.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATASETS = ("msrvtt", "msvd", "didemo")
MSRVTT_TEST = "MSRVTT_JSFUSION_test.csv"
MSRVTT_TRAIN = {"7k": "MSRVTT_train.7k.csv", "9k": "MSRVTT_train.9k.csv"}
MSRVTT_CAPTIONS = "MSRVTT_data.json"
MSVD_CAPTIONS = "captions_msvd.json"
MSVD_LISTS = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}
DIDEMO_FILES = {"train": "train_data.json", "val": "val_data.json", "test": "test_data.json"}


@dataclass
class VideoAnnotation:
    """One video of a split.

    Attributes:
        video_id: the id the dataset's papers use (DiDeMo: the ``video`` file name, extension included).
        captions: its captions, in file order (may be empty: reported by the prepare step).
        path_stem: the name to look up under the video folder (``video.find_video``).
    """

    video_id: str
    captions: list[str] = field(default_factory=list)
    path_stem: str = ""


@dataclass
class Duplicates:
    """What :func:`find_duplicates` reports (nothing is dropped).

    Attributes:
        captions: per split, caption text -> the video ids carrying it, for texts occurring more than once
            (a video appears twice when it carries the same text twice).
        cross_split: video id -> the splits listing it, for ids in more than one split.
    """

    captions: dict[str, dict[str, list[str]]]
    cross_split: dict[str, list[str]]


def load_annotations(
    name: str,
    data_root: str | Path,
    splits: tuple[str, ...] = ("train", "val", "test"),
    msrvtt_train: str = "7k",
    val_size: int = 500,
    seed: int = 0,
) -> dict[str, list[VideoAnnotation]]:
    """Parse the requested splits of one dataset.

    Args:
        name: ``msrvtt``, ``msvd`` or ``didemo``.
        data_root: folder holding the annotation files.
        splits: any of ``train``, ``val``, ``test``.
        msrvtt_train: MSR-VTT training list, ``7k`` (ClipBERT/CRET) or ``9k`` (CLIP4Clip era).
        val_size: MSR-VTT videos held out of the training list as validation.
        seed: seed of that hold-out.

    Returns:
        split -> annotations, in file order.

    Raises:
        FileNotFoundError: an annotation file is missing (the message names it and what it holds).
        ValueError: unknown dataset or split, or a malformed file (the message names file, row and field).
    """
    root = Path(data_root)
    unknown = [s for s in splits if s not in ("train", "val", "test")]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; choose from: train, val, test")
    if name == "msrvtt":
        return {s: load_msrvtt(root, s, msrvtt_train, val_size, seed) for s in splits}
    if name == "msvd":
        return {s: load_msvd(root, s) for s in splits}
    if name == "didemo":
        return {s: load_didemo(root, s) for s in splits}
    raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def load_msrvtt(
    root: str | Path, split: str, train_list: str = "7k", val_size: int = 500, seed: int = 0
) -> list[VideoAnnotation]:
    """MSR-VTT: 1k-A test from the JSFusion csv; train/val from the 7k or 9k list and ``MSRVTT_data.json``.

    Validation = ``val_size`` ids of the training list: the ids are sorted, permuted with
    ``np.random.default_rng(seed)``, and the first ``val_size`` form val; both splits keep the list's order.
    """
    root = Path(root)
    if split == "test":
        rows = _read_csv(root / MSRVTT_TEST, ("video_id", "sentence"), "the MSR-VTT 1k-A test split")
        return _group_captions([(r["video_id"], r["sentence"]) for r in rows])
    if train_list not in MSRVTT_TRAIN:
        raise ValueError(f"unknown MSR-VTT training list {train_list!r}; choose one of: 7k, 9k")
    list_file = root / MSRVTT_TRAIN[train_list]
    ids = [r["video_id"] for r in _read_csv(list_file, ("video_id",), f"the MSR-VTT {train_list} training ids")]
    if not 0 <= val_size < len(ids):
        raise ValueError(f"MSR-VTT val_size must be in [0, {len(ids)}) for the {train_list} list, got {val_size}")
    if split == "val" and val_size == 0:
        raise ValueError("MSR-VTT val split requested with val_size=0; set val_size > 0 or drop 'val' from splits")
    ordered = sorted(ids)  # the hold-out depends on the set of ids and the seed, not on the file's order
    val_ids = {ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))[:val_size]}
    chosen = [v for v in ids if (v in val_ids) == (split == "val")]
    captions = _msrvtt_captions(root / MSRVTT_CAPTIONS, split)
    return [VideoAnnotation(v, list(captions.get(v, [])), v) for v in chosen]


def _msrvtt_captions(path: Path, split: str) -> dict[str, list[str]]:
    if not path.is_file():
        raise FileNotFoundError(
            f"MSR-VTT {split} split needs {path} (MSRVTT_data.json, the full caption file: "
            '{"sentences": [{"video_id", "caption"}, ...]}, 20 captions per video; e.g. from '
            "CLIP4Clip's msrvtt_data.zip). The test split works without it: use splits=('test',)"
        )
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        raise ValueError(f"{path}: expected an object with a 'sentences' list, got {type(data).__name__}")
    captions: dict[str, list[str]] = defaultdict(list)
    for i, row in enumerate(data["sentences"]):
        vid, text = _fields(row, ("video_id", "caption"), path, f"sentences[{i}]")
        captions[vid].append(text)
    return captions


def load_msvd(root: str | Path, split: str) -> list[VideoAnnotation]:
    """MSVD: ids from ``{split}_list.txt``, all captions from ``captions_msvd.json``."""
    root = Path(root)
    list_path = root / MSVD_LISTS[split]
    if not list_path.is_file():
        raise FileNotFoundError(f"MSVD {split} split needs {list_path} (one video id per line)")
    ids = [line.strip() for line in list_path.read_text().splitlines() if line.strip()]
    cap_path = root / MSVD_CAPTIONS
    if not cap_path.is_file():
        raise FileNotFoundError(f"MSVD needs {cap_path} (a JSON object: video id -> list of captions)")
    data = _read_json(cap_path)
    if not isinstance(data, dict):
        raise ValueError(f"{cap_path}: expected an object video id -> captions, got {type(data).__name__}")
    for vid, caps in data.items():
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise ValueError(f"{cap_path}: entry {vid!r}: captions must be a list of strings")
    return [VideoAnnotation(v, list(data.get(v, [])), v) for v in ids]


def load_didemo(root: str | Path, split: str) -> list[VideoAnnotation]:
    """DiDeMo: one paragraph per video, its moment descriptions in annotation order, exact repeats dropped.

    The video id is the ``video`` field itself (CLIP4Clip's key; 27 test videos exist in two containers,
    e.g. ``x.mov`` and ``x.mp4``, with different descriptions, so the extension must stay).
    """
    path = Path(root) / DIDEMO_FILES[split]
    if not path.is_file():
        raise FileNotFoundError(
            f"DiDeMo {split} split needs {path} (LocalizingMoments data/{DIDEMO_FILES[split]}: a list of "
            f"moments with 'description' and 'video')"
        )
    data = _read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of moments, got {type(data).__name__}")
    sentences: dict[str, list[str]] = {}
    for i, row in enumerate(data):
        text, video = _fields(row, ("description", "video"), path, f"moment {i}")
        seen = sentences.setdefault(video, [])
        text = text.strip()
        if text and text not in seen:
            seen.append(text)
    return [VideoAnnotation(v, [" ".join(s)] if s else [], v) for v, s in sentences.items()]


def find_duplicates(annotations: dict[str, list[VideoAnnotation]]) -> Duplicates:
    """Captions occurring more than once within a split, and video ids listed in more than one split.

    >>> a = {"train": [VideoAnnotation("v1", ["a dog"]), VideoAnnotation("v2", ["a dog", "a cat"])],
    ...      "test": [VideoAnnotation("v2", ["x"])]}
    >>> d = find_duplicates(a)
    >>> d.captions, d.cross_split
    ({'train': {'a dog': ['v1', 'v2']}}, {'v2': ['train', 'test']})
    """
    captions: dict[str, dict[str, list[str]]] = {}
    where: dict[str, list[str]] = defaultdict(list)
    for split, items in annotations.items():
        owners: dict[str, list[str]] = defaultdict(list)
        for item in items:
            for text in item.captions:
                owners[text].append(item.video_id)
            if split not in where[item.video_id]:
                where[item.video_id].append(split)
        repeated = {text: vids for text, vids in owners.items() if len(vids) > 1}
        if repeated:
            captions[split] = repeated
    return Duplicates(captions, {vid: s for vid, s in where.items() if len(s) > 1})


def _group_captions(pairs: list[tuple[str, str]]) -> list[VideoAnnotation]:
    grouped: dict[str, list[str]] = {}
    for vid, text in pairs:
        grouped.setdefault(vid, []).append(text)
    return [VideoAnnotation(v, caps, v) for v, caps in grouped.items()]


def _read_csv(path: Path, required: tuple[str, ...], what: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: expected {path.name} with {what} (columns {list(required)})")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {header}")
        rows = []
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            for col in required:
                if row.get(col) is None or not row[col].strip():
                    raise ValueError(f"{path}: row {line}: empty or missing field {col!r}")
            rows.append({c: row[c].strip() for c in required})
    return rows


def _read_json(path: Path) -> object:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _fields(row: object, names: tuple[str, ...], path: Path, where: str) -> tuple[str, ...]:
    if not isinstance(row, dict):
        raise ValueError(f"{path}: {where}: expected an object with {list(names)}, got {type(row).__name__}")
    for name in names:
        if not isinstance(row.get(name), str):
            raise ValueError(f"{path}: {where}: missing or non-string field {name!r}")
    return tuple(row[name] for name in names)
