"""Collect every run's result files into pandas tables (mean ± std over seeds).

Reads only the ``results/runs/{dataset}/{method}/seed{seed}/metrics.json`` files it is given (the documented
contract, README "Result files") and, when present, the ``train_log.csv`` beside each (training clips/s), so a
user's own rule that writes that file in that schema shows up with no change here.
Writes new files, never touches the runs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

REQUIRED = {"method": str, "seed": int, "t2v": dict, "v2t": dict}
RECALL_KEYS = ("R@1", "R@5", "R@10", "MdR", "MnR")


class ResultFileError(ValueError):
    """A result file that does not follow the schema; the message names the file and the field."""


def read_metrics(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ResultFileError(f"{path}: not readable JSON ({err})") from err
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: must hold a JSON object with fields {', '.join(REQUIRED)}")
    for field, kind in REQUIRED.items():
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


def flatten(data: dict[str, Any]) -> dict[str, Any]:
    """One row per run: recall columns ``t2v_R@1`` ..., pairwise accuracies ``pairwise_{type}``, run info."""
    row = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for direction in ("t2v", "v2t"):
        row.update({f"{direction}_{k}": v for k, v in data[direction].items()})
    row.update({f"pairwise_{k}": v["accuracy"] for k, v in data.get("pairwise", {}).items()})
    return row


def training_cost(metrics_path: Path) -> dict[str, float]:
    """Training throughput of a run from the ``train_log.csv`` beside its ``metrics.json`` (empty if absent).

    ``train_clips_per_s``: median of the logged ``samples_per_s`` (videos per second of optimiser steps);
    ``train_seconds``: cumulative training time at the last logged step.
    """
    path = metrics_path.parent / "train_log.csv"
    if not path.exists():
        return {}
    log = pd.read_csv(path)
    cost = {}
    if "samples_per_s" in log and len(log):
        cost["train_clips_per_s"] = float(log["samples_per_s"].median())
    if "train_seconds" in log and len(log):
        cost["train_seconds"] = float(log["train_seconds"].iloc[-1])
    return cost


def summarize_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every numeric column, per method (``{col}_mean``, ``{col}_std``, ``seeds``)."""
    numeric = [c for c in runs.columns if c != "seed" and pd.api.types.is_numeric_dtype(runs[c])]
    grouped = runs.groupby("method", sort=False)
    summary = grouped[numeric].agg(["mean", "std"])
    summary.columns = [f"{col}_{stat}" for col, stat in summary.columns]
    summary.insert(0, "seeds", grouped["seed"].nunique())
    for col in ("kind", "method_class"):
        if col in runs:
            summary.insert(0, col, grouped[col].first())
    return summary.reset_index()


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def aggregate(metrics_files: list[str | Path], out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """``runs.csv`` (one row per method and seed) and ``summary.csv`` (mean ± std per method)."""
    out_dir = Path(out_dir)
    if not metrics_files:
        raise FileNotFoundError("no metrics.json files given: run the evaluate step first")
    runs = pd.DataFrame([flatten(read_metrics(Path(p))) | training_cost(Path(p)) for p in metrics_files])
    tables = {"runs": runs, "summary": summarize_runs(runs)}
    for name, frame in tables.items():
        write_csv_atomic(frame, out_dir / f"{name}.csv")
    return tables
