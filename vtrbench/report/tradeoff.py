"""Recall against query latency: aggregate every run's ``latency.csv`` and ``metrics.json`` into tables and a plot.

Reads only the result files it is given (README, "Result files"), so a user's rule that writes them in the
documented schema shows up here with no change.

* ``results/tables/latency.csv``: one row per (method, stage, backend, gallery_size, batch_size, flags):
  ``calls``, ``median_s``, ``p95_s``, ``per_item_ms`` (median / items), ``throughput_per_s`` (items / median);
* ``results/tables/recall_latency.csv``: one row per method: t2v R@1 mean/std over seeds, per-query latency at the
  reference gallery size (``query_ms`` = median text encoding at batch 1 + median search at batch 1; FAISS for
  embedding methods), offline ``gallery_encode_ms_per_video``, ``bytes_per_video`` and ``pareto`` (no other method
  is both faster and more accurate);
* ``results/plots/recall_vs_latency.png``: R@1 against ``query_ms`` (log x), the Pareto frontier drawn as a line.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vtrbench.report.aggregate import ResultFileError, flatten, read_metrics, write_csv_atomic

LATENCY_REQUIRED = ("method", "stage", "backend", "gallery_size", "batch_size", "seconds", "items", "measured")
KEYS = ["method", "stage", "backend", "gallery_size", "batch_size", "measured", "extrapolated", "synthetic_gallery"]


def read_latency(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ResultFileError(f"{path}: not a readable CSV ({err})") from err
    missing = [c for c in LATENCY_REQUIRED if c not in frame]
    if missing:
        raise ResultFileError(f"{path}: column(s) {', '.join(missing)} missing (README, latency.csv)")
    for col, default in (("extrapolated", False), ("synthetic_gallery", False), ("bytes_per_video", float("nan"))):
        if col not in frame:
            frame[col] = default
    return frame


def latency_stats(raw: pd.DataFrame) -> pd.DataFrame:
    timed = raw[raw.stage != "memory"].copy()
    grouped = timed.groupby(KEYS, sort=False, dropna=False)
    stats = grouped.agg(
        calls=("seconds", "size"),
        median_s=("seconds", "median"),
        p95_s=("seconds", lambda s: s.quantile(0.95)),
        items=("items", "first"),
    ).reset_index()
    for col in ("threads", "device", "top10_agreement"):
        if col in timed:
            stats[col] = grouped[col].first().values
    stats["per_item_ms"] = 1000 * stats.median_s / stats["items"]
    stats["throughput_per_s"] = stats["items"] / stats.median_s
    return stats


def _median(stats: pd.DataFrame, method: str, stage: str, batch: int, backends: tuple[str, ...], size: int = 0):
    rows = stats[(stats.method == method) & (stats.stage == stage) & (stats.batch_size == batch)]
    if size:
        rows = rows[rows.gallery_size == size]
    for backend in backends:
        hit = rows[rows.backend == backend]
        if len(hit):
            return float(hit.median_s.iloc[0]), bool(hit.extrapolated.iloc[0])
    return float("nan"), False


def recall_latency(runs: pd.DataFrame, raw: pd.DataFrame, stats: pd.DataFrame, reference: int) -> pd.DataFrame:
    rows = []
    for method, group in runs.groupby("method", sort=False):
        enc, _ = _median(stats, method, "query_encode", 1, ("model",))
        search, extrapolated = _median(stats, method, "search", 1, ("faiss", "pair", "rerank", "torch"), reference)
        genc, _ = _median(stats, method, "gallery_encode", 1, ("model",))
        memory = raw[(raw.method == method) & (raw.stage == "memory")].bytes_per_video
        rows.append(
            {
                "method": method,
                "kind": group["kind"].iloc[0] if "kind" in group else "",
                "seeds": group.seed.nunique(),
                "t2v_R@1_mean": group["t2v_R@1"].mean(),
                "t2v_R@1_std": group["t2v_R@1"].std(),
                "query_subset": group["query_subset"].max() if "query_subset" in group else float("nan"),
                "gallery_size": reference,
                "query_encode_ms": 1000 * enc,
                "search_ms": 1000 * search,
                "query_ms": 1000 * (enc + search),
                "query_ms_extrapolated": extrapolated,
                "gallery_encode_ms_per_video": 1000 * genc,
                "bytes_per_video": float(memory.iloc[0]) if len(memory) else float("nan"),
            }
        )
    table = pd.DataFrame(rows)
    table["pareto"] = [
        bool(pd.notna(r.query_ms))
        and not any(
            (o.query_ms <= r.query_ms and o["t2v_R@1_mean"] >= r["t2v_R@1_mean"])
            and (o.query_ms < r.query_ms or o["t2v_R@1_mean"] > r["t2v_R@1_mean"])
            for _, o in table.iterrows()
        )
        for _, r in table.iterrows()
    ]
    return table


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = table.dropna(subset=["query_ms"])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sns.scatterplot(data=data, x="query_ms", y="t2v_R@1_mean", hue="kind", style="pareto", s=80, ax=ax)
    front = data[data.pareto].sort_values("query_ms")
    ax.step(front.query_ms, front["t2v_R@1_mean"], where="post", color="grey", lw=1, label="Pareto frontier")
    for _, r in data.iterrows():
        ax.annotate(r.method, (r.query_ms, r["t2v_R@1_mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set(
        xlabel=f"per-query latency, ms (text encode + search, {int(data.gallery_size.max()) if len(data) else 0} "
        "videos)",
        ylabel="t2v R@1 (%)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def tradeoff(
    metrics_files: list[str | Path],
    latency_files: list[str | Path],
    tables: str | Path,
    plots: str | Path,
    reference: int,
) -> pd.DataFrame:
    """Write ``latency.csv``, ``recall_latency.csv`` under ``tables`` and ``recall_vs_latency.png`` under ``plots``."""
    runs = pd.DataFrame([flatten(read_metrics(Path(p))) for p in metrics_files])
    raw = pd.concat([read_latency(Path(p)) for p in latency_files], ignore_index=True)
    stats = latency_stats(raw)
    table = recall_latency(runs, raw, stats, reference)
    write_csv_atomic(stats, Path(tables) / "latency.csv")
    write_csv_atomic(table, Path(tables) / "recall_latency.csv")
    plot(table, Path(plots) / "recall_vs_latency.png")
    return table
