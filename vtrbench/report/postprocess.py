"""How much the test-time post-processing variant moves each method: ``tables/postprocess.csv``.

The variant (``eval.postprocess``, :mod:`vtrbench.postprocess`) rescored the whole test matrix of every trained and
external method (a re-ranker's fused matrix is not rescored: no files, no row); its ranks sit beside the plain ones
in each run folder (``ranks_{tag}.parquet`` next to ``ranks.parquet``). Per method, the table holds
t2v R@1 plain and with the variant and their paired difference with a 95% interval from the suite's hierarchical
bootstrap (:func:`vtrbench.report.compare.compare`: seeds drawn with replacement, seed s of the variant paired with
seed s of the plain run, then the test queries, shared by both). Every row carries the variant's tag (``variant``,
and ``label`` = ``method [tag]``), so a post-processed number is never read as a plain one.

Written by the workflow's ``postprocess`` rule (workflow/rules/report.smk) when ``eval.postprocess`` is on, through

    python -m vtrbench.cli postprocess --variant dsl --methods m1 m1 m2 m2 --runs DIR ... --out postprocess.csv
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vtrbench import resultfiles
from vtrbench.postprocess import TYPES, label
from vtrbench.report.compare import Outcomes, compare

METRIC = "t2v_R@1"
COLUMNS = ["method", "variant", "label", "metric", "plain", "post", "diff", "ci_low", "ci_high",
           "p_post_beats_plain", "seeds", "queries"]  # fmt: skip


def t2v_hits(path: Path) -> pd.Series:
    """Per-query t2v R@1 outcomes (100 = ranked first, else 0) by caption index, from one ranks file."""
    ranks = resultfiles.read_parquet(path, ("direction", "query", "rank"))
    t2v = ranks[ranks.direction == "t2v"]
    return pd.Series((t2v["rank"].to_numpy() == 1).astype(float) * 100, index=t2v["query"].to_numpy())


def outcomes(folders: list[Path], name: str) -> Outcomes:
    """One method's t2v R@1 outcomes over its seeds' ``name`` ranks file, on the queries every seed has."""
    seeds = tuple(int(Path(f).name.removeprefix("seed")) for f in folders)
    per_seed = [t2v_hits(Path(f) / name) for f in folders]
    queries = sorted(set.intersection(*(set(s.index) for s in per_seed)))
    return Outcomes(np.stack([s.reindex(queries).to_numpy() for s in per_seed]), np.asarray(queries), seeds)


def variant_effect(runs: dict[str, list[Path]], tag: str) -> pd.DataFrame:
    """One row per method whose every seed has the variant's ranks: plain and post-processed t2v R@1 (means over
    seeds and queries) and the paired difference post - plain with its 95% interval. A method without the
    variant's files (e.g. a re-ranker, which the variant does not rescore) is left out."""
    rows = []
    for method, folders in runs.items():
        if not all((Path(f) / f"ranks_{tag}.parquet").exists() for f in folders):
            continue
        plain, post = outcomes(folders, "ranks.parquet"), outcomes(folders, f"ranks_{tag}.parquet")
        stats = compare(post, plain)
        rows.append(
            {
                "method": method,
                "variant": tag,
                "label": label(method, tag),
                "metric": METRIC,
                "plain": float(plain.values.mean()),
                "post": float(post.values.mean()),
                "diff": stats["diff"],
                "ci_low": stats["ci_low"],
                "ci_high": stats["ci_high"],
                "p_post_beats_plain": stats["p_a_beats_b"],
                "seeds": stats["seeds"],
                "queries": stats["queries"],
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def write_postprocess(run_dirs: list[str | Path], methods: list[str], tag: str, out: str | Path) -> pd.DataFrame:
    """``postprocess.csv`` from the test run folders; ``methods[i]`` names ``run_dirs[i]`` (one entry per seed)."""
    if tag not in TYPES or tag == "none":
        raise ValueError(f"--variant must name a post-processing variant ({', '.join(TYPES[1:])}), got {tag!r}")
    runs: dict[str, list[Path]] = {}
    for method, folder in zip(methods, run_dirs, strict=True):
        runs.setdefault(method, []).append(Path(folder))
    table = variant_effect(runs, tag)
    resultfiles.write_csv(table, out)
    return table
