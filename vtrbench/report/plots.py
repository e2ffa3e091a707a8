"""The report's figures (seaborn on matplotlib's Agg backend), each a function of tidy tables -> a Figure.

Conventions: one colour per method, the same in every figure (``method_palette``); axes carry units; an axis is
logarithmic when its values span more than a factor of 20. A function returns ``None`` when it has nothing to
draw, and the report then says the section was not run. ``png_bytes`` turns a Figure into PNG bytes (closed after).
"""

from __future__ import annotations

import io
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

# seaborn 0.13.2 under matplotlib 3.11 raises deprecation warnings in some plots (../shared/docs/environment.md)
warnings.filterwarnings("ignore", category=DeprecationWarning, module="seaborn")
warnings.filterwarnings("ignore", category=matplotlib.MatplotlibDeprecationWarning)

sns.set_theme(context="notebook", style="whitegrid")
LOSS_COLOURS = {"gees": "#0072B2", "nce": "#D55E00"}
DPI = 110


def method_palette(methods: list[str]) -> dict[str, tuple[float, float, float]]:
    """A fixed colour per method, in the order the config lists them (colour-blind safe up to 10 methods)."""
    colours = sns.color_palette("colorblind" if len(methods) <= 10 else "husl", n_colors=max(len(methods), 1))
    return {method: colours[i] for i, method in enumerate(methods)}


def png_bytes(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _log_if_wide(ax: plt.Axes, values: pd.Series, axis: str) -> None:
    positive = pd.to_numeric(values, errors="coerce").dropna()
    positive = positive[positive > 0]
    if len(positive) and positive.max() / positive.min() > 20:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Points no other point beats on both lower ``x`` (cost) and higher ``y`` (recall), sorted by ``x``.

    >>> pts = pd.DataFrame({"cost": [1, 2, 3, 4], "recall": [10, 5, 20, 15]})
    >>> pareto_front(pts, "cost", "recall")["cost"].tolist()
    [1, 3]
    """
    ordered = points.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False])
    best, keep = -np.inf, []
    for index, value in ordered[y].items():
        if value > best:
            keep.append(index)
            best = value
    return ordered.loc[keep]


def recall_vs_cost(
    points: pd.DataFrame, x: str, xlabel: str, palette: dict, y: str = "t2v_R@1", ylabel: str = "text→video R@1 (%)"
) -> plt.Figure | None:
    """Scatter of recall against a per-method cost, seed std as error bars, Pareto frontier as a dashed line.

    ``points``: one row per method with ``method``, ``{x}``, ``{y}`` and optionally ``{x}_std``, ``{y}_std``.
    """
    points = points.dropna(subset=[x, y])
    if points.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for _, row in points.iterrows():
        ax.errorbar(
            row[x],
            row[y],
            xerr=_finite(row.get(f"{x}_std")),
            yerr=_finite(row.get(f"{y}_std")),
            fmt="o",
            markersize=8,
            capsize=3,
            color=palette.get(row["method"], "grey"),
            label=row["method"],
        )
    front = pareto_front(points, x, y)
    ax.plot(front[x], front[y], "--", color="black", lw=1, alpha=0.6, label="Pareto frontier", zorder=0)
    _log_if_wide(ax, points[x], "x")
    ax.set(xlabel=xlabel, ylabel=ylabel, title="Recall against cost (up and left is better)")
    ax.legend(fontsize=8, loc="best")
    return fig


def _finite(value: object) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def latency_vs_gallery(latency: pd.DataFrame, palette: dict) -> plt.Figure | None:
    """Per-query latency (ms) against gallery size (videos), one line per method (and per stage when given)."""
    if latency.empty or "gallery_size" not in latency or latency["gallery_size"].nunique() < 1:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    style = "stage" if "stage" in latency and latency["stage"].nunique() > 1 else None
    sns.lineplot(
        data=latency,
        x="gallery_size",
        y="ms_per_query",
        hue="method",
        style=style,
        palette=palette,
        marker="o",
        errorbar=None,
        ax=ax,
    )
    _log_if_wide(ax, latency["gallery_size"], "x")
    _log_if_wide(ax, latency["ms_per_query"], "y")
    ax.set(xlabel="gallery size (videos)", ylabel="latency per text query (ms)", title="Query latency vs gallery size")
    ax.legend(fontsize=8)
    return fig


def frame_sweep(sweep: pd.DataFrame, recall: str, published: pd.DataFrame) -> plt.Figure | None:
    """Figure-5 style: recall against frames per video (M), GEES vs NCE; the published Fig. 5a beside it.

    ``sweep``: ``frames``, ``loss``, ``{recall}`` and optionally ``{recall}_std``. ``published``: ledger rows with
    ``frames``, ``loss``, ``R@5`` (drawn in a separate panel: another dataset and backbone).
    """
    if sweep.empty or recall not in sweep:
        return None
    panels = 2 if not published.empty else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.0), squeeze=False)
    ax = axes[0, 0]
    for loss, group in sweep.sort_values("frames").groupby("loss", sort=True):
        std = group.get(f"{recall}_std")
        ax.errorbar(
            group["frames"],
            group[recall],
            yerr=None if std is None else std.fillna(0),
            marker="o",
            capsize=3,
            label=str(loss).upper(),
            color=LOSS_COLOURS.get(str(loss).lower()),
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(sweep["frames"].unique()), labels=[str(int(m)) for m in sorted(sweep["frames"].unique())])
    ax.set(xlabel="frames per video M", ylabel=f"text→video {recall.split('_')[-1]} (%)", title="This run")
    ax.legend(title="global loss")
    if panels == 2:
        ax2 = axes[0, 1]
        for loss, group in published.sort_values("frames").groupby("loss", sort=True):
            ax2.plot(group["frames"], group["R@5"], "s--", label=str(loss).upper(), color=LOSS_COLOURS.get(loss))
        ax2.set_xscale("log", base=2)
        ax2.set_xticks([2, 4, 8, 16], labels=["2", "4", "8", "16"])
        ax2.set(xlabel="frames per video M", ylabel="text→video R@5 (%)", title="CRET paper Fig. 5a (MSR-VTT) [S]")
        ax2.legend(title="global loss")
    fig.suptitle("GEES vs NCE across frame counts")
    fig.tight_layout()
    return fig


def step_time(frame: pd.DataFrame, hue: str, palette: dict | None = None) -> plt.Figure | None:
    """Training step time (ms) against frames per video, one line per ``hue`` (method or loss); log y if wide."""
    if frame.empty or not {"frames", "step_ms", hue} <= set(frame.columns):
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = palette if hue == "method" else {k: v for k, v in LOSS_COLOURS.items() if k in set(frame[hue])}
    sns.lineplot(
        data=frame, x="frames", y="step_ms", hue=hue, palette=colours or None, marker="o", errorbar="sd", ax=ax
    )
    ax.set_xscale("log", base=2)
    ticks = sorted(frame["frames"].unique())
    ax.set_xticks(ticks, labels=[str(int(t)) for t in ticks])
    _log_if_wide(ax, frame["step_ms"], "y")
    ax.set(xlabel="frames per video M", ylabel="training step time (ms)", title="Training step time vs frames")
    return fig


def training_curves(val_logs: pd.DataFrame, train_logs: pd.DataFrame, palette: dict) -> plt.Figure | None:
    """Validation t2v R@1 against optimiser steps and against training wall-clock; training loss against steps.

    ``val_logs``/``train_logs``: the runs' ``val_log.csv``/``train_log.csv`` stacked, with ``method`` and ``seed``.
    Lines are the mean over seeds with a ±1 std band (per step); on the wall-clock axis each seed is its own line.
    """
    if val_logs.empty:
        return None
    metric = "t2v_R@1" if "t2v_R@1" in val_logs else "val"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.0))
    sns.lineplot(
        data=val_logs, x="step", y=metric, hue="method", palette=palette, errorbar="sd", marker="o", ax=axes[0]
    )
    axes[0].set(xlabel="optimiser step", ylabel=f"validation {metric.replace('_', ' ')} (%)", title="Against steps")
    sns.lineplot(
        data=val_logs,
        x="train_seconds",
        y=metric,
        hue="method",
        units="seed",
        estimator=None,
        palette=palette,
        marker="o",
        ax=axes[1],
    )
    _log_if_wide(axes[1], val_logs["train_seconds"], "x")
    axes[1].set(xlabel="training wall-clock (s)", ylabel=f"validation {metric.replace('_', ' ')} (%)")
    axes[1].set_title("Against wall-clock (one line per seed)")
    if not train_logs.empty and "loss" in train_logs:
        sns.lineplot(data=train_logs, x="step", y="loss", hue="method", palette=palette, errorbar="sd", ax=axes[2])
        _log_if_wide(axes[2], train_logs["loss"], "y")
        axes[2].set(xlabel="optimiser step", ylabel="training loss (sum of terms)", title="Training loss")
    else:
        axes[2].set_axis_off()
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().set_title("method")
    fig.tight_layout()
    return fig
