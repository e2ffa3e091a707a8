"""The frame sweep's tables (CRET paper Fig. 5), from the result files of its points (``vtrbench.sweep``):

    frame_sweep.csv        one row per (frames, loss): test t2v R@1/5/10 mean ± std over seeds, step time, clips/s
    sweep_runs.csv         the same per run
    sweep_curves.csv       one row per validation point: val recall against cumulative training seconds
    sweep_equal_cost.csv   val R@5 reached by each (loss, frames) within the training time of each frame count
    sweep_comparisons.csv  paired test t2v R@1 / R@5 differences of the compared points (``vtrbench.sweep.sweep_pairs``:
                           gees@M - nce@M at each M, gees@4 - nce@16), beside each side's step time

Step time comes from the training logs through ``vtrbench.report.aggregate.training_speed`` (the one estimator of
the suite). The paired intervals are the suite's hierarchical bootstrap (``vtrbench.report.compare.compare``): seeds
drawn with replacement (seed s of A with seed s of B when both points ran the same seeds, as every sweep point
does), then the test queries, shared by both (every point is tested on the same stored dataset). The paper's
numbers come from the ledger (``data/published.csv``, rows "CRET Fig. 5a"), never from this file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from vtrbench import resultfiles
from vtrbench.report.aggregate import TRAIN_LOG_COLUMNS, training_speed
from vtrbench.report.compare import Outcomes, compare
from vtrbench.sweep import SWEPT_OPTION, Point, pairs_of, point_label

RECALLS = ("R@1", "R@5", "R@10")
PAPER_SOURCE = "CRET Fig. 5a"  # ledger rows with the paper's R@5 against frames
COMPARED = (1, 5)  # the test t2v R@k of sweep_comparisons.csv (R@1, and R@5, which the paper plots)
COMPARISON_COLUMNS = [
    "a", "b", "loss_a", "frames_a", "loss_b", "frames_b", "metric", "a_mean", "b_mean", "diff", "ci_low", "ci_high",
    "p_a_beats_b", "seeds", "paired_seeds", "queries", "step_ms_a", "step_ms_b", "step_ratio",
]  # fmt: skip


def paper_r5(ledger: str | Path | None) -> dict[str, dict[int, float]]:
    """The paper's Fig. 5(a) R@5 per loss and frame count, from the ledger ({} without one)."""
    if ledger is None:
        return {}
    table = resultfiles.read_csv(ledger, ("source_table", "loss", "frames", "R@5"))
    rows = table[table.source_table == PAPER_SOURCE]
    return {
        str(loss): {int(f): float(r) for f, r in zip(g.frames, g["R@5"], strict=True)}
        for loss, g in rows.groupby("loss")
    }


def describe_point(seed_dir: str | Path) -> tuple[str, int, int]:
    """(loss, frames, seed) of a sweep run folder ``.../{fp}/seed{seed}``, read from the unit's ``config.json``."""
    seed_dir = Path(seed_dir)
    if not seed_dir.name.startswith("seed"):
        raise ValueError(f"{seed_dir}: expected a run folder .../seed{{seed}}")
    path = seed_dir.parent / "config.json"
    try:
        config = json.loads(path.read_text())
        (entry,) = config["methods"].values()
        return str(entry[SWEPT_OPTION]), int(config["train"]["frames"]), int(seed_dir.name[4:])
    except (OSError, ValueError, KeyError) as err:
        raise resultfiles.ResultFileError(f"{path}: not the config of a sweep point ({err})") from err


def load_runs(run_dirs: list[str | Path]) -> pd.DataFrame:
    """One row per sweep run: loss, frames, seed, test t2v recalls, step time, clips/s, total training seconds."""
    rows = []
    for d in run_dirs:
        d = Path(d)
        loss, frames, seed = describe_point(d)
        metrics = resultfiles.read_metrics(d / "metrics.json")
        stats = training_speed(resultfiles.read_csv(d / "train_log.csv", TRAIN_LOG_COLUMNS, "train_log.csv"))
        rows.append(
            {
                "loss": loss,
                "frames": frames,
                "seed": seed,
                **{f"t2v_{k}": metrics["t2v"][k] for k in (*RECALLS, "MdR")},
                "selected_step": metrics.get("selected_step"),
                **stats,
            }
        )
    return pd.DataFrame(rows).sort_values(["loss", "frames", "seed"], ignore_index=True)


def frame_sweep_table(runs: pd.DataFrame, paper: dict[str, dict[int, float]] | None = None) -> pd.DataFrame:
    """frames, loss, seeds, ``t2v_R@k_mean`` / ``_std`` (sample std, ddof 1), median step_ms, clips_per_s."""
    grouped = runs.groupby(["frames", "loss"], sort=True)
    table = grouped.agg(seeds=("seed", "nunique"))
    for k in (*RECALLS, "MdR"):
        table[f"t2v_{k}_mean"] = grouped[f"t2v_{k}"].mean()
        table[f"t2v_{k}_std"] = grouped[f"t2v_{k}"].std()
    table["step_ms"] = grouped["step_ms"].median()
    table["clips_per_s"] = grouped["clips_per_s"].median()
    table["train_seconds_mean"] = grouped["train_seconds"].mean()
    table = table.reset_index()
    paper = paper or {}
    table["paper_R@5"] = [paper.get(loss, {}).get(f, np.nan) for f, loss in zip(table.frames, table.loss, strict=True)]
    return table


def sweep_curves(run_dirs: list[str | Path]) -> pd.DataFrame:
    """Val recall against cumulative training seconds: loss, frames, seed, step, train_seconds, val_R@1/5/10, val."""
    frames_out = []
    for d in run_dirs:
        loss, frames, seed = describe_point(d)
        val = resultfiles.read_csv(Path(d) / "val_log.csv", ("step", "train_seconds", "val"), "val_log.csv")
        curve = pd.DataFrame({"loss": loss, "frames": frames, "seed": seed, "step": val["step"]})
        curve["train_seconds"] = val["train_seconds"]
        for k in RECALLS:
            curve[f"val_{k}"] = val[f"t2v_{k}"]
        curve["val"] = val["val"]
        frames_out.append(curve)
    return pd.concat(frames_out, ignore_index=True).sort_values(["loss", "frames", "seed", "step"], ignore_index=True)


def recall_at_budget(curves: pd.DataFrame, budget_s: float, metric: str = "val_R@5") -> pd.DataFrame:
    """Per run, ``metric`` at the last validation point reached within ``budget_s`` training seconds (NaN if none).

    Returns one row per (loss, frames, seed): ``budget_s``, ``step``, ``train_seconds``, ``metric``.
    """
    rows = []
    for (loss, frames, seed), run in curves.groupby(["loss", "frames", "seed"], sort=True):
        within = run[run["train_seconds"] <= budget_s]
        last = within.iloc[-1] if len(within) else None
        rows.append(
            {
                "loss": loss,
                "frames": frames,
                "seed": seed,
                "budget_s": budget_s,
                "step": np.nan if last is None else last["step"],
                "train_seconds": np.nan if last is None else last["train_seconds"],
                metric: np.nan if last is None else last[metric],
            }
        )
    return pd.DataFrame(rows)


def equal_cost_table(curves: pd.DataFrame, metric: str = "val_R@5") -> pd.DataFrame:
    """``metric`` mean ± std over seeds per (budget, loss, frames); one budget per frame count: the mean total
    training time of that frame count's runs (so e.g. GEES at 4 frames is read at NCE-at-16's cost)."""
    totals = curves.groupby(["frames", "loss", "seed"])["train_seconds"].max().groupby("frames").mean()
    parts = []
    for frames, budget in totals.items():
        at = recall_at_budget(curves, float(budget), metric)
        at.insert(0, "budget_of_frames", frames)
        parts.append(at)
    at = pd.concat(parts, ignore_index=True)
    grouped = at.groupby(["budget_of_frames", "budget_s", "loss", "frames"], sort=True)
    table = grouped.agg(
        seeds=(metric, "count"),
        **{f"{metric}_mean": (metric, "mean"), f"{metric}_std": (metric, "std"), "step_mean": ("step", "mean")},
    )
    return table.reset_index()


def point_folders(run_dirs: list[str | Path]) -> dict[Point, list[Path]]:
    """(loss, frames) -> that point's run folders, in seed order."""
    found: dict[Point, list[tuple[int, Path]]] = {}
    for d in run_dirs:
        loss, frames, seed = describe_point(d)
        found.setdefault((loss, frames), []).append((seed, Path(d)))
    return {point: [d for _, d in sorted(seeds)] for point, seeds in found.items()}


def point_outcomes(folders: list[Path], k: int) -> Outcomes:
    """One point's per-query test t2v R@k outcomes (100 / 0) over its seeds, on the queries every seed has."""
    seeds = tuple(int(f.name.removeprefix("seed")) for f in folders)
    per_seed = [resultfiles.read_t2v_hits(f, k) for f in folders]
    queries = sorted(set.intersection(*(set(s.index) for s in per_seed)))
    return Outcomes(np.stack([s.reindex(queries).to_numpy() for s in per_seed]), np.asarray(queries), seeds)


def default_pairs(run_dirs: list[str | Path]) -> list[tuple[Point, Point]]:
    """The pairs of the points found, without a config: the losses in alphabetical order (gees before nce), equal
    frames only (the workflow passes ``vtrbench.sweep.sweep_pairs`` of its config instead)."""
    points = point_folders(run_dirs)
    return pairs_of(sorted({loss for loss, _ in points}), sorted({f for _, f in points}))


def comparison_table(run_dirs: list[str | Path], pairs: list[tuple[Point, Point]], runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (pair, metric): test t2v R@k of A and B (means over seeds and queries, %), ``diff`` = A - B with
    its paired 95% interval and ``p_a_beats_b`` (``vtrbench.report.compare.compare``), and each side's median
    training step time (``step_ms_a`` / ``step_ms_b``, over that point's runs; ``step_ratio`` = A / B).

    ``runs`` is :func:`load_runs` of the same folders (the step times).

    Raises:
        ValueError: a pair names a point with no run folder.
    """
    folders = point_folders(run_dirs)
    step_ms = runs.groupby(["loss", "frames"])["step_ms"].median()
    rows = []
    for a, b in pairs:
        missing = [point_label(p) for p in (a, b) if p not in folders]
        if missing:
            found = ", ".join(point_label(p) for p in sorted(folders))
            pair = f"{point_label(a)}:{point_label(b)}"
            raise ValueError(f"sweep pair {pair}: no runs of {', '.join(missing)} (found: {found})")
        for k in COMPARED:
            oa, ob = point_outcomes(folders[a], k), point_outcomes(folders[b], k)
            stats = compare(oa, ob)
            ms_a, ms_b = float(step_ms[a]), float(step_ms[b])
            rows.append(
                {
                    "a": point_label(a),
                    "b": point_label(b),
                    "loss_a": a[0],
                    "frames_a": a[1],
                    "loss_b": b[0],
                    "frames_b": b[1],
                    "metric": f"t2v_R@{k}",
                    "a_mean": float(oa.values.mean()),
                    "b_mean": float(ob.values.mean()),
                    **stats,
                    "step_ms_a": ms_a,
                    "step_ms_b": ms_b,
                    "step_ratio": ms_a / ms_b if ms_b > 0 else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def aggregate_sweep(
    run_dirs: list[str | Path],
    tables: str | Path,
    ledger: str | Path | None = None,
    pairs: list[tuple[Point, Point]] | None = None,
) -> pd.DataFrame:
    """Write frame_sweep.csv, sweep_runs.csv, sweep_curves.csv, sweep_equal_cost.csv and sweep_comparisons.csv
    under ``tables`` (the compared ``pairs``: :func:`default_pairs` when not given)."""
    if not run_dirs:
        raise FileNotFoundError("no sweep run folders given: run the sweep's train/evaluate steps first")
    tables = Path(tables)
    runs = load_runs(run_dirs)
    table = frame_sweep_table(runs, paper_r5(ledger))
    curves = sweep_curves(run_dirs)
    compared = comparison_table(run_dirs, default_pairs(run_dirs) if pairs is None else pairs, runs)
    resultfiles.write_csv(runs, tables / "sweep_runs.csv")
    resultfiles.write_csv(table, tables / "frame_sweep.csv")
    resultfiles.write_csv(curves, tables / "sweep_curves.csv")
    resultfiles.write_csv(equal_cost_table(curves), tables / "sweep_equal_cost.csv")
    resultfiles.write_csv(compared, tables / "sweep_comparisons.csv")
    return table
