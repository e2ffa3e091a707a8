"""Render ``report.html`` from the tables the aggregate steps wrote (self-contained: figures are base64 PNGs).

The report computes nothing an earlier step owns: it reads exactly the files it is given (the report rule declares
them; a table of a step the config disabled is not given, so a stale file on disk never shows up), draws every
figure once (``vtrbench.report.plots``), takes its sentences from ``vtrbench.report.findings`` and formats numbers.
Figures are also written as PNG files (``figures_dir``) so ``snakemake --report`` can show them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import yaml

from vtrbench import resultfiles
from vtrbench.report import findings as findings_lib
from vtrbench.report import plots, provenance
from vtrbench.report.text import fmt, mean_std, pairwise_columns, query_subset
from vtrbench.report.tradeoff import pareto_flags

TEMPLATE = "report.html.j2"
HEADLINE = [("t2v_R@1", "R@1"), ("t2v_R@5", "R@5"), ("t2v_MdR", "MdR"), ("v2t_R@1", "V2T R@1")]
FULL = [f"{d}_{m}" for d in ("t2v", "v2t") for m in ("R@1", "R@5", "R@10", "MdR", "MnR")]
LEDGER_COLUMNS = ["source_table", "method", "backbone", "R@1", "R@5", "R@10", "MdR"]
INTEGER_COLUMNS = {"gallery_size", "frames", "batch_size", "k", "seeds", "reps", "calls", "jobs", "queries"}


@dataclass
class ReportInputs:
    """The files the report rule declares; ``tables`` maps a table's file name (``summary.csv``) to its path."""

    tables: dict[str, Path]
    manifest: Path | None = None
    ledger: Path | None = None
    benchmarks: list[Path] = field(default_factory=list)

    @classmethod
    def from_paths(cls, tables: list[str | Path], **kwargs: Any) -> ReportInputs:
        return cls({Path(p).name: Path(p) for p in tables}, **kwargs)

    def table(self, name: str) -> pd.DataFrame:
        return resultfiles.read_optional_csv(self.tables.get(name))


def headline_rows(summary: pd.DataFrame, latency_ms: dict[str, float] | None = None) -> tuple[list, list]:
    """Rows of the headline table (one per method) and its column labels."""
    latency_ms = latency_ms or {}
    pairwise = pairwise_columns(summary)
    rows = []
    for _, row in summary.iterrows():
        rows.append(
            {
                "method": row["method"],
                "subset": query_subset(row),
                "still": findings_lib.still_improving(row),
                "gain": fmt(row.get("plateau_gain")),
                "kind": row.get("kind", ""),
                "design": plots.design_name(row.get("design")),
                "seeds": int(row["seeds"]),
                "cells": [mean_std(row, col) for col, _ in HEADLINE] + [mean_std(row, col, 0) for col in pairwise],
                "full": [mean_std(row, col) for col in FULL],
                "latency": fmt(latency_ms.get(row["method"]), 2),
                "floats": fmt(row.get("gallery_floats_per_video_mean"), 0),  # the same for every seed
                "clips": mean_std(row, "train_clips_per_s", 0),
                "parameters": mean_std(row, "parameters", 0),
            }
        )
    labels = [label for _, label in HEADLINE] + [c.removeprefix("pairwise_").replace("_", " ") for c in pairwise]
    return rows, labels


# ---- published numbers ----------------------------------------------------------------------------------------------


def protocol_key(config: dict[str, Any]) -> str:
    """The published protocol of this run (``protocol`` in the config, else derived from the dataset)."""
    if config.get("protocol"):
        return str(config["protocol"])
    data = config["dataset"]
    name = data["name"]
    if name == "msrvtt":
        return f"msrvtt-1kA-{data.get('msrvtt_train', '7k')}-train"
    return {"didemo": "didemo-test-paragraph", "msvd": "msvd-test"}.get(name, f"{name}: not a published benchmark")


def ledger_groups(ledger: pd.DataFrame, key: str) -> list[dict[str, Any]]:
    """The ledger, compact: one group per source (comparable rows and groups first), a few columns per row."""
    if ledger.empty:
        return []
    ledger = ledger.assign(comparable=ledger["comparable_to"].eq(key))
    groups = []
    for source, group in ledger.groupby("source_table", sort=False):
        rows = [
            {
                "cells": [
                    ("" if pd.isna(r[c]) else r[c]) if c in ("method", "backbone") else fmt(r.get(c), 1)
                    for c in LEDGER_COLUMNS[1:]
                ],
                "comparable": bool(r["comparable"]),
                "tag": r.get("tag", ""),
                "selection": r.get("selection", ""),
                "postprocess": "unknown" if pd.isna(r.get("postprocess")) else r.get("postprocess"),
                "note": "" if pd.isna(r.get("note")) else r.get("note"),
            }
            for _, r in group.sort_values("comparable", ascending=False, kind="stable").iterrows()
        ]
        groups.append({"source": source, "rows": rows, "comparable": any(r["comparable"] for r in rows)})
    return sorted(groups, key=lambda g: not g["comparable"])


def relative(path: Path | None) -> str | None:
    """A path as the user gave it relative to the project (never the machine's absolute path)."""
    if path is None:
        return None
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


# ---- assembly -------------------------------------------------------------------------------------------------------


def _figure(figures: dict, files: Path, name: str, fig: Any, alt: str) -> None:
    if fig is None:
        return
    data = plots.png_bytes(fig)
    resultfiles.write_bytes(files / f"{name}.png", data)
    figures[name] = {"src": "data:image/png;base64," + base64.b64encode(data).decode("ascii"), "alt": alt}


def table(frame: pd.DataFrame, digits: int = 1) -> dict[str, list] | None:
    """Cells as text: integer columns without decimals, other numbers with ``digits``."""
    if frame.empty:
        return None
    integer = {c for c in frame.columns if c in INTEGER_COLUMNS or pd.api.types.is_integer_dtype(frame[c])}
    rows = [
        [
            (f"{int(v):,}" if c in integer and pd.notna(v) else fmt(v, digits))
            if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            else str(v)
            for c, v in zip(frame.columns, r, strict=True)
        ]
        for r in frame.itertuples(index=False)
    ]
    return {"columns": [str(c).replace("_", " ") for c in frame.columns], "rows": rows}


def latency_matrix(latency: pd.DataFrame, designs: dict[str, str] | None = None) -> pd.DataFrame:
    """Methods x gallery sizes, online ms per query (an ``*`` marks an extrapolated value); with ``designs``
    (method -> design class), a ``design`` column after the method."""
    if latency.empty:
        return pd.DataFrame()
    cells = latency.assign(
        text=[
            fmt(ms, 2) + ("*" if ex else "") for ms, ex in zip(latency.ms_per_query, latency.extrapolated, strict=True)
        ]
    )
    wide = cells.pivot_table(index="method", columns="gallery_size", values="text", aggfunc="first", sort=False)
    wide.columns = [f"{int(c):,} videos" for c in wide.columns]
    wide = wide.reset_index().fillna("–")
    if designs is not None:
        wide.insert(1, "design", [plots.design_name(designs.get(m)) for m in wide["method"]])
    return wide


def render_report(inputs: ReportInputs, out: str | Path, config: dict[str, Any], figures_dir: str | Path) -> Path:
    """Write the report and its figures; returns the report's path."""
    out, figures_dir = Path(out), Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    for stale in figures_dir.glob("*.png"):
        stale.unlink()
    summary = resultfiles.read_csv(inputs.tables["summary.csv"], ("method", "seeds"), "summary.csv")
    methods = summary["method"].astype(str).tolist()
    palette = plots.method_palette(methods)
    recall = inputs.table("recall_latency.csv")
    latency = inputs.table("latency_vs_gallery.csv")
    latency_ms = dict(zip(recall.method, recall.query_ms, strict=True)) if not recall.empty else {}
    latency_ms = {m: v for m, v in latency_ms.items() if m in methods and pd.notna(v)}
    designs = dict(zip(recall.method, recall.design, strict=True)) if "design" in recall else None
    figures: dict[str, dict] = {}
    cost = summary.rename(columns={"t2v_R@1_mean": "t2v_R@1"})
    if "design" not in cost and "design" in recall:  # summary.csv of runs whose metrics.json has no design
        cost = cost.merge(recall[["method", "design"]], on="method", how="left")
    if latency_ms:
        cost = cost.merge(recall[["method", "query_ms", "pareto"]], on="method", how="left")
        x, xlabel = "query_ms", "online latency per text query (ms, test gallery)"
    else:
        cost = cost.assign(floats=cost.get("gallery_floats_per_video_mean"))
        cost["pareto"] = pareto_flags(cost, "floats", "t2v_R@1") if cost["floats"].notna().any() else False
        x, xlabel = "floats", "gallery floats stored per video"
    _figure(figures, figures_dir, "recall_vs_cost", plots.recall_vs_cost(cost, x, xlabel, palette), "recall vs cost")
    _figure(figures, figures_dir, "latency_vs_gallery", plots.latency_vs_gallery(latency, palette), "latency")
    scale, points = inputs.table("scale.csv"), inputs.table("recall_qps.csv")
    _figure(figures, figures_dir, "recall_vs_gallery", plots.recall_vs_gallery(scale, palette), "recall vs gallery")
    _figure(figures, figures_dir, "recall_qps", plots.recall_qps(points, palette), "recall vs queries per second")
    ledger = resultfiles.read_optional_csv(inputs.ledger)
    paper = ledger[ledger["source_table"].eq("CRET Fig. 5a")] if not ledger.empty else pd.DataFrame()
    sweep = inputs.table("frame_sweep.csv")
    _figure(figures, figures_dir, "frame_sweep", plots.frame_sweep(sweep, paper), "frame sweep GEES vs NCE")
    _figure(figures, figures_dir, "equal_cost", plots.equal_cost(inputs.table("sweep_curves.csv")), "equal cost")
    sweep_compared = inputs.table("sweep_comparisons.csv")
    throughput, losses = inputs.table("throughput.csv"), inputs.table("loss_throughput.csv")
    _figure(figures, figures_dir, "step_time", plots.step_time(throughput, losses, palette), "step time")
    rerank = inputs.table("rerank_sweep.csv")
    chosen = (
        rerank[rerank.chosen & (rerank.split == "test")].drop_duplicates(["method"]) if not rerank.empty else rerank
    )
    _figure(figures, figures_dir, "rerank_depth", plots.rerank_depth(rerank, chosen), "re-ranking depth")
    curves, train_curves = inputs.table("curves.csv"), inputs.table("train_curves.csv")
    _figure(figures, figures_dir, "training_curves", plots.training_curves(curves, train_curves, palette), "curves")

    comparisons = inputs.table("comparisons.csv")
    _figure(figures, figures_dir, "comparisons", plots.comparison_matrix(comparisons, methods), "paired comparisons")
    frontier = cost[cost["pareto"].astype(bool)]["method"].tolist()
    rows, columns = headline_rows(summary, latency_ms)
    key = protocol_key(config)
    comparable = not ledger.empty and ledger["comparable_to"].eq(key).any()
    manifest = provenance.read_manifest(inputs.manifest)
    info = provenance.collect(manifest, config, inputs.benchmarks, inputs.table("runs.csv"))
    env = jinja2.Environment(loader=jinja2.PackageLoader("vtrbench.report", "."), autoescape=True)
    html = env.get_template(TEMPLATE).render(
        run_name=config.get("run_name", ""),
        dataset=config["dataset"]["name"],
        rows=rows,
        columns=columns,
        pairwise_labels=columns[len(HEADLINE) :],
        full_columns=[c.replace("_", " ") for c in FULL],
        findings=findings_lib.findings(
            summary, latency_ms, frontier, comparisons if not comparisons.empty else None, sweep_compared, scale
        ),
        figures=figures,
        cost_axis=xlabel,
        latency=table(latency_matrix(latency, designs)),
        recall=table(recall.drop(columns=["kind", "gallery_size"], errors="ignore"), 2),
        sweep=table(sweep.drop(columns=["paper_R@5"], errors="ignore")),
        sweep_comparisons=table(sweep_comparison_frame(sweep_compared)),
        sweep_finding=findings_lib.sweep_finding(sweep_compared),
        throughput=table(throughput[[c for c in throughput.columns if c in THROUGHPUT_SHOWN]], 1),
        rerank=table(rerank[rerank.chosen].drop(columns=["chosen"], errors="ignore")) if not rerank.empty else None,
        ablation=ablation_rows(summary, config),
        key=key,
        ledger=ledger_groups(ledger, key),
        ledger_path=relative(inputs.ledger),
        comparable=comparable,
        synthetic=config["dataset"]["name"] == "synthetic",
        incomplete=bool(manifest.get("incomplete")),
        problems=manifest.get("problems", 0),
        manifest=manifest,
        info=info,
        steps=table(info["steps"], 1),
        convergence=table(inputs.table("convergence.csv")),
        scale=table(scale_frame(scale), 2),
        pretraining=table(inputs.table("pretraining.csv"), 2),
        comparisons=table(comparisons[comparisons.metric == "t2v_R@1"], 2) if not comparisons.empty else None,
        postprocess=postprocess_rows(inputs.table("postprocess.csv")),
        config=yaml.safe_dump(config, sort_keys=False),
    )
    resultfiles.write_text(out, html)
    return out


def scale_frame(scale: pd.DataFrame) -> pd.DataFrame:
    """scale.csv as the report shows it: exact recall and each family's chosen point (parameters, recall@10, R@1
    through it, p50 / p99 ms, queries per second), per method and gallery size."""
    if scale.empty:
        return scale
    shown = ["method", "gallery_size", "t2v_R@1", "t2v_R@10", "bytes_per_video"]
    for family in ("flat", "hnsw", "ivf_flat", "ivf_pq"):
        shown += [c for c in scale.columns if c.startswith(f"{family}_") and not c.endswith("_build_s")]
    return scale[[c for c in shown if c in scale.columns]]


def postprocess_rows(effect: pd.DataFrame) -> list[dict[str, str]] | None:
    """The post-processing variant's effect per method (``postprocess.csv``), each row labelled with the variant's
    tag, with the sentence the report may say: a move only when its paired 95% interval excludes 0."""
    if effect.empty:
        return None
    rows = []
    for _, r in effect.iterrows():
        interval = f"{r['diff']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]"
        resolved = r["ci_low"] > 0 or r["ci_high"] < 0
        rows.append(
            {
                "label": str(r["label"]),
                "cells": [fmt(r["plain"]), fmt(r["post"]), interval, fmt(r["p_post_beats_plain"], 2)],
                "seeds": int(r["seeds"]),
                "queries": int(r["queries"]),
                "sentence": f"{r['label']} moves test t2v R@1 by {interval} points"
                if resolved
                else f"no move resolved by {r['variant']} for {r['method']} with {int(r['seeds'])} seeds ({interval})",
            }
        )
    return rows


def sweep_comparison_frame(compared: pd.DataFrame) -> pd.DataFrame:
    """The frame sweep's paired comparisons as the report shows them: A, B, metric, both means, A - B with its 95%
    interval, P(A > B), seeds, queries and each side's step time (``sweep_comparisons.csv``)."""
    if compared.empty:
        return compared
    interval = [
        f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
        for d, lo, hi in zip(compared["diff"], compared.ci_low, compared.ci_high, strict=True)
    ]
    return pd.DataFrame(
        {
            "A": compared.a,
            "B": compared.b,
            "metric": compared.metric,
            "A %": compared.a_mean,
            "B %": compared.b_mean,
            "A - B [95% CI]": interval,
            "P(A > B)": [fmt(p, 2) for p in compared.p_a_beats_b],
            "seeds": compared.seeds,
            "queries": compared.queries,
            "A step ms": compared.step_ms_a,
            "B step ms": compared.step_ms_b,
            "A / B step time": [fmt(r, 2) for r in compared.step_ratio],
        }
    )


THROUGHPUT_SHOWN = ["method", "frames", "batch_size", "step_ms", "bare_ms", "overhead", "clips_per_s", "loss_share"]


def ablation_rows(summary: pd.DataFrame, config: dict[str, Any]) -> list[dict[str, str]] | None:
    """Variants of one method class side by side (e.g. CRET's), each with the options that distinguish it."""
    if "method_class" not in summary:
        return None
    counts = summary["method_class"].value_counts()
    classes = [c for c in counts.index if counts[c] >= 2 and c != "rerank"]
    if not classes:
        return None
    rows = []
    for _, row in summary[summary["method_class"].isin(classes)].iterrows():
        options = {k: v for k, v in config.get("methods", {}).get(row["method"], {}).items() if k != "class"}
        rows.append(
            {
                "method": row["method"],
                "options": ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults",
                "seeds": int(row["seeds"]),
                "cells": [mean_std(row, c) for c in ("t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MdR")]
                + [mean_std(row, c) for c in pairwise_columns(summary)],
            }
        )
    return rows
