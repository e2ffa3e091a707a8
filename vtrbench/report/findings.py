"""The report's Findings: plain sentences computed from the aggregated tables, never typed in by hand."""

from __future__ import annotations

import math

import pandas as pd

from vtrbench.report.text import fmt, mean_std, pairwise_columns, query_subset


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
    subset = summary.apply(query_subset, axis=1).notna() if len(summary) else pd.Series(dtype=bool)
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
