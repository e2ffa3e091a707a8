"""Where the numbers in the report come from: software, machine, data fingerprint, wall time per workflow step.

Reads only result files (``results/data/{dataset}/manifest.json``, ``results/benchmarks/**/*.tsv`` written by
Snakemake's ``benchmark:`` directive, the runs' ``train_log.csv``) plus the environment of the process that renders
the report (package versions, CPU, threads). Every reader returns an empty value when its file is absent.
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
    """The machine that rendered the report and the device/thread settings the runs were configured with."""
    import torch

    train = config.get("train", {})
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu cores (os.cpu_count)": str(os.cpu_count()),
        "torch threads (this process)": str(torch.get_num_threads()),
        "CUDA": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible",
        "train.device (config)": str(train.get("device", "auto (schema default)")),
        "train.threads (config)": str(train.get("threads", "schema default")),
    }
    return info


def read_manifest(results: Path, dataset: str) -> dict[str, Any]:
    """The prepare step's manifest, or ``{}`` when it is missing or unreadable."""
    path = results / "data" / dataset / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def benchmark_times(results: Path) -> pd.DataFrame:
    """One row per benchmarked workflow job: ``rule``, ``job``, ``seconds``, ``max_rss_mb``, ``cpu_seconds``.

    Files are ``results/benchmarks/{rule}/{job}.tsv`` (Snakemake ``benchmark:``; columns ``s``, ``max_rss``,
    ``cpu_time``, ...). Empty frame when no benchmark was recorded.
    """
    rows = []
    for path in sorted((results / "benchmarks").glob("**/*.tsv")):
        try:
            frame = pd.read_csv(path, sep="\t")
        except (OSError, ValueError, pd.errors.EmptyDataError):
            continue
        if "s" not in frame or frame.empty:
            continue
        rel = path.relative_to(results / "benchmarks")
        rows.append(
            {
                "rule": rel.parts[0],
                "job": str(rel.with_suffix("")).removeprefix(rel.parts[0] + "/") if len(rel.parts) > 1 else "",
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


def collect(results: Path, config: dict[str, Any], commit: str) -> dict[str, Any]:
    """Everything the provenance section shows."""
    dataset = config["dataset"]["name"]
    manifest = read_manifest(results, dataset)
    bench = benchmark_times(results)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "packages": package_versions(),
        "device": device_info(config),
        "manifest": manifest,
        "fingerprint": manifest.get("fingerprint", "unknown (no manifest.json)"),
        "benchmarks": bench,
        "steps": step_totals(bench),
    }
