"""Recall against query latency: every run's ``latency.csv`` and ``metrics.json`` into tables (no figures here).

Reads only the result files it is given (README, "Result files"), so a user's rule that writes them in the
documented schema shows up here with no change.

* ``latency.csv``: one row per (method, stage, backend, k, gallery_size, batch_size, flags): ``calls``,
  ``median_s``, ``p95_s``, ``per_item_ms`` (median / items), ``throughput_per_s`` (items / median), FLOPs;
* ``latency_vs_gallery.csv``: one row per (method, gallery_size): ``ms_per_query`` online (text encoding at batch 1
  + search at batch 1; FAISS when measured, a re-ranker at the depth it chose on val; at the gallery-scale step's
  sizes: an embedding method's exact search of real distractors, a pair method extrapolated, a re-ranker composed
  of its first stage's chosen HNSW point and its k pair scores), ``extrapolated``;
* ``recall_latency.csv``: one row per method: its ``design`` class (``vtrbench.registry.DESIGNS``, as its
  ``metrics.json`` records it; ``unspecified`` when that has none), t2v R@1 mean/std over seeds, per-query latency
  at the reference gallery size (``query_ms``), offline ``gallery_encode_ms_per_video``, ``bytes_per_video``, the
  pair scorer's ``flops_per_query`` and ``floor_ms`` (those FLOPs at the measured matmul rate) and ``x_floor``
  (search time / floor), and ``pareto`` (no other method is both faster and more accurate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vtrbench import resultfiles
from vtrbench.registry import DEFAULT_DESIGN

KEYS = [
    "method",
    "stage",
    "backend",
    "k",
    "gallery_size",
    "batch_size",
    "measured",
    "extrapolated",
    "synthetic_gallery",
]
ONLINE_COLUMNS = [
    "method",
    "gallery_size",
    "backend",
    "k",
    "search_ms",
    "ms_per_query",
    "extrapolated",
    "flops_per_query",
    "matmul_gflops",
]
SEARCH_BACKENDS = ("faiss", "pair", "rerank", "torch")  # the first measured one is a method's search time


def latency_stats(raw: pd.DataFrame) -> pd.DataFrame:
    timed = raw[raw.stage != "memory"].copy()
    grouped = timed.groupby(KEYS, sort=False, dropna=False)
    stats = grouped.agg(
        calls=("seconds", "size"),
        median_s=("seconds", "median"),
        p95_s=("seconds", lambda s: s.quantile(0.95)),
        items=("items", "first"),
    ).reset_index()
    for col in ("threads", "device", "top10_agreement", "flops_per_query", "matmul_gflops"):
        if col in timed:
            stats[col] = grouped[col].first().values
    stats["per_item_ms"] = 1000 * stats.median_s / stats["items"]
    stats["throughput_per_s"] = stats["items"] / stats.median_s
    return stats


def chosen_depth(runs: pd.DataFrame) -> dict[str, int]:
    """The re-ranking depth each re-ranker chose on val (the first seed's; ``rerank_k`` in metrics.json)."""
    if "rerank_k" not in runs:
        return {}
    picked = runs.dropna(subset=["rerank_k"]).sort_values("seed").groupby("method")["rerank_k"].first()
    return {m: int(k) for m, k in picked.items()}


def first_stages(runs: pd.DataFrame) -> dict[str, str]:
    """Each re-ranker's first stage (``rerank_first`` in metrics.json)."""
    if "rerank_first" not in runs:
        return {}
    picked = runs.dropna(subset=["rerank_first"]).groupby("method")["rerank_first"].first()
    return {m: str(f) for m, f in picked.items()}


def online_latency(
    stats: pd.DataFrame, depth: dict[str, int], scale: pd.DataFrame | None = None, first: dict[str, str] | None = None
) -> pd.DataFrame:
    """Online ms per query (query encoding + search, batch 1) per method and gallery size; a method with no
    ``query_encode`` rows (an external one whose search times the whole query) is its search time.

    ``scale`` (``recall_qps.csv``) adds the gallery sizes the latency step did not search: an embedding method's
    exact search over the real distractor galleries (measured); a pair method's full-gallery scoring, linear in the
    gallery from its largest measured size (``extrapolated``); a re-ranker (``first``: its first stage) as its
    first stage's chosen HNSW point there plus its own k pair scores at the test split (composed from two
    measurements: marked ``extrapolated``)."""
    single = stats[stats.batch_size == 1]
    encode = single[single.stage == "query_encode"].groupby("method")["median_s"].first()
    search = single[single.stage == "search"]
    search = search[
        [depth.get(m, 0) == k or b != "rerank" for m, k, b in zip(search.method, search.k, search.backend, strict=True)]
    ]
    rows = []
    for (method, size), group in search.groupby(["method", "gallery_size"], sort=False):
        hit = next((group[group.backend == b].iloc[0] for b in SEARCH_BACKENDS if (group.backend == b).any()), None)
        if hit is None:
            continue
        rows.append(
            {
                "method": method,
                "gallery_size": int(size),
                "backend": hit.backend,
                "k": int(hit.k),
                "search_ms": 1000 * hit.median_s,
                "ms_per_query": 1000 * (encode.get(method, 0.0) + hit.median_s),
                "extrapolated": bool(hit.extrapolated),
                "flops_per_query": hit.get("flops_per_query", np.nan),
                "matmul_gflops": hit.get("matmul_gflops", np.nan),
            }
        )
    if scale is not None and not scale.empty:
        rows += _at_scale(rows, scale, 1000 * encode, first or {})
    return pd.DataFrame(rows, columns=ONLINE_COLUMNS)


def _at_scale(rows: list[dict], scale: pd.DataFrame, encode_ms: pd.Series, first: dict[str, str]) -> list[dict]:
    """The rows of :func:`online_latency` at the gallery-scale step's sizes (see there)."""
    done = {(r["method"], r["gallery_size"]) for r in rows}
    search = {(r["method"], r["gallery_size"]): r["search_ms"] for r in rows}
    out = []

    def add(method: str, size: int, backend: str, k: int, search_ms: float, extrapolated: bool) -> None:
        if (method, size) not in done and method in encode_ms:
            out.append({"method": method, "gallery_size": size, "backend": backend, "k": k, "search_ms": search_ms}
                       | {"ms_per_query": encode_ms[method] + search_ms, "extrapolated": extrapolated})  # fmt: skip

    for hit in scale[scale.family == "flat"].itertuples(index=False):
        add(hit.method, int(hit.gallery_size), "faiss", 0, hit.p50_ms, False)
    sizes = sorted({int(n) for n in scale.gallery_size})
    for method in {r["method"] for r in rows if r["backend"] == "pair"}:
        measured = [r for r in rows if r["method"] == method and r["backend"] == "pair" and not r["extrapolated"]]
        if measured:
            top = max(measured, key=lambda r: r["gallery_size"])
            for size in sizes:
                add(method, size, "pair", 0, top["search_ms"] * size / top["gallery_size"], True)
    hnsw = scale[(scale.family == "hnsw") & scale.chosen.astype(bool)]
    for method, stage in first.items():
        own = [r for r in rows if r["method"] == method and r["backend"] == "rerank"]
        if not own:
            continue
        top = max(own, key=lambda r: r["gallery_size"])
        pair_ms = top["search_ms"] - search.get((stage, top["gallery_size"]), 0.0)  # its k pair scores
        for hit in hnsw[hnsw.method == stage].itertuples(index=False):
            add(method, int(hit.gallery_size), "rerank", top["k"], hit.p50_ms + pair_ms, True)
    return out


def pareto_flags(table: pd.DataFrame, cost: str, recall: str) -> list[bool]:
    """True where no other row is at most as costly and at least as accurate, and strictly better in one."""
    flags = []
    for _, r in table.iterrows():
        beaten = any(
            o[cost] <= r[cost] and o[recall] >= r[recall] and (o[cost] < r[cost] or o[recall] > r[recall])
            for _, o in table.iterrows()
        )
        flags.append(bool(pd.notna(r[cost])) and not beaten)
    return flags


def design(runs: pd.DataFrame) -> str:
    """A method's design class as its runs' ``metrics.json`` records it (the first seed's; the default if none)."""
    if "design" not in runs:
        return DEFAULT_DESIGN
    known = runs.sort_values("seed")["design"].dropna()
    return str(known.iloc[0]) if len(known) else DEFAULT_DESIGN


def recall_latency(runs: pd.DataFrame, raw: pd.DataFrame, stats: pd.DataFrame, reference: int) -> pd.DataFrame:
    online = online_latency(stats, chosen_depth(runs))
    at_ref = online[online.gallery_size == reference].set_index("method")
    single = stats[stats.batch_size == 1]
    rows = []
    for method, group in runs.groupby("method", sort=False):
        encode = single[(single.method == method) & (single.stage == "query_encode")].median_s
        genc = single[(single.method == method) & (single.stage == "gallery_encode")].median_s
        memory = raw[(raw.method == method) & (raw.stage == "memory")].bytes_per_video
        hit = at_ref.loc[method] if method in at_ref.index else None
        floor_ms = np.nan if hit is None else 1000 * hit.flops_per_query / (hit.matmul_gflops * 1e9)
        rows.append(
            {
                "method": method,
                "kind": group["kind"].iloc[0] if "kind" in group else "",
                "design": design(group),
                "seeds": group.seed.nunique(),
                "t2v_R@1_mean": group["t2v_R@1"].mean(),
                "t2v_R@1_std": group["t2v_R@1"].std(),
                "query_subset": group["query_subset"].max() if "query_subset" in group else np.nan,
                "gallery_size": reference,
                "query_encode_ms": 1000 * encode.iloc[0] if len(encode) else np.nan,
                "search_ms": np.nan if hit is None else hit.search_ms,
                "query_ms": np.nan if hit is None else hit.ms_per_query,
                "query_ms_extrapolated": False if hit is None else bool(hit.extrapolated),
                "k": 0 if hit is None else int(hit.k),
                "gallery_encode_ms_per_video": 1000 * genc.iloc[0] if len(genc) else np.nan,
                "bytes_per_video": float(memory.iloc[0]) if len(memory) else np.nan,
                "flops_per_query": np.nan if hit is None else hit.flops_per_query,
                "floor_ms": floor_ms,
                "x_floor": np.nan if hit is None else hit.search_ms / floor_ms,
            }
        )
    table = pd.DataFrame(rows)
    table["pareto"] = pareto_flags(table, "query_ms", "t2v_R@1_mean")
    return table


def tradeoff(
    metrics_files: list[str | Path],
    latency_files: list[str | Path],
    tables: str | Path,
    reference: int,
    scale_points: str | Path | None = None,
) -> pd.DataFrame:
    """Write ``latency.csv``, ``latency_vs_gallery.csv`` and ``recall_latency.csv`` under ``tables``; with the
    gallery-scale step's ``recall_qps.csv``, embedding search past the test split is its real-distractor search."""
    runs = pd.DataFrame([resultfiles.flatten_metrics(resultfiles.read_metrics(p)) for p in metrics_files])
    raw = pd.concat([resultfiles.read_latency(p) for p in latency_files], ignore_index=True)
    stats = latency_stats(raw)
    table = recall_latency(runs, raw, stats, reference)
    resultfiles.write_csv(stats, Path(tables) / "latency.csv")
    scale = resultfiles.read_optional_csv(scale_points)
    online = online_latency(stats, chosen_depth(runs), scale, first_stages(runs))
    online = online.sort_values(["method", "gallery_size"], kind="stable")
    resultfiles.write_csv(online, Path(tables) / "latency_vs_gallery.csv")
    resultfiles.write_csv(table, Path(tables) / "recall_latency.csv")
    return table
