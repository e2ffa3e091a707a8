"""Render ``results/report.html`` from the result files only (self-contained: figures are base64 PNGs, no network).

Inputs (each optional one adds its section; a missing one shows "not run"):
``results/tables/summary.csv`` (required), ``results/tables/latency.csv``, ``throughput.csv``, ``frame_sweep.csv``,
the runs' ``val_log.csv``/``train_log.csv``, ``results/data/{dataset}/manifest.json``, ``results/benchmarks/``, and
the published-results ledger ``data/published.csv``. Figures are also written as PNG files (``figures_dir``) so
``snakemake --report`` can show them. Column names of the optional tables are matched defensively by name.
"""

from __future__ import annotations

import base64
import math
import os
import re
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml

from vtrbench.report import plots, provenance
from vtrbench.train import git_commit

TEMPLATE = "report.html.j2"
LEDGER = "data/published.csv"
HEADLINE = [
    ("t2v_R@1", "T2V R@1"),
    ("t2v_R@5", "R@5"),
    ("t2v_R@10", "R@10"),
    ("t2v_MdR", "MdR"),
    ("t2v_MnR", "MnR"),
    ("v2t_R@1", "V2T R@1"),
    ("v2t_R@5", "R@5"),
    ("v2t_R@10", "R@10"),
    ("v2t_MdR", "MdR"),
    ("v2t_MnR", "MnR"),
]
OFFLINE_STAGE = re.compile(r"offline|gallery|encode_video|video_encod|index|build", re.IGNORECASE)


def fmt(value: Any, digits: int = 1) -> str:
    """A number with ``digits`` decimals (thousands separated when large), or an en dash when missing."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(value):
        return "–"
    return f"{value:,.{digits}f}" if abs(value) >= 10_000 else f"{value:.{digits}f}"


def mean_std(summary: pd.Series, column: str, digits: int = 1) -> str:
    mean, std = summary.get(f"{column}_mean"), summary.get(f"{column}_std")
    if mean is None or pd.isna(mean):
        return "–"
    return fmt(mean, digits) if std is None or pd.isna(std) else f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def pairwise_columns(summary: pd.DataFrame) -> list[str]:
    return sorted(c[: -len("_mean")] for c in summary.columns if c.startswith("pairwise_") and c.endswith("_mean"))


def headline_rows(summary: pd.DataFrame, latency_ms: dict[str, float] | None = None) -> tuple[list, list]:
    """Rows of the headline table and its column labels (recall/ranks, pairwise accuracy per negative type)."""
    latency_ms = latency_ms or {}
    pairwise = pairwise_columns(summary)
    rows = []
    for _, row in summary.iterrows():
        cells = [mean_std(row, col) for col, _ in HEADLINE] + [mean_std(row, col) for col in pairwise]
        rows.append(
            {
                "method": row["method"],
                "subset": _query_subset(row),
                "kind": row.get("kind", ""),
                "seeds": int(row["seeds"]),
                "cells": cells,
                "latency": fmt(latency_ms.get(row["method"]), 3),
                "floats": mean_std(row, "gallery_floats_per_video", 0),
                "clips": mean_std(row, "train_clips_per_s", 0),
                "parameters": mean_std(row, "parameters", 0),
            }
        )
    return rows, [label for _, label in HEADLINE] + [c.removeprefix("pairwise_") for c in pairwise]


def _query_subset(row: pd.Series) -> int | None:
    """Captions a slow pair scorer was evaluated on (None: every caption of the test split)."""
    value = row.get("query_subset_mean")
    return None if value is None or pd.isna(value) else int(value)


# ---- optional tables, read defensively ------------------------------------------------------------------------------


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def _column(frame: pd.DataFrame, *names: str) -> str | None:
    lower = {c.lower(): c for c in frame.columns}
    return next((lower[n.lower()] for n in names if n.lower() in lower), None)


def _time_ms(frame: pd.DataFrame, ms_names: tuple[str, ...], s_names: tuple[str, ...]) -> tuple[pd.Series, str] | None:
    if col := _column(frame, *ms_names):
        return pd.to_numeric(frame[col], errors="coerce"), col
    if col := _column(frame, *s_names):
        return pd.to_numeric(frame[col], errors="coerce") * 1000.0, col
    return None


def read_latency(path: Path) -> pd.DataFrame:
    """``method``, ``stage``, ``backend``, ``gallery_size``, ``ms_per_query`` (median over calls, batch-1 rows when
    the table has a ``batch_size``); empty when absent or unusable."""
    columns = ["method", "stage", "backend", "gallery_size", "ms_per_query"]
    frame = _read(path)
    found = _time_ms(
        frame,
        ("per_item_ms", "ms_per_query", "per_query_ms", "latency_ms", "median_ms", "ms"),
        ("seconds_per_query", "per_query_s", "s_per_query", "median_s", "seconds", "s", "time_s"),
    )
    if frame.empty or found is None or "method" not in frame:
        return pd.DataFrame(columns=columns)
    ms, col = found
    items = _column(frame, "items", "queries", "n_queries", "num_queries", "batch_size")
    if "per_" not in col and items:
        ms = ms / pd.to_numeric(frame[items], errors="coerce").clip(lower=1)
    out = pd.DataFrame(
        {
            "method": frame["method"].astype(str),
            "stage": frame["stage"].astype(str) if "stage" in frame else "total",
            "backend": frame["backend"].astype(str) if "backend" in frame else "",
            "gallery_size": pd.to_numeric(frame["gallery_size"], errors="coerce") if "gallery_size" in frame else 0,
            "ms_per_query": ms,
        }
    )
    if "batch_size" in frame and (frame["batch_size"] == 1).any():
        out = out[(frame["batch_size"] == 1).to_numpy()]
    out = out.dropna(subset=["ms_per_query"]).fillna({"gallery_size": 0})
    return out.groupby(columns[:4], as_index=False)["ms_per_query"].median()


def online_latency(latency: pd.DataFrame) -> pd.DataFrame:
    """Per-query cost paid online (offline gallery encoding excluded) per method and gallery size.

    Stages measured without a gallery (``gallery_size`` 0, e.g. query encoding) are added to every gallery size;
    where several backends time the same stage (FAISS, torch), the fastest counts.
    """
    if latency.empty:
        return pd.DataFrame(columns=["method", "gallery_size", "ms_per_query"])
    online = latency[~latency["stage"].str.contains(OFFLINE_STAGE)]
    online = online if not online.empty else latency
    best = online.groupby(["method", "stage", "gallery_size"], as_index=False)["ms_per_query"].min()
    fixed = best[best["gallery_size"] <= 0].groupby("method")["ms_per_query"].sum()
    scaled = best[best["gallery_size"] > 0].groupby(["method", "gallery_size"], as_index=False)["ms_per_query"].sum()
    if scaled.empty:
        return fixed.reset_index().assign(gallery_size=0)[["method", "gallery_size", "ms_per_query"]]
    scaled["ms_per_query"] += scaled["method"].map(fixed).fillna(0.0)
    return scaled


def headline_latency(latency: pd.DataFrame, reference: float | None = None) -> dict[str, float]:
    """Online per-query latency (ms) of each method at the gallery size closest to ``reference`` (the test
    gallery), or at its largest measured gallery."""
    online = online_latency(latency)
    if online.empty:
        return {}
    if reference:
        distance = (online["gallery_size"] - reference).abs()
        picked = online.loc[distance.groupby(online["method"]).idxmin()]
    else:
        picked = online.loc[online.groupby("method")["gallery_size"].idxmax()]
    return dict(zip(picked["method"], picked["ms_per_query"], strict=True))


def recall_latency(path: Path) -> dict[str, float]:
    """``query_ms`` per method from ``recall_latency.csv`` when the latency aggregation wrote it."""
    frame = _read(path)
    if frame.empty or not {"method", "query_ms"} <= set(frame.columns):
        return {}
    return dict(zip(frame["method"].astype(str), pd.to_numeric(frame["query_ms"], errors="coerce"), strict=True))


def read_throughput(path: Path, batch_size: int | None) -> pd.DataFrame:
    """``method``, ``frames``, ``step_ms`` (raw rows, the batch size closest to the run's); empty when absent."""
    frame = _read(path)
    found = _time_ms(frame, ("step_ms", "ms_per_step", "ms", "median_ms"), ("step_s", "seconds", "s", "median_s"))
    if frame.empty or found is None or not {"method", "frames"} <= set(frame.columns):
        return pd.DataFrame(columns=["method", "frames", "step_ms"])
    frame = frame.assign(step_ms=found[0])
    if (phase := _column(frame, "phase")) and frame[phase].isin(["step", "train", "train_step", "total"]).any():
        frame = frame[frame[phase].isin(["step", "train", "train_step", "total"])]
    if "batch_size" in frame and frame["batch_size"].nunique() > 1 and batch_size:
        closest = min(frame["batch_size"].unique(), key=lambda b: abs(b - batch_size))
        frame = frame[frame["batch_size"] == closest]
    return frame[["method", "frames", "step_ms"]].dropna()


def read_sweep(path: Path) -> pd.DataFrame:
    """Frame sweep as ``frames``, ``loss``, ``R@k`` (+ ``R@k_std``), ``step_ms`` when given; mean over seeds if raw."""
    frame = _read(path)
    if frame.empty or not {"frames", "loss"} <= set(frame.columns):
        return pd.DataFrame()
    out = frame[["frames", "loss"]].copy()
    for k in ("R@1", "R@5", "R@10"):
        if mean := _column(frame, f"t2v_{k}_mean", f"{k}_mean", f"t2v_{k}", k):
            out[k] = pd.to_numeric(frame[mean], errors="coerce")
        if std := _column(frame, f"t2v_{k}_std", f"{k}_std"):
            out[f"{k}_std"] = pd.to_numeric(frame[std], errors="coerce")
    time = _time_ms(frame, ("step_ms", "step_ms_mean", "step_time_ms"), ("step_s", "step_time_s", "step_seconds"))
    if time is not None:
        out["step_ms"] = time[0]
    if clips := _column(frame, "clips_per_s", "clips_per_s_mean", "samples_per_s"):
        out["clips_per_s"] = pd.to_numeric(frame[clips], errors="coerce")
    if "seed" in frame and not any(c.endswith("_std") for c in out.columns):
        grouped = out.groupby(["frames", "loss"])
        means, stds = grouped.mean(numeric_only=True), grouped.std(numeric_only=True).add_suffix("_std")
        out = means.join(stds[[c for c in stds.columns if c.startswith("R@")]]).reset_index()
    return out.sort_values(["loss", "frames"]).reset_index(drop=True)


def read_logs(results: Path, dataset: str, methods: list[str], name: str) -> pd.DataFrame:
    """Every run's ``train_log.csv`` or ``val_log.csv`` stacked with ``method`` and ``seed`` columns."""
    frames = []
    for method in methods:
        for path in sorted((results / "runs" / dataset / method).glob(f"seed*/{name}")):
            log = _read(path)
            if not log.empty:
                frames.append(log.assign(method=method, seed=int(path.parent.name.removeprefix("seed"))))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ---- published numbers ----------------------------------------------------------------------------------------------


def protocol_key(config: dict[str, Any]) -> str:
    """Dataset + protocol of this run, in the ledger's ``comparable_to`` vocabulary (e.g. msrvtt-1kA-7k-train)."""
    data = config["dataset"]
    name = data["name"]
    if name == "msrvtt":
        return f"msrvtt-1kA-{data.get('msrvtt_train', '7k')}-train"
    return {"didemo": "didemo-test-paragraph", "msvd": "msvd-test"}.get(name, f"{name}: not a published benchmark")


def find_ledger(explicit: str | Path | None = None) -> Path | None:
    candidates = [Path(explicit)] if explicit else [Path(LEDGER), Path(__file__).resolve().parents[2] / LEDGER]
    return next((p for p in candidates if p.is_file()), None)


def ledger_rows(ledger: pd.DataFrame, key: str) -> list[dict[str, Any]]:
    rows = []
    for _, row in ledger.iterrows():
        comparable = row.get("comparable_to") == key
        rows.append(
            {
                **{k: ("" if pd.isna(v) else v) for k, v in row.items()},
                **{m: fmt(row.get(m), 1) for m in ("R@1", "R@5", "R@10", "MdR", "MnR")},
                "frames": fmt(row.get("frames"), 0),
                "step_ms": fmt(row.get("step_ms"), 0),
                "status": "comparable" if comparable else "not comparable",
            }
        )
    return rows


# ---- findings -------------------------------------------------------------------------------------------------------


def _gap_text(best: pd.Series, second: pd.Series, column: str, higher: bool = True) -> str:
    a, b = best[f"{column}_mean"], second[f"{column}_mean"]
    sa, sb = best.get(f"{column}_std"), second.get(f"{column}_std")
    gap = (a - b) if higher else (b - a)
    if pd.isna(sa) or pd.isna(sb) or min(best["seeds"], second["seeds"]) < 2:
        return f"ahead of {second['method']} by {fmt(gap)}; one seed only, so the seed spread is unknown"
    noise = math.hypot(sa, sb)
    verdict = "within seed noise" if gap <= noise else "larger than the seed spread"
    return f"ahead of {second['method']} by {fmt(gap)} (combined std {fmt(noise)}: {verdict})"


def _best(summary: pd.DataFrame, column: str, higher: bool = True) -> str | None:
    col = f"{column}_mean"
    if col not in summary or summary[col].isna().all():
        return None
    ranked = summary.dropna(subset=[col]).sort_values(col, ascending=not higher)
    best = ranked.iloc[0]
    ties = ranked[ranked[col] == best[col]]["method"].tolist()
    value = mean_std(best, column)
    if len(ties) > 1:
        return f"{', '.join(ties)} tie at {value}"
    text = f"{best['method']} ({value})"
    return text if len(ranked) < 2 else f"{text}, {_gap_text(best, ranked.iloc[1], column, higher)}"


def _model_based_verdict(summary: pd.DataFrame, latency_ms: dict[str, float]) -> list[str]:
    """Say plainly whether the model-based side (pair scorers) buys accuracy here, and at what query cost."""
    if "kind" not in summary or "t2v_R@1_mean" not in summary:
        return []
    pair = summary[summary["kind"] == "pair"].sort_values("t2v_R@1_mean", ascending=False)
    embedding = summary[summary["kind"] == "embedding"].sort_values("t2v_R@1_mean", ascending=False)
    if pair.empty or embedding.empty:
        return []
    p, e = pair.iloc[0], embedding.iloc[0]
    wins = p["t2v_R@1_mean"] > e["t2v_R@1_mean"]
    cost = ""
    if p["method"] in latency_ms and e["method"] in latency_ms and latency_ms[e["method"]] > 0:
        cost = f", at {fmt(latency_ms[p['method']] / latency_ms[e['method']], 0)}x its query latency"
    verdict = "is" if wins else "is NOT"
    return [
        f"The model-based side {verdict} the most accurate here: its best, {p['method']} "
        f"(text→video R@1 {mean_std(p, 't2v_R@1')}), against the best embedding method {e['method']} "
        f"({mean_std(e, 't2v_R@1')}){cost}."
    ]


def findings(summary: pd.DataFrame, latency_ms: dict[str, float], frontier: list[str]) -> list[str]:
    """Plain sentences computed from the tables: who is best on what, what it costs, whether gaps exceed noise."""
    out = []
    if best := _best(summary, "t2v_R@1"):
        out.append(f"Best text→video R@1: {best}.")
    # A subset-evaluated method ranks each video among its N captions only: an easier video->text task
    subset = summary.apply(_query_subset, axis=1).notna() if len(summary) else pd.Series(dtype=bool)
    if best := _best(summary[~subset], "v2t_R@1"):
        left_out = ", ".join(summary.loc[subset, "method"])
        note = f" ({left_out} left out: it ranks each video among a caption subset only)" if left_out else ""
        out.append(f"Best video→text R@1: {best}{note}.")
    for column in pairwise_columns(summary):
        if best := _best(summary, column):
            out.append(
                f"Best at telling the true video from its {column.removeprefix('pairwise_')} twin "
                f"(pairwise accuracy, chance 50%): {best}."
            )
    out.extend(_model_based_verdict(summary, latency_ms))
    if "gallery_floats_per_video_mean" in summary:
        cheapest = summary.sort_values("gallery_floats_per_video_mean").iloc[0]
        out.append(
            f"Smallest gallery index: {cheapest['method']} "
            f"({fmt(cheapest['gallery_floats_per_video_mean'], 0)} floats per video)."
        )
    if latency_ms:
        method = min(latency_ms, key=latency_ms.get)
        out.append(
            f"Cheapest per text query: {method} ({fmt(latency_ms[method], 3)} ms online at the test gallery size)."
        )
    else:
        out.append("Query latency was not measured in this run (no results/tables/latency.csv).")
    if "train_clips_per_s_mean" in summary and summary["train_clips_per_s_mean"].notna().any():
        fastest = summary.sort_values("train_clips_per_s_mean", ascending=False).iloc[0]
        out.append(f"Fastest training: {fastest['method']} ({mean_std(fastest, 'train_clips_per_s', 0)} clips/s).")
    if frontier:
        out.append(f"On the recall–cost Pareto frontier: {', '.join(frontier)}.")
    return out


# ---- assembly -------------------------------------------------------------------------------------------------------


def _figure(figures: dict, files: Path, name: str, fig: Any, alt: str) -> None:
    if fig is None:
        return
    data = plots.png_bytes(fig)
    (files / f"{name}.png").write_bytes(data)
    figures[name] = {"src": "data:image/png;base64," + base64.b64encode(data).decode("ascii"), "alt": alt}


def _table(frame: pd.DataFrame, digits: int = 1) -> dict[str, list]:
    rows = [
        [fmt(v, digits) if isinstance(v, int | float) else str(v) for v in r] for r in frame.itertuples(index=False)
    ]
    return {"columns": [str(c) for c in frame.columns], "rows": rows}


def render_report(
    tables_dir: str | Path,
    out: str | Path,
    config: dict[str, Any],
    results: str | Path | None = None,
    published: str | Path | None = None,
    figures_dir: str | Path | None = None,
) -> Path:
    """Write the report; ``results`` defaults to the tables folder's parent, ``figures_dir`` to ``out``'s sibling."""
    tables_dir, out = Path(tables_dir), Path(out)
    results = Path(results) if results else tables_dir.parent
    figures_dir = Path(figures_dir) if figures_dir else out.parent / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    for stale in figures_dir.glob("*.png"):
        stale.unlink()
    dataset = config["dataset"]["name"]
    summary = pd.read_csv(tables_dir / "summary.csv")
    methods = summary["method"].astype(str).tolist()
    figures: dict[str, dict] = {}
    latency = read_latency(tables_dir / "latency.csv")
    throughput = read_throughput(tables_dir / "throughput.csv", config.get("train", {}).get("batch_size"))
    extra = [m for m in [*latency["method"], *throughput["method"]] if m not in methods]
    palette = plots.method_palette(methods + list(dict.fromkeys(extra)))
    test_videos = provenance.read_manifest(results, dataset).get("counts", {}).get("test", {}).get("videos")
    latency_ms = recall_latency(tables_dir / "recall_latency.csv") or headline_latency(latency, test_videos)
    latency_ms = {m: v for m, v in latency_ms.items() if m in methods and pd.notna(v)}
    cost = summary.assign(latency_ms=summary["method"].map(latency_ms))
    if latency_ms:
        x, xlabel = "latency_ms", "online latency per text query (ms)"
    else:
        cost = cost.rename(
            columns={"gallery_floats_per_video_mean": "floats", "gallery_floats_per_video_std": "floats_std"}
        )
        x, xlabel = "floats", "gallery floats stored per video"
    cost = cost.rename(columns={"t2v_R@1_mean": "t2v_R@1", "t2v_R@1_std": "t2v_R@1_std"})
    frontier = plots.pareto_front(cost, x, "t2v_R@1")["method"].tolist() if x in cost else []
    if x in cost:
        _figure(
            figures, figures_dir, "recall_vs_cost", plots.recall_vs_cost(cost, x, xlabel, palette), "recall vs cost"
        )
    _figure(
        figures,
        figures_dir,
        "latency_vs_gallery",
        plots.latency_vs_gallery(online_latency(latency), palette),
        "latency vs gallery size",
    )

    ledger_path = find_ledger(published)
    ledger = _read(ledger_path) if ledger_path else pd.DataFrame()
    key = protocol_key(config)
    fig5 = ledger[ledger["source_table"].eq("CRET Fig. 5a")] if not ledger.empty else pd.DataFrame()
    sweep = read_sweep(tables_dir / "frame_sweep.csv")
    recall = "R@5" if "R@5" in sweep else "R@1"
    _figure(figures, figures_dir, "frame_sweep", plots.frame_sweep(sweep, recall, fig5), "frame sweep GEES vs NCE")
    if not throughput.empty:
        _figure(figures, figures_dir, "step_time", plots.step_time(throughput, "method", palette), "step time")
    elif "step_ms" in sweep:
        _figure(figures, figures_dir, "step_time", plots.step_time(sweep, "loss"), "step time")

    val_logs = read_logs(results, dataset, methods, "val_log.csv")
    train_logs = read_logs(results, dataset, methods, "train_log.csv")
    _figure(
        figures, figures_dir, "training_curves", plots.training_curves(val_logs, train_logs, palette), "training curves"
    )

    rows, columns = headline_rows(summary, latency_ms)
    cret = summary[summary.get("method_class", pd.Series(dtype=str)).eq("cret")] if "method_class" in summary else []
    info = provenance.collect(results, config, git_commit())
    manifest = info["manifest"]
    env = jinja2.Environment(loader=jinja2.PackageLoader("vtrbench.report", "."), autoescape=True)
    html = env.get_template(TEMPLATE).render(
        run_name=config.get("run_name", ""),
        dataset=dataset,
        rows=rows,
        columns=columns,
        findings=findings(summary, latency_ms, frontier),
        figures=figures,
        cost_axis=xlabel,
        latency=_table(online_latency(latency), 3) if not latency.empty else None,
        sweep=_table(sweep) if not sweep.empty else None,
        throughput=_table(throughput.groupby(["method", "frames"], as_index=False)["step_ms"].median())
        if not throughput.empty
        else None,
        ablation=ablation_rows(cret, config) if len(cret) >= 2 else None,
        key=key,
        ledger=ledger_rows(ledger, key) if not ledger.empty else [],
        ledger_path=str(ledger_path) if ledger_path else None,
        comparable=not ledger.empty and ledger["comparable_to"].eq(key).any(),
        incomplete=bool(manifest.get("incomplete")),
        problems=manifest.get("problems", 0),
        manifest=manifest,
        info=info,
        steps=_table(info["steps"], 1) if not info["steps"].empty else None,
        config=yaml.safe_dump(config, sort_keys=False),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html)
    os.replace(tmp, out)
    return out


def ablation_rows(cret: pd.DataFrame, config: dict[str, Any]) -> list[dict[str, str]]:
    """CRET variants side by side, each with the options that distinguish it in the config."""
    rows = []
    for _, row in cret.iterrows():
        options = {k: v for k, v in config.get("methods", {}).get(row["method"], {}).items() if k != "class"}
        rows.append(
            {
                "method": row["method"],
                "options": ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults",
                "seeds": int(row["seeds"]),
                "cells": [mean_std(row, c) for c in ("t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MdR")]
                + [mean_std(row, c) for c in pairwise_columns(cret)],
            }
        )
    return rows
