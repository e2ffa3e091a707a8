"""Where the numbers in the report come from: code, software, machine, data fingerprint, wall time per step.

Reads only the files it is given (the prepared data's ``manifest.json``, the ``*.tsv`` files Snakemake's
``benchmark:`` directive wrote for this workflow's jobs, the runs table with the commit each run's checkpoint
recorded) plus the environment of the process that renders the report (package versions, CPU, threads).
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

PACKAGES = (
    "vtrbench",
    "torch",
    "numpy",
    "pandas",
    "transformers",
    "datasets",
    "faiss-cpu",
    "av",
    "torchmetrics",
    "snakemake",
    "matplotlib",
    "seaborn",
    "jinja2",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each package, ``"not installed"`` when missing."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_info(config: dict[str, Any]) -> dict[str, str]:
    """The machine that rendered the report (where the workflow ran) and the runs' device/thread settings."""
    train = config.get("train", {})
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu cores (os.cpu_count)": str(os.cpu_count()),
        "train.device (config)": str(train.get("device", "auto (schema default)")),
        "train.threads (config)": str(train.get("threads", "schema default")),
    }


def read_manifest(path: Path | None) -> dict[str, Any]:
    """The prepare step's manifest, or ``{}`` when none was given or it is unreadable."""
    if path is None:
        return {}
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def benchmark_times(paths: list[Path], root: Path | None = None) -> pd.DataFrame:
    """One row per benchmarked workflow job: ``rule``, ``job``, ``seconds``, ``max_rss_mb``, ``cpu_seconds``.

    Files are ``.../benchmarks/{rule}/{job}.tsv`` (Snakemake ``benchmark:``; columns ``s``, ``max_rss``,
    ``cpu_time``, ...); the rule is the folder after ``benchmarks``. Empty frame when none was given.
    """
    rows = []
    for path in sorted(map(Path, paths)):
        try:
            frame = pd.read_csv(path, sep="\t")
        except (OSError, ValueError, pd.errors.EmptyDataError):
            continue
        if "s" not in frame or frame.empty:
            continue
        parts = path.parts[path.parts.index("benchmarks") + 1 :] if "benchmarks" in path.parts else (path.stem,)
        rows.append(
            {
                "rule": parts[0],
                "job": str(Path(*parts[1:]).with_suffix("")) if len(parts) > 1 else "",
                "seconds": float(frame["s"].median()),
                "max_rss_mb": _number(frame, "max_rss"),
                "cpu_seconds": _number(frame, "cpu_time"),
            }
        )
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb", "cpu_seconds"])


def _number(frame: pd.DataFrame, column: str) -> float:
    if column not in frame:
        return float("nan")
    return float(pd.to_numeric(frame[column], errors="coerce").median())


def step_totals(bench: pd.DataFrame) -> pd.DataFrame:
    """Wall time summed per rule (jobs, total seconds, longest job)."""
    if bench.empty:
        return pd.DataFrame(columns=["rule", "jobs", "seconds", "longest"])
    grouped = bench.groupby("rule", sort=False)["seconds"]
    return pd.DataFrame({"jobs": grouped.size(), "seconds": grouped.sum(), "longest": grouped.max()}).reset_index()


def commits(runs: pd.DataFrame) -> str:
    """The commit(s) the runs' checkpoints recorded (the code that trained them, not the one rendering this)."""
    if runs.empty or "commit" not in runs:
        return "unknown (no commit recorded in the runs)"
    found = sorted(str(c) for c in runs["commit"].dropna().unique())
    return ", ".join(found) if found else "unknown"


def collect(manifest: dict[str, Any], config: dict[str, Any], benchmarks: list[Path], runs: pd.DataFrame) -> dict:
    """Everything the provenance section shows."""
    bench = benchmark_times(benchmarks)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commits(runs),
        "packages": package_versions(),
        "device": device_info(config),
        "manifest": manifest,
        "fingerprint": manifest.get("fingerprint", "unknown (no manifest.json)"),
        "benchmarks": bench,
        "steps": step_totals(bench),
    }
