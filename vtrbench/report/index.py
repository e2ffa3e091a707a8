"""``results/report.html``: one page listing every run root under ``results/``, so there is one place to start.

Each report job writes ``results/{run_name}/report.json`` (run name, dataset and protocol, commit, date, methods)
beside its report; the index job reads every such file under ``results/`` and links each run's ``report.html``.
A root without ``report.json`` (no report rendered yet) is not listed.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from vtrbench import resultfiles
from vtrbench.report.html import protocol_key
from vtrbench.report.provenance import commits


def run_summary(config: dict[str, Any], runs: pd.DataFrame) -> dict[str, Any]:
    """What the index shows of one run root."""
    return {
        "run_name": config["run_name"],
        "dataset": config["dataset"]["name"],
        "protocol": protocol_key(config),
        "commit": commits(runs),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "methods": list(config["methods"]),
    }


def read_summaries(results: Path) -> list[dict[str, Any]]:
    """Every ``results/*/report.json``, newest first (an unreadable one is listed as such, not skipped)."""
    rows = []
    for path in sorted(Path(results).glob("*/report.json")):
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            rows.append({"run_name": path.parent.name, "date": "", "error": f"unreadable {path.name}: {err}"})
    return sorted(rows, key=lambda r: r.get("date", ""), reverse=True)


def render_index(results: str | Path, out: str | Path) -> int:
    """Write the index page ``out`` for the run roots under ``results``; returns how many it lists."""
    rows = read_summaries(Path(results))
    cells = []
    for row in rows:
        name = html.escape(str(row["run_name"]))
        link = f'<a href="{name}/report.html">{name}</a>'
        if "error" in row:
            cells.append(f"<tr><td>{link}</td><td colspan=5>{html.escape(row['error'])}</td></tr>")
            continue
        values = [row["dataset"], row["protocol"], row["commit"], row["date"], ", ".join(row["methods"])]
        cells.append(f"<tr><td>{link}</td>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in values) + "</tr>")
    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>vtrbench: every run</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left;"
        "border-bottom:1px solid #ddd;vertical-align:top}</style></head><body>"
        f"<h1>vtrbench: every run under {html.escape(str(results))}/</h1>"
        "<p>One row per run root (a config's <code>run_name</code>), newest report first.</p>"
        "<table><thead><tr><th>run</th><th>dataset</th><th>protocol</th><th>commit</th><th>report written</th>"
        "<th>methods</th></tr></thead><tbody>" + "".join(cells) + "</tbody></table></body></html>\n"
    )
    resultfiles.write_text(out, page)
    return len(rows)
