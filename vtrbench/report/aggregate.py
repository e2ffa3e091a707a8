"""Collect every run's result files into pandas tables (mean ± std over seeds).

Reads only the ``results/runs/{dataset}/{method}/seed{seed}/metrics.json`` files it is given (the documented
contract, README "Result files"), so a user's own rule that writes that file in that schema shows up with no
change here. Writes new files, never touches the runs.
"""

from __future__ import annotations

import json
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
    for field, kind in REQUIRED.items():
        if not isinstance(data.get(field), kind):
            raise ResultFileError(f"{path}: field {field!r} missing or not a {kind.__name__}")
    for direction in ("t2v", "v2t"):
        for key in RECALL_KEYS:
            if not isinstance(data[direction].get(key), int | float):
                raise ResultFileError(f"{path}: field '{direction}.{key}' missing or not a number")
    return data


def flatten(data: dict[str, Any]) -> dict[str, Any]:
    """One row per run: recall columns ``t2v_R@1`` ..., pairwise accuracies ``pairwise_{type}``, run info."""
    row = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for direction in ("t2v", "v2t"):
        row.update({f"{direction}_{k}": v for k, v in data[direction].items()})
    row.update({f"pairwise_{k}": v["accuracy"] for k, v in data.get("pairwise", {}).items()})
    return row


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
    runs = pd.DataFrame([flatten(read_metrics(Path(p))) for p in metrics_files])
    tables = {"runs": runs, "summary": summarize_runs(runs)}
    for name, frame in tables.items():
        write_csv_atomic(frame, out_dir / f"{name}.csv")
    return tables
