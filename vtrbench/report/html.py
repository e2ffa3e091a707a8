"""Render ``results/report.html`` from the aggregated tables only (self-contained: no network to view it)."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml

from vtrbench.train import git_commit

TEMPLATE = "report.html.j2"
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


def mean_std(summary: pd.Series, column: str) -> str:
    mean, std = summary.get(f"{column}_mean"), summary.get(f"{column}_std")
    if mean is None or pd.isna(mean):
        return "–"
    return f"{mean:.1f}" if pd.isna(std) else f"{mean:.1f} ± {std:.1f}"


def headline_rows(summary: pd.DataFrame) -> list[dict[str, Any]]:
    pairwise = sorted(c[: -len("_mean")] for c in summary.columns if c.startswith("pairwise_") and c.endswith("_mean"))
    rows = []
    for _, row in summary.iterrows():
        cells = [mean_std(row, col) for col, _ in HEADLINE] + [mean_std(row, col) for col in pairwise]
        rows.append(
            {
                "method": row["method"],
                "kind": row.get("kind", ""),
                "seeds": int(row["seeds"]),
                "cells": cells,
                "floats": mean_std(row, "gallery_floats_per_video"),
            }
        )
    return rows, [label for _, label in HEADLINE] + [c.removeprefix("pairwise_") for c in pairwise]


def render_report(tables_dir: str | Path, out: str | Path, config: dict[str, Any]) -> None:
    tables_dir, out = Path(tables_dir), Path(out)
    summary = pd.read_csv(tables_dir / "summary.csv")
    rows, columns = headline_rows(summary)
    env = jinja2.Environment(loader=jinja2.PackageLoader("vtrbench.report", "."), autoescape=True)
    html = env.get_template(TEMPLATE).render(
        rows=rows,
        columns=columns,
        config=yaml.safe_dump(config, sort_keys=False),
        dataset=config["dataset"]["name"],
        commit=git_commit(),
        python=platform.python_version(),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html)
    os.replace(tmp, out)
