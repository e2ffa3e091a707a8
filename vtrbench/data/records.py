"""The on-disk record schema every dataset (synthetic or real) is prepared into.

One prepared dataset is a folder (``results/{run_name}/data/{dataset}/{fingerprint}/``)::

    manifest.json          name, fingerprint, counts, generator/loader parameters, problems count
    vocab.txt              word-level vocabulary built from the train captions (for from-scratch text encoders)
    {split}/videos/        Hugging Face dataset: video_id, frames [T, H, W, 3] uint8, group_id, variant
    {split}/captions/      Hugging Face dataset: video_id, text

Every split of every dataset has the same columns, so trainers, evaluators and metrics never branch on the
dataset. ``group_id`` / ``variant`` carry the synthetic benchmark's hard-negative groups; real datasets use
``group_id = -1`` and ``variant = "original"``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Array4D, Dataset, Features, Value, disable_progress_bars, load_from_disk

from vtrbench.resultfiles import replace_dir

disable_progress_bars()  # one bar per table save would bury our own progress bars in the logs

SPLITS = ("train", "val", "test")
NO_GROUP = -1
ORIGINAL = "original"
# Loaded into RAM when smaller than this; larger stores are read lazily from the memory-mapped Arrow files.
IN_MEMORY_BYTES = 2 * 1024**3


def video_features(num_frames: int, height: int, width: int) -> Features:
    """Arrow schema of a ``videos`` table: frames are stored already sampled, as uint8 RGB."""
    return Features(
        {
            "video_id": Value("string"),
            "frames": Array4D(shape=(num_frames, height, width, 3), dtype="uint8"),
            "group_id": Value("int32"),
            "variant": Value("string"),
        }
    )


CAPTION_FEATURES = Features({"video_id": Value("string"), "text": Value("string")})


@dataclass
class SplitData:
    """One split, ready for training or evaluation.

    Attributes:
        video_ids: [n_video] ids, in gallery order.
        frames: a :class:`FrameStore`; ``frames[idx]`` -> uint8 [len(idx), T, H, W, 3].
        group_id: [n_video] int; videos of one hard-negative group share it (-1: no group).
        variant: [n_video] str; "original" or the hard-negative type (e.g. "colour_swap").
        captions: [n_caption] str.
        caption_video: [n_caption] int, index into ``video_ids`` of each caption's video.
    """

    video_ids: list[str]
    frames: FrameStore
    group_id: np.ndarray
    variant: np.ndarray
    captions: list[str]
    caption_video: np.ndarray

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)

    def captions_of(self) -> list[np.ndarray]:
        """Caption indices per video: [n_video] arrays (a video may have several captions)."""
        order = np.argsort(self.caption_video, kind="stable")
        bounds = np.searchsorted(self.caption_video[order], np.arange(self.num_videos + 1))
        return [order[bounds[i] : bounds[i + 1]] for i in range(self.num_videos)]


class FrameStore:
    """Random access to a split's frames: in RAM when small, memory-mapped Arrow otherwise."""

    def __init__(self, table: Dataset):
        self._table = table.with_format("numpy", columns=["frames"], dtype=np.uint8)  # default would be int64
        nbytes = len(table) * int(np.prod(table.features["frames"].shape))
        self._array = self._table[:]["frames"] if nbytes <= IN_MEMORY_BYTES else None

    def __len__(self) -> int:
        return len(self._table)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._table.features["frames"].shape)

    def __getitem__(self, idx: Sequence[int] | np.ndarray) -> np.ndarray:
        if self._array is not None:
            return self._array[np.asarray(idx)]
        rows = self._table[np.asarray(idx).tolist()]["frames"]
        return np.asarray(rows, dtype=np.uint8)

    def gather(self, videos: np.ndarray, frame_idx: np.ndarray) -> np.ndarray:
        """Frames ``frame_idx[i]`` of video ``videos[i]``: uint8 [B, M, H, W, 3], copying only those frames.

        Plain fancy indexing on purpose: ``np.take_along_axis`` over a broadcast 5-D index is far slower.
        """
        if self._array is not None:
            return self._array[videos[:, None], frame_idx]
        clips = self[videos]  # [B, T, H, W, 3] read from the memory-mapped store
        return clips[np.arange(len(videos))[:, None], frame_idx]


def write_split(root: Path, split: str, videos: Dataset | dict, captions: Dataset | dict, features: Features) -> None:
    """Write one split (videos + captions tables) under ``root/split``; ``videos`` may be a column dict.

    Atomic: both tables are saved into a temporary sibling folder (``root/.{split}.{pid}.tmp``), which is then
    moved onto ``root/split`` (``resultfiles.replace_dir``), so a killed process never leaves a half-written split
    under its final name; at worst the temporary folder stays behind, and nothing reads it.
    """
    videos_ds = videos if isinstance(videos, Dataset) else Dataset.from_dict(videos, features=features)
    captions_ds = captions if isinstance(captions, Dataset) else Dataset.from_dict(captions, features=CAPTION_FEATURES)
    _check_captions_reference_videos(videos_ds, captions_ds, split)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{split}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        videos_ds.save_to_disk(str(tmp / "videos"))
        captions_ds.save_to_disk(str(tmp / "captions"))
        replace_dir(tmp, root / split)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_captions_reference_videos(videos: Dataset, captions: Dataset, split: str) -> None:
    known = set(videos["video_id"])
    unknown = sorted(set(captions["video_id"]) - known)
    if unknown:
        raise ValueError(f"split {split!r}: {len(unknown)} captions name videos not in the split, e.g. {unknown[:3]}")


def load_split(root: str | Path, split: str) -> SplitData:
    """Load a prepared split; raises a one-line error when the folder or the split is missing or empty."""
    root = Path(root)
    where = root / split
    if not (where / "videos").is_dir() or not (where / "captions").is_dir():
        raise FileNotFoundError(
            f"prepared split not found: {where}/videos and {where}/captions "
            f"(run `vtrbench prepare` or the workflow's prepare rule first)"
        )
    videos, captions = _load_table(where / "videos"), _load_table(where / "captions")
    for name, table in (("videos", videos), ("captions", captions)):
        if table is None or len(table) == 0:
            raise ValueError(f"split {split!r} in {root} has no {name}: check the dataset config and problems.csv")
    video_ids = _column(videos, "video_id")
    position = {vid: i for i, vid in enumerate(video_ids)}
    caption_video = np.array([position[v] for v in _column(captions, "video_id")], dtype=np.int64)
    return SplitData(
        video_ids=video_ids,
        frames=FrameStore(videos),
        group_id=np.asarray(_column(videos, "group_id"), dtype=np.int64),
        variant=np.asarray(_column(videos, "variant"), dtype=object),
        captions=_column(captions, "text"),
        caption_video=caption_video,
    )


def _column(table: Dataset, name: str) -> list:
    """One column as a Python list, read from Arrow in one call (not row by row)."""
    return table.data.column(name).to_pylist()


def _load_table(path: Path) -> Dataset | None:
    """``load_from_disk``, or None for a table saved with zero rows (datasets cannot reload those).

    Raises:
        FileNotFoundError: the table's Arrow files are missing or unreadable (deleted or truncated by hand, a
            disk error): the message says to re-run prepare.
    """
    try:
        state = json.loads((path / "state.json").read_text())
        if not state.get("_data_files"):
            return None
        table = load_from_disk(str(path))
        table.data.column(table.column_names[0])  # touches the Arrow data: a truncated file fails here
        return table
    except (OSError, ValueError, KeyError, pa.ArrowException) as err:
        root = path.parent.parent
        raise FileNotFoundError(
            f"prepared dataset {root} is damaged ({path.name}: {err}); re-run prepare: delete {root} and run "
            f"snakemake again, or `python -m vtrbench.cli prepare --config {root}/config.json --out {root}`"
        ) from None
