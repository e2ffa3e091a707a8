"""The HTML report: rendered from hand-made result files (every optional section) and from the smoke run."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

from tests.conftest import REPO, run_folder, snakemake_env
from vtrbench.report import html as report_html
from vtrbench.report import plots, provenance
from vtrbench.report.scale import scale_tables
from vtrbench.report.sweep import COMPARISON_COLUMNS

METHODS = ["dual_mean", "cret", "cret_global"]
DESIGNS = {"dual_mean": "single vector", "cret": "centres", "cret_global": "single vector"}


def make_results(root: Path, dataset: str = "synthetic", incomplete: bool = False) -> Path:
    """A small results root: the tables every optional step writes, a manifest and a benchmark file."""
    tables = root / "tables"
    tables.mkdir(parents=True)
    runs, curves, losses = [], [], []
    for i, method in enumerate(METHODS):
        for seed in (0, 1):
            runs.append(
                {
                    "method": method,
                    "method_class": "dual_encoder" if method.startswith("dual") else "cret",
                    "kind": "embedding",
                    "design": DESIGNS[method],
                    "seed": seed,
                    "t2v_R@1": 20.0 + 10 * i + seed,
                    "t2v_R@5": 50.0 + i,
                    "t2v_R@10": 70.0 + i,
                    "t2v_MdR": 5.0 - i,
                    "t2v_MnR": 12.0 - i,
                    "v2t_R@1": 18.0 + i,
                    "v2t_R@5": 48.0,
                    "v2t_R@10": 66.0,
                    "v2t_MdR": 6.0,
                    "v2t_MnR": 14.0,
                    "pairwise_reversal": 50.0 + 10 * i,
                    "pairwise_colour_swap": 80.0 + 5.5 * i,
                    "pairwise_action_swap": 70.0 + 7.25 * i,
                    "gallery_floats_per_video": 64 * (i + 1),
                    "train_clips_per_s": 300.0 - 50 * i + seed,
                    "commit": "abc1234",
                }
            )
            steps = [10, 20, 30]
            curves.append(
                pd.DataFrame({"step": steps, "train_seconds": [1.0 + i, 2.0 + i, 3.0 + i], "val": [1, 2, 3]})
                .assign(**{"t2v_R@1": [5, 9, 12]})
                .assign(method=method, seed=seed)
            )
            losses.append(pd.DataFrame({"step": steps, "loss": [3.0, 2.0, 1.5]}).assign(method=method, seed=seed))
    from vtrbench.report.aggregate import summarize_runs

    pd.DataFrame(runs).to_csv(tables / "runs.csv", index=False)
    summarize_runs(pd.DataFrame(runs)).to_csv(tables / "summary.csv", index=False)
    pd.concat(curves).to_csv(tables / "curves.csv", index=False)
    pd.concat(losses).to_csv(tables / "train_curves.csv", index=False)
    manifest = {"dataset": dataset, "fingerprint": "abc123", "incomplete": incomplete, "problems": 3 * incomplete}
    manifest["counts"] = {"test": {"videos": 100, "captions": 100}}
    (root / "data").mkdir(parents=True)
    (root / "data" / "manifest.json").write_text(json.dumps(manifest))
    bench = root / "benchmarks" / "train"
    bench.mkdir(parents=True)
    (bench / "cret-0123abcd-seed0.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n12.5\t0:00:12\t300.1\t20.0\n")
    online = [
        {"method": m, "gallery_size": size, "backend": "faiss", "k": 0, "search_ms": ms, "ms_per_query": 1.0 + i + ms}
        | {"extrapolated": False}
        for i, m in enumerate(METHODS)
        for size, ms in ((100, 0.1), (10_000, 0.5))
    ]
    pd.DataFrame(online).to_csv(tables / "latency_vs_gallery.csv", index=False)
    recall = [
        {"method": m, "kind": "embedding", "design": DESIGNS[m], "t2v_R@1_mean": 20.0 + 10 * i, "query_ms": 1.1 + i}
        | {"pareto": i == 0}
        for i, m in enumerate(METHODS)
    ]
    pd.DataFrame(recall).to_csv(tables / "recall_latency.csv", index=False)
    gallery = pd.DataFrame(
        [
            {"method": m, "seed": 0, "gallery_size": n, "t2v_R@1": r - 10 * i}
            | {"queries": 20, "exact_s": n / 1000, "exact_threads": 2}
            for i, m in enumerate(METHODS[:3])  # the third: a pair method, exact search only (no index rows)
            for n, r in ((100, 50.0), (10_000, 30.0))
        ]
    )
    points = pd.DataFrame(
        [
            {"method": m, "gallery_size": n, "family": f, "build": b, "search": e, "test_recall10": r, "qps": q}
            | {"chosen": c, "test_R@1": 20.0, "p50_ms": 1000 / q, "p99_ms": 2000 / q, "build_s": 1.0}
            | {"bytes_per_video": 300.0}
            for m in METHODS[:2]
            for n in (100, 10_000)
            for f, b, e, r, q, c in (
                ("flat", "", "", 1.0, 100.0, True),
                ("hnsw", "M=32", "ef_search=64", 0.97, 2000.0, True),
                ("hnsw", "M=32", "ef_search=16", 0.80, 5000.0, False),
            )
        ]
    )
    gallery.to_csv(root / "gallery.csv", index=False)
    points.to_csv(root / "ann.csv", index=False)
    scale_tables([root / "gallery.csv"], [root / "ann.csv"], tables)
    pd.DataFrame(
        [
            {"method": m, "frames": f, "batch_size": 32, "step_ms": 10.0 * f * (i + 1), "overhead": 1.02}
            for i, m in enumerate(METHODS)
            for f in (2, 4, 8)
        ]
    ).to_csv(tables / "throughput.csv", index=False)
    pd.DataFrame(
        [{"loss": loss, "frames": f, "batch_size": 32, "ms": 0.1 * f} for loss in ("gees", "nce") for f in (2, 4, 8)]
    ).to_csv(tables / "loss_throughput.csv", index=False)
    pd.DataFrame(
        [
            {
                "frames": f,
                "loss": loss,
                "seeds": 2,
                "t2v_R@5_mean": 40.0 + f + (loss == "gees"),
                "t2v_R@5_std": 1.0,
                "t2v_R@1_mean": 20.0,
                "t2v_R@1_std": 0.5,
                "step_ms": 5.0 * f,
                "clips_per_s": 100.0 / f,
            }
            for f in (2, 4, 8)
            for loss in ("gees", "nce")
        ]
    ).to_csv(tables / "frame_sweep.csv", index=False)
    pd.DataFrame(
        [  # gees@4 beats nce@4; gees@4 vs nce@8 (the paper's claim, 4 vs the most frames) not resolved
            ("gees@4", "nce@4", "gees", 4, "nce", 4, "t2v_R@1", 25.0, 20.0, 5.0, 1.0, 9.0, 1.0, 2, True, 100, 20, 20),
            ("gees@4", "nce@8", "gees", 4, "nce", 8, "t2v_R@1", 25.0, 24.0, 1.0, -2.0, 4.0, 0.5, 2, True, 100, 20, 40),
        ],
        columns=[c for c in COMPARISON_COLUMNS if c != "step_ratio"],
    ).assign(step_ratio=lambda t: t.step_ms_a / t.step_ms_b).to_csv(tables / "sweep_comparisons.csv", index=False)
    pd.DataFrame(
        [  # cret_global vs cret resolved, dual_mean vs cret not
            ("cret_global", "cret", "t2v_R@1", 10.0, 5.0, 15.0, 1.0, 2, 100),
            ("dual_mean", "cret", "t2v_R@1", -10.0, -21.0, 1.0, 0.0, 2, 100),
            ("dual_mean", "cret_global", "t2v_R@1", -20.0, -30.0, -10.0, 0.0, 2, 100),
        ],
        columns=["method_a", "method_b", "metric", "diff", "ci_low", "ci_high", "p_a_beats_b", "seeds", "queries"],
    ).to_csv(tables / "comparisons.csv", index=False)
    return root


def _config(dataset: str = "synthetic") -> dict:
    methods = {
        "dual_mean": {"class": "dual_encoder", "pooling": "mean"},
        "cret": {"class": "cret", "global_loss": "gees"},
        "cret_global": {"class": "cret", "global_loss": "gees", "ccm": False},
    }
    data = {"name": dataset, "msrvtt_train": "7k"}
    return {"run_name": "test", "dataset": data, "methods": methods, "train": {"batch_size": 32}, "seeds": [0, 1]}


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def _inputs(results: Path, skip: tuple[str, ...] = ()) -> report_html.ReportInputs:
    tables = [p for p in sorted((results / "tables").glob("*.csv")) if p.name not in skip]
    return report_html.ReportInputs.from_paths(
        tables,
        manifest=results / "data" / "manifest.json",
        ledger=REPO / "data" / "published.csv",
        benchmarks=sorted((results / "benchmarks").glob("**/*.tsv")),
    )


def render(tmp_path: Path, dataset: str = "synthetic", incomplete: bool = False) -> tuple[str, Path]:
    results = make_results(tmp_path / "results", dataset, incomplete)
    out = report_html.render_report(_inputs(results), results / "report.html", _config(dataset), results / "figures")
    return out.read_text(), results


def test_every_section_from_hand_made_tables(tmp_path):
    html, results = render(tmp_path)
    summary = pd.read_csv(results / "tables" / "summary.csv")
    for method in METHODS:
        assert method in html
    for _, row in summary.iterrows():
        assert f"{row['t2v_R@1_mean']:.1f} ± {row['t2v_R@1_std']:.1f}" in html
    assert "not run" not in html.replace("not comparable", "").replace("No re-ranker", "")
    images = _images(html)
    figures = ["recall_vs_cost", "latency_vs_gallery", "frame_sweep", "step_time", "training_curves", "comparisons"]
    figures += ["recall_vs_gallery", "recall_qps"]
    assert len(images) == len(figures)
    for data in images:
        assert mpimg.imread(io.BytesIO(data), format="png").ndim == 3
    assert sorted(p.name for p in (results / "figures").glob("*.png")) == sorted(f"{f}.png" for f in figures)
    # no network needed to view it: nothing is loaded from another host
    assert not re.search(r'(src|href)="(https?:)?//', html)
    # findings: the best method, and its gap only as the paired interval resolves it; the tradeoff table's latency
    assert "Best text→video R@1: cret_global (40.5 ± 0.7); against cret: cret_global beats cret by +10.0" in html
    assert "combined std" not in html
    assert "Not tested here whether each method is at its plateau" in html  # no budget test in these tables
    assert "Cheapest per text query: dual_mean (1.100 ms" in html
    # the frame sweep's paired tests: the table, and the Finding on the pair of fewer against the most frames
    assert 'id="sweep-comparisons-table"' in html and "+5.0 [+1.0, +9.0]" in html
    claim = "no difference resolved between gees@4 and nce@8 with 2 seeds (+1.0 [-2.0, +4.0]) on test t2v R@1"
    assert html.count(f"{claim}, at 0.50x its step time (20.0 vs 40.0 ms, medians)") == 2  # Findings, sweep section
    assert "consistent with the paper&#39;s shape" in html
    # provenance: fingerprint, the runs' commit, wall time per step from the benchmark files, package versions
    assert "abc123" in html and "abc1234" in html and "12.5" in html and "seaborn" in html
    # synthetic data: every published row is marked not comparable, none comparable; the ledger is collapsed
    assert 'id="not-comparable"' in html and ">comparable<" not in html
    assert '<details id="ledger-details">' in html
    assert "CRET Table 7" in html and "[S]" in html and "[V]" in html
    assert 'id="incomplete"' not in html
    # the latency table is methods x gallery sizes, sizes printed as integers
    assert "10,000 videos" in html and "10,000.000" not in html
    # gallery scale: per method and size, exact recall beside each family's point chosen on val
    section = html[html.index('id="scale-table"') :].split("</table>")[0]
    assert "<th>hnsw point</th>" in section and "<td>M=32 ef_search=64</td>" in section
    assert section.count("<tr>") == 1 + 6  # the header and 3 methods x 2 gallery sizes
    assert (
        "Gallery scale, dual_mean (seed 0): exact t2v R@1 50.0 at 100 videos, 30.0 at 10,000; exact search 500 ms "
        "a caption at 10,000 (2 threads, batched); HNSW (M=32 "
        "ef_search=64, chosen on val) keeps 0.970 of the exact top 10 at 20x exact search&#39;s queries per second "
        "(2,000 against 100)"
    ) in html
    assert (
        "cret_global (seed 0): exact t2v R@1 30.0 at 100 videos, 10.0 at 10,000; exact search 500 ms a caption at "
        "10,000 (2 threads, batched)." in html
    )  # a pair method: no index point to report
    # every table of the recall-latency map names each method's design class beside it
    for table_id in ("recall-latency", "latency-table", "full-table"):
        section = html[html.index(f'id="{table_id}"') :].split("</table>")[0]
        assert "<th>design</th>" in section, table_id
        for method, design in DESIGNS.items():
            assert re.search(rf"<td>{method}</td>(<td>embedding</td>)?<td>{design}</td>", section), (table_id, method)


def test_recall_against_cost_marks_each_design_class_in_its_legend():
    points = pd.DataFrame(
        {
            "method": ["dual", "cret", "xpool", "cross", "rerank", "mine"],
            "design": ["single vector", "centres", "query-conditioned", "cross-encoder", "two-stage", None],
            "query_ms": [1.0, 1.5, 8.0, 40.0, 6.0, 2.0],
            "t2v_R@1": [20.0, 24.0, 26.0, 30.0, 31.0, 10.0],
            "pareto": [True, True, False, False, True, False],
        }
    )
    fig = plots.recall_vs_cost(points, "query_ms", "ms", plots.method_palette(points["method"].tolist()))
    legend = fig.axes[0].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [
        "single vector", "centres", "query-conditioned", "cross-encoder", "two-stage", "unspecified", "Pareto frontier"
    ]  # fmt: skip
    assert legend.get_title().get_text() == "design (colour: method)"
    markers = {line.get_label(): line.get_marker() for line in fig.axes[0].get_lines() if line.get_label() in labels}
    assert len(set(markers.values()) - {"None"}) == 6  # one marker per design class
    plots.png_bytes(fig)


def test_real_protocol_shows_comparable_rows_and_incomplete_banner(tmp_path):
    html, _ = render(tmp_path, dataset="msrvtt", incomplete=True)
    assert 'id="incomplete"' in html
    assert 'id="not-comparable"' not in html
    assert html.count('<tr class="comparable">') >= 11  # CRET Table 1 (11 rows) is on msrvtt-1kA-7k-train
    assert '<details id="ledger-details" open>' in html  # a real-data run shows the ledger expanded


def test_missing_optional_tables_say_not_run(tmp_path):
    results = make_results(tmp_path / "results")
    skip = ("latency_vs_gallery.csv", "recall_latency.csv", "throughput.csv", "loss_throughput.csv", "frame_sweep.csv")
    skip += ("scale.csv", "recall_qps.csv")
    inputs = _inputs(results, skip)  # a stale file on disk is not read when the rule does not give it
    html = report_html.render_report(inputs, results / "r.html", _config(), results / "figures").read_text()
    assert "Frame sweep not run" in html and "no latency table" in html and "scale.enabled is false" in html
    assert len(_images(html)) == 3  # recall vs gallery memory, training curves, comparisons


def test_ledger_path_is_shown_relative_to_the_project(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    html, _ = render(tmp_path)
    assert "data/published.csv" in html and str(REPO) not in html


def test_integer_columns_print_as_integers():
    frame = pd.DataFrame({"method": ["a"], "frames": [2.0], "gallery_size": [10000.0], "step_ms": [3.14159]})
    cells = report_html.table(frame)["rows"][0]
    assert cells == ["a", "2", "10,000", "3.1"]


def test_ledger_has_provenance_fields():
    ledger = pd.read_csv(REPO / "data" / "published.csv")
    assert {"source", "backbone", "split", "comparable_to", "tag", "uses_test_stats", "selection"} <= set(ledger)
    assert set(ledger["tag"]) <= {"V", "S", "U"}
    assert ledger["id"].is_unique
    cret = ledger[ledger["id"] == "cret-t1-cret"].iloc[0]
    assert (cret["R@1"], cret["R@5"], cret["R@10"], cret["MdR"]) == (23.9, 50.8, 63.4, 5.0)
    assert set(ledger["source_table"]) >= {"CRET Table 1", "CRET Table 7", "CRET Fig. 5a", "CLIP4Clip", "X-Pool"}


def test_pareto_and_palette():
    from vtrbench.report.tradeoff import pareto_flags

    points = pd.DataFrame({"method": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "y": [5.0, 4.0, 9.0]})
    assert points["method"][pareto_flags(points, "x", "y")].tolist() == ["a", "c"]
    palette = plots.method_palette(["a", "b"])
    assert palette["a"] != palette["b"]


def test_benchmark_times_reads_snakemake_tsv(tmp_path):
    make_results(tmp_path)
    bench = provenance.benchmark_times(sorted((tmp_path / "benchmarks").glob("**/*.tsv")))
    assert bench.loc[0, "rule"] == "train" and bench.loc[0, "seconds"] == 12.5
    assert provenance.benchmark_times([]).empty


@pytest.mark.slow
def test_report_from_smoke_run(smoke_run):
    folder, _, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (folder / "results" / "smoke" / "report.html").read_text()
    summary = pd.read_csv(folder / "results" / "smoke" / "tables" / "summary.csv")
    for _, row in summary.iterrows():
        subset = not pd.isna(row.get("query_subset_mean"))  # the smoke cross_encoder scores 4 captions
        headline_cell = f'<td title="{row["kind"]}">{row["method"]}{"<sup>*</sup>" if subset else ""}</td>'
        assert headline_cell in html, headline_cell
        metrics = json.loads((run_folder(folder, "smoke", row["method"]) / "metrics.json").read_text())
        for direction in ("t2v", "v2t"):
            for key in ("R@1", "R@5", "R@10", "MdR", "MnR"):
                assert f"<td>{metrics[direction][key]:.1f}</td>" in html, (row["method"], direction, key)
    images = _images(html)
    assert images and all(mpimg.imread(io.BytesIO(d), format="png").size for d in images)
    assert "Wall time per workflow step" in html and 'id="steps"' in html  # benchmark files were read
    assert 'id="subset-note"' in html and "fixed subset of\n4 test captions" in html


@pytest.mark.slow
def test_snakemake_report_after_run(smoke_run):
    folder, cmd, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    target = folder / "results" / "smoke" / "snakemake-report.html"
    done = subprocess.run(
        [*cmd, "--report", str(target)], cwd=folder, env=snakemake_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert target.stat().st_size > 10_000


def _embedding_rerank_cross_summary(**columns: list) -> pd.DataFrame:
    """An embedding method, a re-ranker of its top k and the pair method alone, plus ``columns``."""
    return pd.DataFrame(
        {
            "method": ["dual", "rerank", "cross"],
            "kind": ["embedding", "rerank", "pair"],
            "seeds": [3, 3, 3],
            "t2v_R@1_mean": [40.0, 52.0, 30.0],
            "t2v_R@1_std": [1.0, 1.5, 2.0],
            "rerank_first": [None, "dual", None],
            "rerank_second": [None, "cross", None],
            "rerank_k_mean": [None, 10.0, None],
            "rerank_weight_mean": [None, 0.5, None],
            "interaction_pairwise_colour_swap_mean": [None, 88.0, None],
            **columns,
        }
    )


COMPARED = pd.DataFrame(
    [
        ("rerank", "dual", "t2v_R@1", 12.0, 8.0, 16.0, 1.0, 3, 1000),
        ("dual", "cross", "t2v_R@1", 10, -1, 20, 0.7, 3, 100),
    ],
    columns=["method_a", "method_b", "metric", "diff", "ci_low", "ci_high", "p_a_beats_b", "seeds", "queries"],
)


def test_findings_say_what_the_model_based_side_buys_with_the_paired_interval():
    from vtrbench.report.findings import findings

    latency = {"dual": 1.0, "rerank": 5.0, "cross": 250.0}
    text = " ".join(findings(_embedding_rerank_cross_summary(), latency, [], COMPARED))
    assert "Re-ranking dual's top k (k = 10, first-stage weight w = 0.50, chosen on val) with cross" in text
    assert (
        "against dual alone: rerank beats dual by +12.0 [+8.0, +16.0]" in text and "5.0x dual's query latency" in text
    )
    assert "What the joint model alone knows (rerank" in text and "colour_swap 88.0" in text
    assert "cross alone scores every (query, video) pair: 250x dual's query latency" in text
    assert "(R@1 30.0 ± 2.0 on every caption)" in text  # no query_subset column: every caption was scored
    subset = _embedding_rerank_cross_summary(query_subset_mean=[None, None, 100.0])
    fast = " ".join(findings(subset, {**latency, "cross": 2.5}, [], COMPARED))
    assert "pair: 2.5x dual's query latency at the test gallery (R@1 30.0 ± 2.0 on 100 captions)" in fast


def test_findings_call_an_interval_that_holds_zero_unresolved_in_either_orientation():
    """Stored as dual vs rerank (-6 [-14, +2]): read as rerank vs dual, +6 [-2, +14], and not called a win."""
    from vtrbench.report.findings import findings

    unresolved = COMPARED.iloc[:1].assign(method_a="dual", method_b="rerank", diff=-6.0, ci_low=-14.0, ci_high=2.0)
    sentences = findings(_embedding_rerank_cross_summary(), {"dual": 1.0, "rerank": 5.0}, [], unresolved)
    verdict = "no difference resolved between rerank and dual with 3 seeds (+6.0 [-2.0, +14.0])"
    assert f"Best text→video R@1: rerank (52.0 ± 1.5); against dual: {verdict}." in sentences
    assert any(s.startswith("Re-ranking dual's top k") and f"against dual alone: {verdict};" in s for s in sentences)
    assert not any("beats" in s for s in sentences)


def test_findings_name_a_method_that_is_still_improving():
    from vtrbench.report.findings import findings

    summary = _embedding_rerank_cross_summary(still_improving=[True, False, None], plateau_gain=[6.5, 0.1, None])
    text = " ".join(findings(summary, {}, [], COMPARED))
    assert "Best text→video R@1: rerank (52.0 ± 1.5)" in text
    assert "dual (40.0 ± 1.0) (still improving" not in text  # dual is not the best: named in the budget sentence
    assert "still improving at this budget: dual; rankings among them may change" in text
    from vtrbench.report.html import headline_rows

    rows, _ = headline_rows(summary)
    assert [r["still"] for r in rows] == [True, False, False]


def test_subset_evaluated_method_is_marked_and_left_out_of_the_v2t_finding():
    """A pair scorer scored on 100 captions ranks each video among 100 captions only: never 'best video->text'."""
    from vtrbench.report.findings import findings
    from vtrbench.report.html import headline_rows

    summary = _embedding_rerank_cross_summary(
        **{"v2t_R@1_mean": [41.0, 40.0, 84.0], "v2t_R@1_std": [1.0, 1.0, 2.0], "query_subset_mean": [None, None, 100.0]}
    )
    text = " ".join(findings(summary, {}, []))
    assert (
        "Best video→text R@1: dual (41.0 ± 1.0)" in text
        and "(cross left out: it ranks each video among a caption" in text
    )
    rows, _ = headline_rows(summary)
    assert [r["subset"] for r in rows] == [None, None, 100]
