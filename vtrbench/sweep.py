"""Frame sweep (CRET paper Fig. 5): one option of a method at each number of frames M, at equal steps and cost.

Driven by config, not by a class: ``sweep.method`` names any configured method whose options include
``global_loss``; the sweep trains it with each value of ``sweep.losses`` (CRET: gees, nce) at each frame count
``sweep.frames`` (train and eval alike), on its own dataset stored with ``max(sweep.frames)`` frames (the SynthVTT
generator otherwise unchanged), with the same step budget and seeds for every point. The points are ordinary runs
(``vtrbench.plan``: ``results/{run}/runs/{method}_{loss}_f{frames}/{fp}/seed{seed}``); this module builds their
configs and turns their result files into:

    frame_sweep.csv        one row per (frames, loss): test t2v R@1/5/10 mean ± std over seeds, step time, clips/s
    sweep_runs.csv         the same per run
    sweep_curves.csv       one row per validation point: val recall against cumulative training seconds
    sweep_equal_cost.csv   val R@5 reached by each (loss, frames) within the training time of each frame count

Step time comes from the training logs (``train_seconds`` is cumulative and excludes evaluation), so it is the time
of the real training step on this machine, with the first ``WARMUP_STEPS`` steps discarded. The paper's numbers
come from the ledger (``data/published.csv``, rows "CRET Fig. 5a"), never from this file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vtrbench import resultfiles
from vtrbench.methods import resolve
from vtrbench.options import parse_options

WARMUP_STEPS = 10  # training steps discarded before the median step time (allocator and thread warm-up)
RECALLS = ("R@1", "R@5", "R@10")
SWEPT_OPTION = "global_loss"  # the method option the sweep varies (sweep.losses are its values)
PAPER_SOURCE = "CRET Fig. 5a"  # ledger rows with the paper's R@5 against frames


def sweep_method_name(config: dict[str, Any], loss: str, frames: int) -> str:
    return f"{config['sweep']['method']}_{loss}_f{frames}"


def sweep_config(config: dict[str, Any], loss: str, frames: int) -> tuple[dict[str, Any], str]:
    """The config of one sweep point and its method name (``{sweep.method}_{loss}_f{frames}``).

    Everything but the frame counts, the step budget, the validation interval and the swept option is the main
    config's: the dataset is stored with ``max(sweep.frames)`` frames, ``train.frames = eval.frames = frames``.

    Raises:
        ValueError: ``sweep.method`` is not a configured method, or its class has no ``global_loss`` option.
    """
    sweep = config["sweep"]
    base = sweep["method"]
    if base not in config["methods"]:
        raise ValueError(
            f"sweep.method={base!r} is not a configured method; the config defines: {', '.join(config['methods'])}"
        )
    entry = {**config["methods"][base], SWEPT_OPTION: loss}
    cls = entry["class"]
    try:
        parse_options(resolve(cls).options_class, {k: v for k, v in entry.items() if k != "class"}, f"methods.{base}")
    except (ValueError, TypeError) as err:
        raise ValueError(f"sweep.method={base!r} (class {cls!r}) cannot take {SWEPT_OPTION}={loss!r}: {err}") from None
    out = {k: copy.deepcopy(config[k]) for k in ("run_name", "dataset", "model", "train", "eval") if k in config}
    out["dataset"]["frames"] = max(sweep["frames"])
    out["train"].update(frames=frames, steps=sweep["steps"], eval_every=sweep["eval_every"])
    out["eval"]["frames"] = frames
    name = sweep_method_name(config, loss, frames)
    out["methods"] = {name: entry}
    return out, name


def sweep_points(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(method name, config) of every (loss, frames) point of the sweep."""
    return [
        sweep_config(config, loss, frames)[::-1]
        for loss in config["sweep"]["losses"]
        for frames in config["sweep"]["frames"]
    ]


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


def step_stats(train_log: pd.DataFrame, batch_size: int, warmup: int = WARMUP_STEPS) -> dict[str, float]:
    """Median step time (ms) and clips/s over the steps after ``warmup``, from cumulative ``train_seconds``."""
    seconds = train_log.sort_values("step")["train_seconds"].to_numpy(dtype=float)
    per_step = np.diff(np.concatenate([[0.0], seconds]))[warmup:]
    if per_step.size == 0:
        per_step = np.diff(np.concatenate([[0.0], seconds]))
    median = float(np.median(per_step))
    return {"step_ms": 1000.0 * median, "clips_per_s": batch_size / median, "train_seconds": float(seconds[-1])}


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


def load_runs(run_dirs: list[str | Path], batch_size: int) -> pd.DataFrame:
    """One row per sweep run: loss, frames, seed, test t2v recalls, step time, clips/s, total training seconds."""
    rows = []
    for d in run_dirs:
        d = Path(d)
        loss, frames, seed = describe_point(d)
        metrics = resultfiles.read_metrics(d / "metrics.json")
        stats = step_stats(
            resultfiles.read_csv(d / "train_log.csv", ("step", "train_seconds"), "train_log.csv"), batch_size
        )
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


def aggregate_sweep(
    run_dirs: list[str | Path], batch_size: int, tables: str | Path, ledger: str | Path | None = None
) -> pd.DataFrame:
    """Write frame_sweep.csv, sweep_runs.csv, sweep_curves.csv and sweep_equal_cost.csv under ``tables``."""
    if not run_dirs:
        raise FileNotFoundError("no sweep run folders given: run the sweep's train/evaluate steps first")
    tables = Path(tables)
    runs = load_runs(run_dirs, batch_size)
    table = frame_sweep_table(runs, paper_r5(ledger))
    curves = sweep_curves(run_dirs)
    resultfiles.write_csv(runs, tables / "sweep_runs.csv")
    resultfiles.write_csv(table, tables / "frame_sweep.csv")
    resultfiles.write_csv(curves, tables / "sweep_curves.csv")
    resultfiles.write_csv(equal_cost_table(curves), tables / "sweep_equal_cost.csv")
    return table
