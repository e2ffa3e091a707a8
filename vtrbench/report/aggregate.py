"""Collect every run's result files into pandas tables (mean ± std over seeds) and the training curves.

Reads only the files it is given: the runs' ``metrics.json`` (the documented contract, README "Result files")
and, for the trained ones, their ``train_log.csv`` / ``val_log.csv`` (the rule declares each), so a user's own rule
that writes ``metrics.json`` in that schema shows up with no change here. Writes new files, never touches the runs:

    runs.csv      one row per (method, seed): every field of metrics.json, plus training cost from train_log.csv
    summary.csv   one row per method: ``{column}_mean``, ``{column}_std`` (ddof 1), ``seeds``
    curves.csv        the validation logs stacked: method, seed, step, train_seconds, val, t2v_*, pairwise_*
    train_curves.csv  the training logs stacked: method, seed, step, loss, train_seconds
    rerank_sweep.csv  every re-ranker's (split, k, weight) grid, all seeds (empty without re-rankers)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vtrbench import resultfiles

WARMUP_STEPS = 10  # training steps left out of the median step time (allocator and thread warm-up)
TRAIN_LOG_COLUMNS = ("step", "samples_per_s", "train_seconds")  # what training_speed reads


def training_speed(train_log: pd.DataFrame, warmup: int = WARMUP_STEPS) -> dict[str, float]:
    """The suite's one estimate of training speed from a ``train_log.csv``: the median step time (``step_ms``,
    from the cumulative ``train_seconds``, which exclude evaluation) and the median ``samples_per_s``
    (``clips_per_s``) over the steps after ``warmup`` (every step of a run that has no more), and the total
    ``train_seconds``."""
    log = train_log.sort_values("step")
    seconds = log["train_seconds"].to_numpy(dtype=float)
    per_step = np.diff(np.concatenate([[0.0], seconds]))
    rate = log["samples_per_s"].to_numpy(dtype=float)
    kept = slice(warmup, None) if len(per_step) > warmup else slice(None)
    return {
        "step_ms": 1000.0 * float(np.median(per_step[kept])),
        "clips_per_s": float(np.median(rate[kept])),
        "train_seconds": float(seconds[-1]),
    }


def training_cost(train_log: pd.DataFrame) -> dict[str, float]:
    """``train_clips_per_s`` and ``train_seconds`` of a run (:func:`training_speed`), as runs.csv names them."""
    if train_log.empty:
        return {}
    speed = training_speed(train_log)
    return {"train_clips_per_s": speed["clips_per_s"], "train_seconds": speed["train_seconds"]}


def summarize_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every numeric column, per method (``{col}_mean``, ``{col}_std``, ``seeds``)."""
    numeric = [c for c in runs.columns if c != "seed" and pd.api.types.is_numeric_dtype(runs[c])]
    grouped = runs.groupby("method", sort=False)
    summary = grouped[numeric].agg(["mean", "std"])
    summary.columns = [f"{col}_{stat}" for col, stat in summary.columns]
    summary.insert(0, "seeds", grouped["seed"].nunique())
    for col in ("kind", "design", "method_class", "rerank_first", "rerank_second"):  # labels, the same for every seed
        if col in runs:
            summary.insert(0, col, grouped[col].first())
    return summary.reset_index()


def _logs_by_run(paths: list[str | Path], name: str) -> dict[Path, Path]:
    """Run folder -> its log file, for the ``name`` files given."""
    return {Path(p).parent: Path(p) for p in paths if Path(p).name == name}


def aggregate(
    metrics_files: list[str | Path],
    out_dir: str | Path,
    logs: list[str | Path] | None = None,
    rerank_sweeps: list[str | Path] | None = None,
    convergence: str | Path | None = None,
) -> dict[str, pd.DataFrame]:
    """The tables above under ``out_dir``; ``logs``: the runs' train/val logs; ``rerank_sweeps``: the re-rankers'
    rerank_sweep.csv files; ``convergence``: the budget test's table, whose flags summary.csv carries."""
    out_dir = Path(out_dir)
    if not metrics_files:
        raise FileNotFoundError("no metrics.json files given: run the evaluate step first")
    train_logs = _logs_by_run(logs or [], "train_log.csv")
    val_logs = _logs_by_run(logs or [], "val_log.csv")
    rows, curves, losses = [], [], []
    for path in map(Path, metrics_files):
        row = resultfiles.flatten_metrics(resultfiles.read_metrics(path))
        if path.parent in train_logs:
            log = resultfiles.read_csv(train_logs[path.parent], TRAIN_LOG_COLUMNS, "train_log.csv")
            row |= training_cost(log)
            losses.append(log[["step", "loss", "train_seconds"]].assign(method=row["method"], seed=row["seed"]))
        if path.parent in val_logs:
            val = resultfiles.read_csv(val_logs[path.parent], ("step", "train_seconds", "val"), "val_log.csv")
            curves.append(val.assign(method=row["method"], seed=row["seed"]))
        rows.append(row)
    runs = pd.DataFrame(rows)
    summary = summarize_runs(runs)
    if convergence is not None:
        flags = resultfiles.read_csv(convergence, ("method", "gain", "ci_low", "ci_high", "still_improving"))
        flags = flags.rename(columns={c: f"plateau_{c}" for c in ("gain", "ci_low", "ci_high", "steps_long")})
        keep = ["method", "still_improving", "plateau_gain", "plateau_ci_low", "plateau_ci_high", "plateau_steps_long"]
        summary = summary.merge(flags[[c for c in keep if c in flags]], on="method", how="left")
    tables = {
        "runs": runs,
        "summary": summary,
        "curves": _stack(curves, ["method", "seed", "step", "train_seconds", "val"]),
        "train_curves": _stack(losses, ["method", "seed", "step", "loss", "train_seconds"]),
        "rerank_sweep": _stack(
            [
                resultfiles.read_csv(p, ("method", "seed", "split", "k", "weight", "t2v_R@1"))
                for p in rerank_sweeps or []
            ],
            ["method", "seed", "split", "k", "weight", "t2v_R@1", "chosen"],
        ),
    }
    for name, frame in tables.items():
        resultfiles.write_csv(frame, out_dir / f"{name}.csv")
    return tables


def _stack(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
