"""Result I/O: every file a step writes goes through one atomic writer here, and the contract files are read here.

Atomic = written to a temporary file beside the target, then renamed over it (``os.replace``), so a reader (or a
killed process) never sees half a file; at worst a ``*.tmp`` is left behind, which nothing reads. This is the only
module that renames files into place.

Readers check the documented contract (README "Result files") at the boundary and raise :class:`ResultFileError`
naming the file and the field, so a user's own rule that writes a malformed file gets told what to fix.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

METRICS_REQUIRED = {"method": str, "seed": int, "t2v": dict, "v2t": dict}
RECALL_KEYS = ("R@1", "R@5", "R@10", "MdR", "MnR")
LATENCY_REQUIRED = ("method", "stage", "backend", "gallery_size", "batch_size", "seconds", "items", "measured")


class ResultFileError(ValueError):
    """A result file that does not follow the schema; the message names the file and the field."""


# ----- writers -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, rename it onto ``path``.

    The temporary name keeps the suffix (``.x.123.tmp.png``), so writers that pick a format by extension still
    work, and holds the process id, so two processes writing the same file (two jobs caching the same tokens)
    never write into one temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists() and not tmp.is_dir():
            tmp.unlink()


def write_csv(table: pd.DataFrame | list[dict[str, Any]], path: str | Path) -> None:
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_torch(payload: dict[str, Any], path: str | Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """One array as .npy (readable memory-mapped, ``np.load(path, mmap_mode="r")``)."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.save(f, array)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written folder into place (the old one, if any, is removed first)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


# ----- readers -----------------------------------------------------------------------------------------------------


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A run's ``metrics.json``, checked: ``method`` (str), ``seed`` (int), finite t2v/v2t recalls, pairwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ResultFileError(f"{path}: not readable JSON ({err})") from err
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: must hold a JSON object with fields {', '.join(METRICS_REQUIRED)}")
    for field, kind in METRICS_REQUIRED.items():
        if not isinstance(data.get(field), kind):
            raise ResultFileError(f"{path}: field {field!r} missing or not a {kind.__name__}")
    for direction in ("t2v", "v2t"):
        for key in RECALL_KEYS:
            value = data[direction].get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ResultFileError(f"{path}: field '{direction}.{key}' missing or not a finite number")
    pairwise = data.get("pairwise", {})
    for kind, entry in pairwise.items() if isinstance(pairwise, dict) else [("", None)]:
        if not isinstance(entry, dict) or not isinstance(entry.get("accuracy"), int | float):
            raise ResultFileError(f"{path}: field 'pairwise.{kind}' must be an object with a numeric 'accuracy'")
    return data


def flatten_metrics(data: dict[str, Any]) -> dict[str, Any]:
    """One row per run: recall columns ``t2v_R@1`` ..., pairwise accuracies ``pairwise_{type}``, run info, and
    any other block one level down (``rerank_k``, ``interaction_pairwise_colour_swap``, ...)."""
    row = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for direction in ("t2v", "v2t"):
        row.update({f"{direction}_{k}": v for k, v in data[direction].items()})
    row.update({f"pairwise_{k}": v["accuracy"] for k, v in data.get("pairwise", {}).items()})
    for block, values in data.items():
        if block in ("t2v", "v2t", "pairwise") or not isinstance(values, dict):
            continue
        for key, value in values.items():
            if isinstance(value, dict):  # e.g. interaction.pairwise: {type: {"accuracy": ...}}
                row.update({f"{block}_{key}_{t}": v["accuracy"] for t, v in value.items() if isinstance(v, dict)})
            else:
                row[f"{block}_{key}"] = value
    return row


def read_csv(path: str | Path, required: tuple[str, ...] = (), what: str = "") -> pd.DataFrame:
    """A CSV result file with its ``required`` columns; a missing or malformed file names itself."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ResultFileError(f"{path}: not a readable CSV ({err})") from err
    missing = [c for c in required if c not in frame]
    if missing:
        where = f" (README, {what})" if what else ""
        raise ResultFileError(f"{path}: column(s) {', '.join(missing)} missing{where}")
    return frame


def read_latency(path: str | Path) -> pd.DataFrame:
    """A ``latency.csv`` with the optional columns filled in (a user's rule may leave them out)."""
    frame = read_csv(path, LATENCY_REQUIRED, "latency.csv")
    optional = {
        "extrapolated": False,
        "synthetic_gallery": False,
        "bytes_per_video": float("nan"),
        "flops_per_query": float("nan"),
        "matmul_gflops": float("nan"),
        "k": 0,
    }
    for col, default in optional.items():
        if col not in frame:
            frame[col] = default
    return frame


def read_optional_csv(path: str | Path | None) -> pd.DataFrame:
    """A derived table the report renders when its step ran; an empty frame when it was not given."""
    if path is None:
        return pd.DataFrame()
    return read_csv(path)


def read_parquet(path: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A parquet result file with its ``required`` columns; a missing or malformed file names itself."""
    path = Path(path)
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise ResultFileError(f"{path}: not a readable parquet file ({err})") from err
    missing = [c for c in required if c not in frame]
    if missing:
        raise ResultFileError(f"{path}: column(s) {', '.join(missing)} missing")
    return frame


def read_t2v_hits(folder: str | Path, k: int = 1) -> pd.Series:
    """Per-query t2v R@k outcomes (100 = the positive ranked within the first ``k``, else 0) by caption index, from
    a run folder's ``ranks.parquet`` (the paired comparisons, the budget test and the frame sweep read it this way;
    their mean is metrics.json's ``t2v`` ``R@k``)."""
    ranks = read_parquet(Path(folder) / "ranks.parquet", ("direction", "query", "rank"))
    t2v = ranks[ranks.direction == "t2v"]
    return pd.Series((t2v["rank"].to_numpy() <= k).astype(float) * 100, index=t2v["query"].to_numpy())


def read_pairwise(folder: str | Path) -> pd.DataFrame | None:
    """A run folder's ``pairwise.parquet`` (one row per hard-negative comparison), or None when it has none."""
    path = Path(folder) / "pairwise.parquet"
    return read_parquet(path, ("query", "negative", "outcome")) if path.exists() else None
