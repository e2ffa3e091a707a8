"""Frame sweep (CRET paper Fig. 5): GEES vs NCE at each number of frames M, at equal steps and at equal cost.

The sweep trains CRET with each global loss (``sweep.losses``) at each frame count (``sweep.frames``, train and eval
alike), on its own dataset stored with ``max(sweep.frames)`` frames (the SynthVTT generator otherwise unchanged),
with the same step budget and seeds for every point. The runs are ordinary ``vtrbench.cli train`` / ``evaluate``
runs under ``results/sweep/runs/{loss}/f{frames}/seed{seed}/``; this module builds their configs and turns their
result files into:

    frame_sweep.csv        one row per (frames, loss): test t2v R@1/5/10 mean ± std over seeds, step time, clips/s
    sweep_curves.csv       one row per validation point: val recall against cumulative training seconds
    sweep_equal_cost.csv   val R@5 reached by each (loss, frames) within the training time of each frame count
    frame_sweep_r5.png     R@5 against frames, one line per loss, seed spread (beside the paper's Fig. 5a numbers)
    sweep_equal_cost.png   val R@5 against cumulative training seconds

Step time comes from the training logs (``train_seconds`` is cumulative and excludes evaluation), so it is the time
of the real training step on this machine, with the first ``WARMUP_STEPS`` steps discarded.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vtrbench.report.aggregate import read_metrics, write_csv_atomic

WARMUP_STEPS = 10  # training steps discarded before the median step time (allocator and thread warm-up)
RECALLS = ("R@1", "R@5", "R@10")
# Paper Fig. 5(a), MSR-VTT R@5 against M (cret-spec §4, read off the plot); (b) step time in ms (hardware unknown).
PAPER_R5 = {"nce": {2: 46.1, 4: 48.0, 8: 49.3, 16: 50.0}, "gees": {2: 49.2, 4: 50.7, 8: 50.8, 16: 51.1}}
PAPER_STEP_MS = {2: 42.0, 4: 67.0, 8: 117.0, 16: 224.0}


def sweep_method_name(config: dict[str, Any], loss: str) -> str:
    return f"{config['sweep']['method']}_{loss}"


def sweep_config(config: dict[str, Any], loss: str, frames: int, seed: int = 0) -> tuple[dict[str, Any], str]:
    """The run config of one sweep point and its method name (``{sweep.method}_{loss}``).

    ``seeds`` holds only ``seed``, so adding seeds to ``sweep.seeds`` does not change (and re-run) existing points.

    Everything but the frame counts, the step budget, the validation interval and the global loss is the main
    config's: the dataset is stored with ``max(sweep.frames)`` frames, ``train.frames = eval.frames = frames``.

    Raises:
        ValueError: ``sweep.method`` is not a CRET entry of ``methods``.
    """
    sweep = config["sweep"]
    base = sweep["method"]
    if base not in config["methods"] or config["methods"][base]["class"] != "cret":
        raise ValueError(
            f"sweep.method={base!r} must name a method of class 'cret' in `methods`; "
            f"the config defines: {', '.join(config['methods'])}"
        )
    out = {k: copy.deepcopy(config[k]) for k in ("run_name", "dataset", "model", "train", "eval") if k in config}
    out["seeds"] = [seed]
    out["dataset"]["frames"] = max(sweep["frames"])
    out["train"].update(frames=frames, steps=sweep["steps"], eval_every=sweep["eval_every"])
    out["eval"]["frames"] = frames
    name = sweep_method_name(config, loss)
    out["methods"] = {name: {**config["methods"][base], "global_loss": loss}}
    return out, name


def prepare_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config of the sweep's dataset: the main one with ``dataset.frames = max(sweep.frames)`` (only the
    sections prepare reads, so a change of the sweep's budget does not regenerate the data)."""
    out, _ = sweep_config(config, config["sweep"]["losses"][0], max(config["sweep"]["frames"]))
    return {k: out[k] for k in ("dataset", "methods", "seeds")}


def step_stats(train_log: pd.DataFrame, batch_size: int, warmup: int = WARMUP_STEPS) -> dict[str, float]:
    """Median step time (ms) and clips/s over the steps after ``warmup``, from cumulative ``train_seconds``."""
    seconds = train_log.sort_values("step")["train_seconds"].to_numpy(dtype=float)
    per_step = np.diff(np.concatenate([[0.0], seconds]))[warmup:]
    if per_step.size == 0:
        per_step = np.diff(np.concatenate([[0.0], seconds]))
    median = float(np.median(per_step))
    return {"step_ms": 1000.0 * median, "clips_per_s": batch_size / median, "train_seconds": float(seconds[-1])}


def run_dir(root: str | Path, loss: str, frames: int, seed: int) -> Path:
    return Path(root) / loss / f"f{frames}" / f"seed{seed}"


def parse_run_dir(path: str | Path) -> tuple[str, int, int]:
    """``.../{loss}/f{frames}/seed{seed}[/file]`` -> (loss, frames, seed)."""
    path = Path(path)
    parts = path.parts if path.name.startswith("seed") else path.parent.parts
    loss, frames, seed = parts[-3], parts[-2], parts[-1]
    if not (frames.startswith("f") and seed.startswith("seed")):
        raise ValueError(f"{path}: expected a sweep run folder .../{{loss}}/f{{frames}}/seed{{seed}}")
    return loss, int(frames[1:]), int(seed[4:])


def load_runs(run_dirs: list[str | Path], batch_size: int) -> pd.DataFrame:
    """One row per sweep run: loss, frames, seed, test t2v recalls, step time, clips/s, total training seconds."""
    rows = []
    for d in run_dirs:
        d = Path(d)
        loss, frames, seed = parse_run_dir(d)
        metrics = read_metrics(d / "metrics.json")
        stats = step_stats(pd.read_csv(d / "train_log.csv"), batch_size)
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


def frame_sweep_table(runs: pd.DataFrame) -> pd.DataFrame:
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
    table["paper_R@5"] = [
        PAPER_R5.get(loss, {}).get(f, np.nan) for f, loss in zip(table.frames, table.loss, strict=True)
    ]
    return table


def sweep_curves(run_dirs: list[str | Path]) -> pd.DataFrame:
    """Val recall against cumulative training seconds: loss, frames, seed, step, train_seconds, val_R@1/5/10, val."""
    frames_out = []
    for d in run_dirs:
        loss, frames, seed = parse_run_dir(d)
        val = pd.read_csv(Path(d) / "val_log.csv")
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


def plot_frame_sweep(runs: pd.DataFrame, path: Path) -> None:
    """R@5 against frames (log2 axis), one line per loss with the seed spread, beside the paper's Fig. 5(a)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    order = sorted(set(runs.loss) | set(PAPER_R5))  # the same colour per loss in both panels
    per_loss = {  # one line per loss, styled alike in both panels
        "x": "frames",
        "hue": "loss",
        "style": "loss",
        "hue_order": order,
        "style_order": order,
        "markers": True,
    }
    sns.lineplot(data=runs, y="t2v_R@5", errorbar="sd", ax=axes[0], **per_loss)
    sns.scatterplot(
        data=runs, x="frames", y="t2v_R@5", hue="loss", hue_order=order, legend=False, alpha=0.4, s=20, ax=axes[0]
    )
    axes[0].set(title=f"SynthVTT test (mean ± sd, {runs.seed.nunique()} seed(s))", ylabel="text→video R@5 (%)")
    paper = pd.DataFrame([{"loss": k, "frames": f, "R@5": v} for k, d in PAPER_R5.items() for f, v in d.items()])
    sns.lineplot(data=paper, y="R@5", ax=axes[1], **per_loss)
    axes[1].set(title="paper Fig. 5(a): MSR-VTT (read off the plot)", ylabel="text→video R@5 (%)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ticks = sorted(set(runs.frames) | set(paper.frames))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("frames per video M (train = eval)")
    fig.tight_layout()
    _save(fig, path)


def plot_equal_cost(curves: pd.DataFrame, path: Path) -> None:
    """Val R@5 against cumulative training seconds, colour = loss, style = frames (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 4))
    data = curves.groupby(["loss", "frames", "step"], as_index=False)[["train_seconds", "val_R@5"]].mean()
    data["frames"] = data["frames"].astype(str)
    sns.lineplot(data=data, x="train_seconds", y="val_R@5", hue="loss", style="frames", markers=True, ax=ax)
    ax.set(xlabel="cumulative training time (s, this machine)", ylabel="val text→video R@5 (%)")
    ax.set_title("accuracy at equal training cost (mean over seeds)")
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def aggregate_sweep(run_dirs: list[str | Path], batch_size: int, tables: str | Path, plots: str | Path) -> pd.DataFrame:
    """Write frame_sweep.csv, sweep_runs.csv, sweep_curves.csv, sweep_equal_cost.csv and the two plots."""
    if not run_dirs:
        raise FileNotFoundError("no sweep run folders given: run the sweep's train/evaluate steps first")
    tables, plots = Path(tables), Path(plots)
    runs = load_runs(run_dirs, batch_size)
    table = frame_sweep_table(runs)
    curves = sweep_curves(run_dirs)
    write_csv_atomic(runs, tables / "sweep_runs.csv")
    write_csv_atomic(table, tables / "frame_sweep.csv")
    write_csv_atomic(curves, tables / "sweep_curves.csv")
    write_csv_atomic(equal_cost_table(curves), tables / "sweep_equal_cost.csv")
    plot_frame_sweep(runs, plots / "frame_sweep_r5.png")
    plot_equal_cost(curves, plots / "sweep_equal_cost.png")
    return table
