"""The throughput tables: medians of the raw timing rows of ``vtrbench.throughput``.

throughput.csv        per method and grid point (frames, batch size): step time, overhead, clips/s, memory
loss_throughput.csv   per declared loss and grid point: median ms and GEES / NCE
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vtrbench import resultfiles
from vtrbench.throughput import LOSS_COLUMNS


def _p95(x: pd.Series) -> float:
    return float(np.percentile(x, 95))


def summarize(raw: pd.DataFrame) -> pd.DataFrame:
    """Medians per (method, frames, batch size) of the raw rows.

    Columns: method, method_class, kind, loss, frames, batch_size, device, dtype, threads, reps, step_ms,
    step_ms_p95, clips_per_s (B / median step), bare_ms, overhead (median over repeats of step / bare, paired),
    forward_ms, encode_ms, head_ms (median over repeats of forward - encode), loss_share (head_ms / forward_ms),
    peak_mem_mb (the step phase's peak).
    """
    keys = ["method", "method_class", "kind", "loss", "frames", "batch_size", "device", "dtype", "threads"]
    wide = raw.pivot_table(index=[*keys, "rep"], columns="phase", values="ms", aggfunc="first").reset_index()
    wide["head"] = wide["forward"] - wide["encode"]
    if "bare" not in wide:
        wide["bare"] = np.nan
    wide["ratio"] = wide["step"] / wide["bare"]
    grouped = wide.groupby(keys, sort=False)
    table = grouped.agg(
        reps=("rep", "nunique"),
        step_ms=("step", "median"),
        step_ms_p95=("step", _p95),
        bare_ms=("bare", "median"),
        overhead=("ratio", "median"),
        forward_ms=("forward", "median"),
        encode_ms=("encode", "median"),
        head_ms=("head", "median"),
    ).reset_index()
    table["clips_per_s"] = table["batch_size"] / (table["step_ms"] / 1000.0)
    table["loss_share"] = table["head_ms"] / table["forward_ms"]
    peak = raw[raw.phase == "step"].groupby(keys, sort=False)["peak_mem_mb"].max().reset_index()
    table = table.merge(peak, on=keys, how="left")
    return table.sort_values(["method", "frames", "batch_size"], ignore_index=True)


def summarize_losses(raw: pd.DataFrame) -> pd.DataFrame:
    """Median / p95 ms per (loss, frames, batch size), and ``gees_over_nce`` = median GEES / median NCE."""
    keys = ["loss", "frames", "batch_size", "dim", "device", "dtype", "threads"]
    table = raw.groupby(keys, sort=False)["ms"].agg(reps="count", ms="median", ms_p95=_p95).reset_index()
    nce = table[table.loss == "nce"].set_index(["frames", "batch_size"])["ms"]
    ratio = [ms / nce.get((f, b), np.nan) for f, b, ms in zip(table.frames, table.batch_size, table.ms, strict=True)]
    table["gees_over_nce"] = np.where(table.loss == "gees", ratio, np.nan)
    return table.sort_values(["loss", "frames", "batch_size"], ignore_index=True)


def aggregate_throughput(method_files: list[str | Path], loss_file: str | Path, tables: str | Path) -> pd.DataFrame:
    """``throughput.csv`` (medians per method and grid point) and ``loss_throughput.csv``."""
    if not method_files:
        raise FileNotFoundError("no throughput.csv files given: run the throughput step first")
    raw = pd.concat([resultfiles.read_csv(p, ("method", "phase", "ms")) for p in method_files], ignore_index=True)
    table = summarize(raw)
    loss_raw = resultfiles.read_csv(loss_file, ("loss", "ms"))
    loss_table = summarize_losses(loss_raw) if len(loss_raw) else pd.DataFrame(columns=LOSS_COLUMNS)
    resultfiles.write_csv(table, Path(tables) / "throughput.csv")
    resultfiles.write_csv(loss_table, Path(tables) / "loss_throughput.csv")
    return table
