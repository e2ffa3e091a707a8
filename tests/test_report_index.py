"""results/report.html: every run root's report, listed from the report.json each report job writes."""

from __future__ import annotations

import json

from vtrbench.cli import main
from vtrbench.report.index import read_summaries, render_index


def _root(results, name, date, methods=("cret",)):
    (results / name).mkdir(parents=True)
    summary = {"run_name": name, "dataset": "synthetic", "protocol": "synthetic: not a published benchmark"}
    summary |= {"commit": "abc1234", "date": date, "methods": list(methods)}
    (results / name / "report.json").write_text(json.dumps(summary))


def test_the_index_links_every_run_root_newest_first(tmp_path):
    results = tmp_path / "results"
    _root(results, "smoke", "2026-12-01 10:00 UTC")
    _root(results, "synthvtt-default", "2026-12-02 09:00 UTC", ("dual_mean", "cret"))
    (results / "no-report-yet").mkdir()  # a root whose report was never rendered: not listed
    (results / "broken").mkdir()
    (results / "broken" / "report.json").write_text("{not json")
    assert main(["report-index", "--results", str(results), "--out", str(results / "report.html")]) == 0
    page = (results / "report.html").read_text()
    assert [r["run_name"] for r in read_summaries(results)][:2] == ["synthvtt-default", "smoke"]
    assert page.index('href="synthvtt-default/report.html"') < page.index('href="smoke/report.html"')
    assert "dual_mean, cret" in page and "abc1234" in page and "no-report-yet" not in page
    assert "unreadable report.json" in page  # said, not silently dropped
    assert render_index(results, tmp_path / "again.html") == 3


def test_the_smoke_run_writes_the_index_and_says_where_the_report_is(smoke_run):
    folder, _, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = (folder / "results" / "report.html").read_text()
    assert 'href="smoke/report.html"' in index
    assert json.loads((folder / "results" / "smoke" / "report.json").read_text())["run_name"] == "smoke"
    assert "this run's report: results/smoke/report.html" in proc.stdout + proc.stderr
