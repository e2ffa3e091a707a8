"""The report's Findings: plain sentences computed from the aggregated tables, never typed in by hand.

A sentence says "A beats B" only when the paired 95 % interval of ``comparisons.csv`` (hierarchical bootstrap over
seeds and test queries, ``vtrbench.report.compare``) excludes 0; otherwise it says the difference is not resolved
with the seeds there are. A method the budget test found still improving (``still_improving`` in summary.csv) is
named as still improving in the Finding that names it best, and every such method is listed in the budget test's
Finding, so no claim reads "design A is better" when it may be "A learns faster". The frame sweep's Finding reads
``sweep_comparisons.csv`` (the same paired test) and says whether the paper's shape holds: GEES at 4 frames as
accurate as NCE at 16, at a fraction of its step time.
"""

from __future__ import annotations

import pandas as pd

from vtrbench.report.compare import verdict
from vtrbench.report.text import fmt, mean_std, pairwise_columns, query_subset


def _pair(comparisons: pd.DataFrame | None, a: str, b: str, metric: str) -> pd.Series | None:
    """The comparison row of (a, b) on ``metric``, oriented as a vs b (None when it was not computed)."""
    if comparisons is None or comparisons.empty:
        return None
    rows = comparisons[(comparisons.metric == metric)]
    hit = rows[(rows.method_a == a) & (rows.method_b == b)]
    if len(hit):
        return hit.iloc[0]
    hit = rows[(rows.method_a == b) & (rows.method_b == a)]
    if not len(hit):
        return None
    row = hit.iloc[0].copy()
    row["method_a"], row["method_b"] = a, b
    row["diff"], row["ci_low"], row["ci_high"] = -row["diff"], -row["ci_high"], -row["ci_low"]
    return row


def _versus(comparisons: pd.DataFrame | None, a: str, b: str, metric: str) -> str:
    row = _pair(comparisons, a, b, metric)
    return "no paired test available" if row is None else verdict(row)


def _still(summary: pd.DataFrame, method: str) -> str:
    """' (still improving: ...)' for a method the budget test flagged; '' otherwise."""
    if "still_improving" not in summary:
        return ""
    row = summary[summary.method == method]
    if not len(row) or not still_improving(row.iloc[0]):
        return ""
    gain = row["plateau_gain"].iloc[0]
    return f" (still improving at this budget: {fmt(gain)} more val R@1 with a longer run)"


def still_improving(row: pd.Series) -> bool:
    """The budget test's flag of a summary row (False when the method was not tested)."""
    flag = row.get("still_improving")
    return bool(flag) if flag is not None and not pd.isna(flag) and str(flag) != "False" else False


def _best(summary: pd.DataFrame, column: str, comparisons: pd.DataFrame | None, metric: str | None) -> str | None:
    col = f"{column}_mean"
    if col not in summary or summary[col].isna().all():
        return None
    ranked = summary.dropna(subset=[col]).sort_values(col, ascending=False)
    best = ranked.iloc[0]
    text = f"{best['method']} ({mean_std(best, column)}){_still(summary, best['method'])}"
    if len(ranked) < 2:
        return text
    second = ranked.iloc[1]
    if metric is None:
        return f"{text}, then {second['method']} ({mean_std(second, column)}); no paired test for this metric"
    return f"{text}; against {second['method']}: {_versus(comparisons, best['method'], second['method'], metric)}"


def _model_based(summary: pd.DataFrame, latency_ms: dict[str, float], comparisons: pd.DataFrame | None) -> list[str]:
    """Does the model-based side beat the embedding method it starts from, and the best embedding method?"""
    if "kind" not in summary or "t2v_R@1_mean" not in summary:
        return []
    out = []
    embedding = summary[summary["kind"] == "embedding"].sort_values("t2v_R@1_mean", ascending=False)
    best_embedding = embedding.iloc[0]["method"] if len(embedding) else None
    for _, row in summary[summary["kind"] == "rerank"].iterrows():
        first = row.get("rerank_first") if isinstance(row.get("rerank_first"), str) else None
        k, w = row.get("rerank_k_mean"), row.get("rerank_weight_mean")
        head = (
            f"Re-ranking {first}'s top k (k = {fmt(k, 0)}, first-stage weight w = {fmt(w, 2)}, chosen on val) with "
            f"{row.get('rerank_second', 'the pair method')}: text→video R@1 {mean_std(row, 't2v_R@1')}"
        )
        parts = [f"against {first} alone: {_versus(comparisons, row['method'], first, 't2v_R@1')}"] if first else []
        if best_embedding and best_embedding != first:
            parts.append(f"against {best_embedding}: {_versus(comparisons, row['method'], best_embedding, 't2v_R@1')}")
        if first in latency_ms and row["method"] in latency_ms and latency_ms[first] > 0:
            parts.append(f"{fmt(latency_ms[row['method']] / latency_ms[first], 1)}x {first}'s query latency")
        out.append(f"{head}; {'; '.join(parts)}.")
        interaction = [c for c in summary.columns if c.startswith("interaction_pairwise_") and c.endswith("_mean")]
        if interaction:
            accs = ", ".join(f"{c[len('interaction_pairwise_') : -len('_mean')]} {fmt(row[c])}" for c in interaction)
            out.append(f"What the joint model alone knows ({row['method']}, fusion score without any first-stage "
                       f"term, pairwise accuracy %, chance 50): {accs}.")  # fmt: skip
    pair = summary[summary["kind"] == "pair"]
    for _, row in pair.iterrows():
        if best_embedding and best_embedding in latency_ms and row["method"] in latency_ms:
            ratio = latency_ms[row["method"]] / latency_ms[best_embedding]
            subset = query_subset(row)
            captions = f"on {subset} captions" if subset is not None else "on every caption"
            out.append(
                f"{row['method']} alone scores every (query, video) pair: {fmt(ratio, 0 if ratio >= 10 else 1)}x "
                f"{best_embedding}'s query latency at the test gallery (R@1 {mean_std(row, 't2v_R@1')} {captions})."
            )
    return out


SWEEP_CLAIM = "CRET Fig. 5: GEES at 4 frames matches NCE at 16 at about a third of the step time"
ABOUT_A_THIRD = 0.5  # the largest step-time ratio the Finding reads as the claim's "about a third"


def _sweep_verdict(row: pd.Series) -> str:
    """``verdict`` of one sweep_comparisons.csv row (its points named ``gees@4``)."""
    return verdict(pd.Series({**row.to_dict(), "method_a": row["a"], "method_b": row["b"]}))


def sweep_finding(table: pd.DataFrame | None, metric: str = "t2v_R@1") -> str | None:
    """The frame sweep's sentence from ``sweep_comparisons.csv``: does the paper's shape hold here? The pair of
    fewer frames against the most frames (gees@4 vs nce@16): its paired verdict on ``metric`` and the step-time
    ratio. Without such a pair, which equal-frame pairs are resolved. None without the table."""
    if table is None or table.empty or "frames_a" not in table:
        return None
    rows = table[table.metric == metric]
    cross = rows[rows.frames_a != rows.frames_b]
    if not len(cross):
        parts = [f"M = {int(r['frames_a'])}: {_sweep_verdict(r)}" for _, r in rows.iterrows()]
        return f"Frame sweep, equal frames (test {metric.replace('_', ' ')}): {'; '.join(parts)}." if parts else None
    row = cross.iloc[0]
    a, b, ratio = row["a"], row["b"], row["step_ratio"]
    cost = (
        f"at {fmt(ratio, 2)}x its step time ({fmt(row['step_ms_a'], 1)} vs {fmt(row['step_ms_b'], 1)} ms, medians)"
        if pd.notna(ratio)
        else "step times not available"
    )
    if row["ci_high"] < 0:
        shape = f"the paper's shape does not hold here: {b} is more accurate"
    elif pd.isna(ratio) or ratio >= 1:
        shape = f"the paper's shape does not hold here: {a} is not cheaper per step"
    elif row["ci_low"] > 0:
        shape = f"the paper's shape holds here: {a} is more accurate and cheaper per step"
    elif ratio <= ABOUT_A_THIRD:
        shape = f"consistent with the paper's shape ({a} much cheaper per step, no accuracy difference resolved)"
    else:
        shape = (
            f"the cost half of the paper's shape does not hold here: {a}'s step is not about a third of {b}'s "
            "(no accuracy difference resolved)"
        )
    return f"Frame sweep ({SWEEP_CLAIM}): {_sweep_verdict(row)} on test {metric.replace('_', ' ')}, {cost}; {shape}."


def scale_findings(scale: pd.DataFrame | None) -> list[str]:
    """Per method at its largest gallery: exact R@1 against its smallest, what exact search costs there, and (an
    embedding method) the HNSW point chosen on val (its recall of the exact top 10, queries per second against exact
    search's). One seed (the latency seed): no paired test,
    so the numbers are stated, not compared."""
    if scale is None or scale.empty:
        return []
    out = []
    for method, rows in scale.sort_values("gallery_size").groupby("method", sort=False):
        if len(rows) < 2:
            continue
        small, large = rows.iloc[0], rows.iloc[-1]
        seed = f" (seed {int(large['seed'])})" if pd.notna(large.get("seed")) else ""
        text = (
            f"Gallery scale, {method}{seed}: exact t2v R@1 {fmt(small['t2v_R@1'])} at "
            f"{int(small['gallery_size']):,} videos, {fmt(large['t2v_R@1'])} at {int(large['gallery_size']):,}"
        )
        if pd.notna(large.get("exact_s")) and large.get("queries"):
            text += (
                f"; exact search {1000 * large['exact_s'] / large['queries']:,.3g} ms a caption at "
                f"{int(large['gallery_size']):,} ({int(large['exact_threads'])} threads, batched)"
            )
        if pd.notna(large.get("hnsw_qps")) and pd.notna(large.get("flat_qps")):
            text += (
                f"; HNSW ({large['hnsw_point']}, chosen on val) keeps {large['hnsw_test_recall10']:.3f} of the exact "
                f"top 10 at {large['hnsw_qps'] / large['flat_qps']:.0f}x exact search's queries per second "
                f"({large['hnsw_qps']:,.0f} against {large['flat_qps']:,.0f})"
            )
        out.append(text + ".")
    return out


def findings(
    summary: pd.DataFrame,
    latency_ms: dict[str, float],
    frontier: list[str],
    comparisons: pd.DataFrame | None = None,
    sweep_comparisons: pd.DataFrame | None = None,
    scale: pd.DataFrame | None = None,
) -> list[str]:
    """Plain sentences: who is best on what (and whether it is resolved), what it costs, who is still improving."""
    out = []
    if best := _best(summary, "t2v_R@1", comparisons, "t2v_R@1"):
        out.append(f"Best text→video R@1: {best}.")
    subset = summary.apply(query_subset, axis=1).notna() if len(summary) else pd.Series(dtype=bool)
    if best := _best(summary[~subset], "v2t_R@1", comparisons, None):
        left_out = ", ".join(summary.loc[subset, "method"])
        note = f" ({left_out} left out: it ranks each video among a caption subset only)" if left_out else ""
        out.append(f"Best video→text R@1: {best}{note}.")
    for column in pairwise_columns(summary):
        if best := _best(summary, column, comparisons, column):
            kind = column.removeprefix("pairwise_")
            out.append(f"Best at telling the true video from its {kind} twin (pairwise accuracy, chance 50%): {best}.")
    out.extend(_model_based(summary, latency_ms, comparisons))
    if "still_improving" not in summary:
        out.append(
            "Not tested here whether each method is at its plateau at this budget (the budget test is off; "
            "config/plateau.yaml adds it): a gap between methods at equal steps may be a difference in how fast they "
            "learn."
        )
    else:
        flagged = [m for m in summary.method if _still(summary, m)]
        tested = summary["still_improving"].notna().sum()
        out.append(
            f"Budget test ({tested} methods, a longer run on val): "
            + (f"still improving at this budget: {', '.join(flagged)}; rankings among them may change with more steps."
               if flagged else "every tested method is at its plateau at this budget.")
        )  # fmt: skip
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
        out.append("Query latency was not measured in this run (no latency table).")
    if "train_clips_per_s_mean" in summary and summary["train_clips_per_s_mean"].notna().any():
        fastest = summary.sort_values("train_clips_per_s_mean", ascending=False).iloc[0]
        out.append(f"Fastest training: {fastest['method']} ({mean_std(fastest, 'train_clips_per_s', 0)} clips/s).")
    if frontier:
        out.append(f"On the recall–cost Pareto frontier: {', '.join(frontier)}.")
    if sweep := sweep_finding(sweep_comparisons):
        out.append(sweep)
    return out + scale_findings(scale)
