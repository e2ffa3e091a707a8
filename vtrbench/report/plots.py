"""Every figure of the suite (seaborn on matplotlib's Agg backend), each a function of tidy tables -> a Figure.

The aggregate steps write tables only; the report draws these, once. Conventions: one colour per method, the same
in every figure (``method_palette``); axes carry units; an axis is logarithmic when its values span more than a
factor of 20; legends sit outside the axes (or points are labelled directly), so no legend covers data. A function
returns ``None`` when it has nothing to draw, and the report then says the section was not run. ``png_bytes`` turns
a Figure into PNG bytes (closed after).
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

from vtrbench.registry import DEFAULT_DESIGN, DESIGNS

# seaborn 0.13.2 under matplotlib 3.11 raises deprecation warnings in some plots (its boxplot, for one)
warnings.filterwarnings("ignore", category=DeprecationWarning, module="seaborn")
warnings.filterwarnings("ignore", category=matplotlib.MatplotlibDeprecationWarning)

sns.set_theme(context="notebook", style="whitegrid")
LOSS_COLOURS = {"gees": "#0072B2", "nce": "#D55E00"}
# one marker per design class (vtrbench.registry.DESIGNS, in its spectrum order), the same in every figure
DESIGN_MARKERS = dict(zip(DESIGNS, ["o", "D", "s", "^", "P", "*", "X"], strict=True))
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


def _legend_outside(ax: plt.Axes, title: str | None = None) -> None:
    """Move the axes' legend to the right of the plot area (never over the data)."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if handles:
        ax.legend(handles, labels, title=title, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)


def _figure_legend(fig: plt.Figure, ax: plt.Axes, title: str | None = None, row: float = 0.5) -> None:
    """Move one panel's legend to the right of the whole figure (multi-panel figures: never over a panel)."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if handles:
        fig.legend(
            handles, labels, title=title, fontsize=8, loc="center left", bbox_to_anchor=(1.0, row), frameon=False
        )


def _int_ticks(ax: plt.Axes, values: pd.Series) -> None:
    ticks = sorted({int(v) for v in values.dropna()})
    ax.set_xticks(ticks, labels=[str(t) for t in ticks])


def _finite(value: object) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def design_name(value: object) -> str:
    """A design class as the figures show it (a missing or unknown one is ``unspecified``)."""
    return value if isinstance(value, str) and value in DESIGN_MARKERS else DEFAULT_DESIGN


def recall_vs_cost(
    points: pd.DataFrame, x: str, xlabel: str, palette: dict, y: str = "t2v_R@1", ylabel: str = "text→video R@1 (%)"
) -> plt.Figure | None:
    """Scatter of recall against a per-method cost, seed std as error bars, each point labelled with its method,
    coloured by method and shaped by its design class (``design``, legend beside the plot); the Pareto frontier
    (``pareto`` column) as a dashed line.

    ``points``: one row per method with ``method``, ``{x}``, ``{y}``, ``pareto`` and optionally ``{y}_std`` and
    ``design``.
    """
    points = points.dropna(subset=[x, y])
    if points.empty:
        return None
    designs = [design_name(d) for d in points["design"]] if "design" in points else ["unspecified"] * len(points)
    points = points.assign(design=designs)
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    last: tuple[float, float] | None = None
    for _, row in points.sort_values(y).iterrows():
        colour = palette.get(row["method"], "grey")
        marker = DESIGN_MARKERS[row["design"]]
        ax.errorbar(row[x], row[y], yerr=_finite(row.get(f"{y}_std")), fmt=marker, ms=10 if marker == "*" else 7,
                    capsize=3, color=colour)  # fmt: skip
        near = last is not None and abs(row[y] - last[1]) < 4 and 0.5 < row[x] / last[0] < 2  # labels would collide
        offset = (5, -11) if near else (5, 4)
        ax.annotate(row["method"], (row[x], row[y]), xytext=offset, textcoords="offset points", fontsize=8)
        last = (row[x], row[y])
    for design, marker in DESIGN_MARKERS.items():  # legend entries of the design classes drawn, in spectrum order
        if design in set(points["design"]):
            ax.plot([], [], marker, ls="", color="dimgrey", ms=10 if marker == "*" else 7, label=design)
    if "pareto" in points:
        front = points[points["pareto"].astype(bool)].sort_values(x)
        ax.plot(front[x], front[y], "--", color="black", lw=1, alpha=0.6, zorder=0, label="Pareto frontier")
    _legend_outside(ax, "design (colour: method)")
    _log_if_wide(ax, points[x], "x")
    ax.set(xlabel=xlabel, ylabel=ylabel, title="Recall against cost (up and left is better)")
    ax.margins(x=0.15, y=0.1)
    return fig


def latency_vs_gallery(latency: pd.DataFrame, palette: dict) -> plt.Figure | None:
    """Online latency per text query (ms) against gallery size (videos), one line per method; hollow markers
    where the value is extrapolated."""
    if latency.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    for method, group in latency.sort_values("gallery_size").groupby("method", sort=False):
        colour = palette.get(method, "grey")
        ax.plot(group.gallery_size, group.ms_per_query, "-", color=colour, label=method)
        measured = group[~group.extrapolated.astype(bool)]
        guessed = group[group.extrapolated.astype(bool)]
        ax.plot(measured.gallery_size, measured.ms_per_query, "o", color=colour)
        ax.plot(guessed.gallery_size, guessed.ms_per_query, "o", mfc="white", color=colour)
    _log_if_wide(ax, latency["gallery_size"], "x")
    _log_if_wide(ax, latency["ms_per_query"], "y")
    ax.set(xlabel="gallery size (videos)", ylabel="latency per text query (ms)", title="Query latency vs gallery size")
    _legend_outside(ax, "method (hollow: extrapolated)")
    return fig


def recall_vs_gallery(scale: pd.DataFrame, palette: dict) -> plt.Figure | None:
    """End-task t2v R@1 (exact search) against gallery size: the test split plus real distractors, per method."""
    if scale.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    for method, group in scale.sort_values("gallery_size").groupby("method", sort=False):
        ax.plot(group.gallery_size, group["t2v_R@1"], "o-", color=palette.get(method, "grey"), label=method)
    _log_if_wide(ax, scale["gallery_size"], "x")
    ax.set(xlabel="gallery size (videos)", ylabel="test t2v R@1 (%)", title="Accuracy as distractors are added")
    _legend_outside(ax, "method (exact search)")
    return fig


FAMILY_MARKERS = {"flat": "s", "hnsw": "o", "ivf_flat": "^", "ivf_pq": "D"}


def recall_qps(points: pd.DataFrame, palette: dict) -> plt.Figure | None:
    """ann-benchmarks' plot at each method's largest gallery: recall@10 of the exact top 10 (test queries) against
    queries per second (log), a marker per index family, the Pareto frontier as a line, chosen points ringed."""
    if points.empty:
        return None
    largest = points.groupby("method")["gallery_size"].transform("max")
    points = points[points.gallery_size == largest]
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    for method, group in points.groupby("method", sort=False):
        colour = palette.get(method, "grey")
        size = int(group.gallery_size.iloc[0])
        for family, rows in group.groupby("family", sort=False):
            ax.plot(rows.test_recall10, rows.qps, FAMILY_MARKERS.get(family, "x"), color=colour, alpha=0.7)
        front = group[group.pareto.astype(bool)].sort_values("test_recall10")
        ax.plot(front.test_recall10, front.qps, "-", color=colour, label=f"{method} ({size:,} videos)")
        chosen = group[group.chosen.astype(bool)]
        ax.plot(chosen.test_recall10, chosen.qps, "o", mfc="none", mec="black", ms=11)
    ax.set_yscale("log")
    ax.set(xlabel="recall@10 of the exact top 10 (test queries)", ylabel="queries per second (batched)")
    ax.set_title(
        "Recall against queries per second (markers: "
        + ", ".join(f"{m} {f}" for f, m in FAMILY_MARKERS.items() if f in set(points.family))
        + "; ringed: chosen on val)",
        fontsize=9,
    )
    _legend_outside(ax, "method: Pareto frontier")
    return fig


def frame_sweep(sweep: pd.DataFrame, paper: pd.DataFrame) -> plt.Figure | None:
    """Figure-5 style: test R@5 against frames per video (M), one line per loss with the seed spread; the paper's
    Fig. 5a (ledger rows with ``frames``, ``loss``, ``R@5``) in its own panel (another dataset and backbone)."""
    if sweep.empty or "t2v_R@5_mean" not in sweep:
        return None
    panels = 2 if not paper.empty else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4.0), squeeze=False)
    ax = axes[0, 0]
    for loss, group in sweep.sort_values("frames").groupby("loss", sort=True):
        std = group.get("t2v_R@5_std")
        ax.errorbar(group["frames"], group["t2v_R@5_mean"], yerr=None if std is None else std.fillna(0), marker="o",
                    capsize=3, label=str(loss).upper(), color=LOSS_COLOURS.get(str(loss).lower()))  # fmt: skip
    seeds = int(sweep["seeds"].max()) if "seeds" in sweep else 0
    ax.set(xlabel="frames per video M (train = eval)", ylabel="text→video R@5 (%)", title=f"This run ({seeds} seeds)")
    if panels == 2:
        ax2 = axes[0, 1]
        for loss, group in paper.sort_values("frames").groupby("loss", sort=True):
            ax2.plot(group["frames"], group["R@5"], "s--", label=str(loss).upper(), color=LOSS_COLOURS.get(loss))
        ax2.set(xlabel="frames per video M", ylabel="text→video R@5 (%)", title="CRET paper Fig. 5a (MSR-VTT) [S]")
        ax2.set_xscale("log", base=2)
        _int_ticks(ax2, paper["frames"])
    for a in axes[0]:
        a.set_xscale("log", base=2)
    _int_ticks(ax, sweep["frames"])
    fig.tight_layout()
    _figure_legend(fig, ax, "global loss")
    if panels == 2 and axes[0, 1].get_legend() is not None:
        axes[0, 1].get_legend().remove()
    return fig


def equal_cost(curves: pd.DataFrame) -> plt.Figure | None:
    """Val R@5 against cumulative training seconds, colour = loss, style = frames (mean over seeds)."""
    if curves.empty or "val_R@5" not in curves:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    data = curves.groupby(["loss", "frames", "step"], as_index=False)[["train_seconds", "val_R@5"]].mean()
    data["frames"] = data["frames"].astype(int).astype(str)
    sns.lineplot(data=data, x="train_seconds", y="val_R@5", hue="loss", style="frames", markers=True, ax=ax,
                 palette={k: v for k, v in LOSS_COLOURS.items() if k in set(data.loss)} or None)  # fmt: skip
    ax.set(xlabel="cumulative training time (s, this machine)", ylabel="val text→video R@5 (%)")
    ax.set_title("Accuracy at equal training cost (mean over seeds)")
    _legend_outside(ax)
    return fig


def step_time(table: pd.DataFrame, losses: pd.DataFrame, palette: dict) -> plt.Figure | None:
    """Training step time (ms, median) against frames per method (left) and the declared losses alone (right)."""
    if table.empty:
        return None
    panels = 2 if not losses.empty else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.0 * panels, 4.2), squeeze=False)
    ax = axes[0, 0]
    batch = int(table.batch_size.mode().iloc[0])
    data = table[table.batch_size == batch]
    for method, group in data.sort_values("frames").groupby("method", sort=False):
        ax.plot(group.frames, group.step_ms, "o-", color=palette.get(method, "grey"), label=method)
    ax.set(xlabel="frames per video M", ylabel="step time (ms, median)", title=f"Full training step (B = {batch})")
    if panels == 2:
        ax2 = axes[0, 1]
        for (loss, b), group in losses.sort_values("frames").groupby(["loss", "batch_size"]):
            ax2.plot(group.frames, group.ms, "s--", color=LOSS_COLOURS.get(str(loss)), label=f"{loss} (B = {b})")
        ax2.set(xlabel="frames per video M", ylabel="time (ms, median)", title="Loss alone: forward + backward")
    for a in axes[0]:
        a.set_xscale("log", base=2)
        _int_ticks(a, table.frames)
        _log_if_wide(a, pd.concat([table.step_ms, losses.get("ms", pd.Series(dtype=float))]), "y")
    fig.tight_layout()
    _figure_legend(fig, ax, "method", row=0.7)
    if panels == 2:
        _figure_legend(fig, axes[0, 1], "loss alone", row=0.2)
    return fig


def rerank_depth(sweep: pd.DataFrame, chosen: pd.DataFrame) -> plt.Figure | None:
    """t2v R@1 (mean over seeds) against the re-ranking depth k, one line per fusion weight w, per re-ranker; the
    left panel is val (where k and w are chosen), the right test; the chosen (k, w) circled."""
    if sweep.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0), sharey=True)
    mean = sweep.groupby(["method", "split", "k", "weight"], as_index=False)["t2v_R@1"].mean()
    styles = dict(zip(sorted(mean.weight.unique()), ["o-", "s--", "^-.", "d:", "v-", "p--"], strict=False))
    for ax, split in zip(axes, ("val", "test"), strict=True):
        for (method, weight), group in mean[mean.split == split].groupby(["method", "weight"]):
            ax.plot(group.k, group["t2v_R@1"], styles.get(weight, "o-"), label=f"{method}, w = {weight:g}")
        for _, row in chosen.iterrows():
            hit = mean[
                (mean.split == split) & (mean.method == row.method) & (mean.k == row.k) & (mean.weight == row.weight)
            ]
            ax.plot(hit.k, hit["t2v_R@1"], "o", ms=14, mfc="none", mec="black")
        ax.set(xlabel="re-ranking depth k", ylabel="text→video R@1 (%)", title=f"{split} split")
        ax.set_xscale("log")
        ax.minorticks_off()
        _int_ticks(ax, mean.k)
    fig.tight_layout()
    _figure_legend(fig, axes[0], "re-ranker, weight w of the first stage")
    if axes[1].get_legend() is not None:
        axes[1].get_legend().remove()
    return fig


def training_curves(val_logs: pd.DataFrame, train_logs: pd.DataFrame, palette: dict) -> plt.Figure | None:
    """Validation t2v R@1 against optimiser steps and against training wall-clock; training loss against steps.

    Lines are the mean over seeds with a ±1 std band (per step); on the wall-clock axis each seed is its own line.
    """
    if val_logs.empty:
        return None
    metric = "t2v_R@1" if "t2v_R@1" in val_logs else "val"
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.0))
    sns.lineplot(
        data=val_logs, x="step", y=metric, hue="method", palette=palette, errorbar="sd", marker="o", ax=axes[0]
    )
    axes[0].set(xlabel="optimiser step", ylabel=f"validation {metric.replace('_', ' ')} (%)", title="Against steps")
    sns.lineplot(data=val_logs, x="train_seconds", y=metric, hue="method", units="seed", estimator=None,
                 palette=palette, marker="o", ax=axes[1], legend=False)  # fmt: skip
    _log_if_wide(axes[1], val_logs["train_seconds"], "x")
    axes[1].set(xlabel="training wall-clock (s)", ylabel=f"validation {metric.replace('_', ' ')} (%)")
    axes[1].set_title("Against wall-clock (one line per seed)")
    if not train_logs.empty and "loss" in train_logs:
        sns.lineplot(data=train_logs, x="step", y="loss", hue="method", palette=palette, errorbar="sd", ax=axes[2],
                     legend=False)  # fmt: skip
        _log_if_wide(axes[2], train_logs["loss"], "y")
        axes[2].set(xlabel="optimiser step", ylabel="training loss (sum of terms)", title="Training loss")
    else:
        axes[2].set_axis_off()
    fig.tight_layout()
    _figure_legend(fig, axes[0], "method")
    return fig


def comparison_matrix(comparisons: pd.DataFrame, methods: list[str], metric: str = "t2v_R@1") -> plt.Figure | None:
    """Row method minus column method on ``metric`` (points), with the paired 95% interval in each cell; a cell is
    coloured only when the interval excludes 0 (green: the row wins, red: the column wins), grey otherwise."""
    rows = comparisons[comparisons.metric == metric] if not comparisons.empty else comparisons
    if rows.empty:
        return None
    names = [m for m in methods if m in set(rows.method_a) | set(rows.method_b)]
    n = len(names)
    diff, text = np.full((n, n), np.nan), [["" for _ in names] for _ in names]
    for _, r in rows.iterrows():
        i, j = names.index(r.method_a), names.index(r.method_b)
        for a, b, sign in ((i, j, 1), (j, i, -1)):
            low, high = sorted((sign * r.ci_low, sign * r.ci_high))
            if low > 0 or high < 0:  # resolved: coloured; otherwise the cell stays grey
                diff[a, b] = sign * r["diff"]
            text[a][b] = f"{sign * r['diff']:+.1f}\n[{low:+.1f}, {high:+.1f}]"
    fig, ax = plt.subplots(figsize=(1.15 * n + 2.5, 0.9 * n + 1.5))
    bound = np.nanmax(np.abs(diff), initial=1.0)  # at least 1; 1 when nothing is resolved (all NaN)
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#e6e6e6")
    # a range wider than the data keeps the cells in mid tones, where the text stays legible
    ax.imshow(np.ma.masked_invalid(diff), cmap=cmap, vmin=-1.6 * bound, vmax=1.6 * bound)
    for a in range(n):
        for b in range(n):
            ax.text(b, a, text[a][b], ha="center", va="center", fontsize=6.5)
    ax.set_xticks(range(n), labels=names, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=names, fontsize=8)
    ax.grid(False)
    ax.set_title(f"{metric.replace('_', ' ')}: row minus column (points), 95% paired interval; grey = not resolved")
    return fig
