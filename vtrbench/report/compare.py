"""Paired statistics: is method A better than method B, beyond what the seeds and the queries can carry?

For a metric that is a mean of per-query outcomes (t2v R@1: 1 when the positive ranks first; pairwise accuracy:
1 / 0.5 / 0 per hard-negative comparison), ``X_A`` is a [seeds_A, queries] matrix of outcomes (every seed of A
scored on the same test queries) and likewise ``X_B``. The difference of means is estimated by a **hierarchical
bootstrap** (Bouthillier et al., MLSys 2021; Dror et al., ACL 2018): each resample draws seeds with replacement,
then the queries with replacement, once, shared by A and B (the pairing over test items), and computes
mean(A) - mean(B). Seeds are paired by their number when both methods ran the same seeds: seed s of every method
sees the same data order, and a re-ranker or a warm-started method is built on seed s of its first stage, so the
per-seed difference is what varies; with other seed lists they are drawn independently. The 95 % interval is the
2.5 / 97.5 percentiles of the resampled differences. ``p_a_beats_b`` is the probability that a seed of A scores
above a seed of B on the whole test set (over every pair of seeds; ties count one half).

A comparison is *resolved* only when the interval excludes 0; the report then says "A beats B", otherwise
"no difference resolved with N seeds" (N = the smaller seed count).

``comparisons.csv``: method_a, method_b, metric, diff, ci_low, ci_high, p_a_beats_b, seeds, queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from vtrbench import resultfiles

RESAMPLES = 2000
LEVEL = 0.95
COLUMNS = ["method_a", "method_b", "metric", "diff", "ci_low", "ci_high", "p_a_beats_b", "seeds", "queries"]


@dataclass
class Outcomes:
    """One method's per-query outcomes of one metric: ``values`` [seeds, queries] over the ``queries`` ids, one row
    per seed of ``seeds``."""

    values: np.ndarray
    queries: np.ndarray
    seeds: tuple[int, ...] = ()


def hierarchical_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
    paired_seeds: bool = False,
) -> tuple[float, float, float]:
    """(diff, ci_low, ci_high) of mean(a) - mean(b), ``a`` [seeds_a, n] and ``b`` [seeds_b, n] paired over n (and
    over seeds, row i with row i, when ``paired_seeds``).

    >>> a = np.ones((3, 50)); b = np.zeros((3, 50))
    >>> hierarchical_bootstrap(a, b, resamples=200)
    (1.0, 1.0, 1.0)
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"outcomes must be [seeds, queries] over the same queries, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)  # [R, n] query weights
    seeds_a = rng.integers(0, a.shape[0], size=(resamples, a.shape[0]))
    if paired_seeds:
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"paired seeds need as many seeds for both, got {a.shape[0]} and {b.shape[0]}")
        seeds_b = seeds_a
    else:
        seeds_b = rng.integers(0, b.shape[0], size=(resamples, b.shape[0]))
    per_a = (counts @ a.T) / n  # [R, seeds_a]: each seed's mean on the resampled queries
    per_b = (counts @ b.T) / n
    mean_a = np.take_along_axis(per_a, seeds_a, axis=1).mean(1)
    mean_b = np.take_along_axis(per_b, seeds_b, axis=1).mean(1)
    diffs = mean_a - mean_b
    tail = 100 * (1 - level) / 2
    return float(a.mean() - b.mean()), float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))


def p_beats(a: np.ndarray, b: np.ndarray) -> float:
    """P(a seed of A scores above a seed of B) on the whole test set, over every pair of seeds; ties count 1/2."""
    ma, mb = a.mean(1)[:, None], b.mean(1)[None, :]
    return float(((ma > mb) + 0.5 * (ma == mb)).mean())


def compare(a: Outcomes, b: Outcomes, seed: int = 0) -> dict[str, float]:
    """The comparison of two methods on the queries both were scored on (``paired_seeds``: whether seed s of A was
    drawn with seed s of B, i.e. both ran the same seed list)."""
    common, ia, ib = np.intersect1d(a.queries, b.queries, return_indices=True)
    xa, xb = a.values[:, ia], b.values[:, ib]
    paired = bool(a.seeds) and a.seeds == b.seeds
    diff, low, high = hierarchical_bootstrap(xa, xb, seed=seed, paired_seeds=paired)
    seeds = min(xa.shape[0], xb.shape[0])
    return {"diff": diff, "ci_low": low, "ci_high": high, "p_a_beats_b": p_beats(xa, xb), "seeds": seeds,
            "queries": len(common), "paired_seeds": paired}  # fmt: skip


def verdict(row: pd.Series, unit: str = "") -> str:
    """The sentence a Finding may say about one comparison (resolved only when the interval excludes 0)."""
    a, b = row["method_a"], row["method_b"]
    interval = f"{row['diff']:+.1f}{unit} [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}]"
    if row["ci_low"] > 0:
        return f"{a} beats {b} by {interval}"
    if row["ci_high"] < 0:
        return f"{b} beats {a} by {-row['diff']:.1f}{unit} [{-row['ci_high']:+.1f}, {-row['ci_low']:+.1f}]"
    return f"no difference resolved between {a} and {b} with {int(row['seeds'])} seeds ({interval})"


# ----- reading the runs' per-query files ----------------------------------------------------------------------------


def run_outcomes(folder: Path) -> dict[str, pd.Series]:
    """metric -> outcome per query id, from one run folder's ranks.parquet (t2v rows) and pairwise.parquet."""
    out = {"t2v_R@1": resultfiles.read_t2v_hits(folder)}
    pairwise = resultfiles.read_pairwise(folder)
    if pairwise is not None and len(pairwise):
        for kind, rows in pairwise.groupby("negative"):
            # a query compares against each negative of its type once per direction: average them per query
            out[f"pairwise_{kind}"] = rows.groupby("query")["outcome"].mean() * 100
    return out


def method_outcomes(runs: dict[str, list[Path]]) -> dict[str, dict[str, Outcomes]]:
    """method -> metric -> Outcomes over that method's seeds (the run folders given)."""
    out: dict[str, dict[str, Outcomes]] = {}
    for method, folders in runs.items():
        per_seed = []
        seeds = tuple(int(Path(f).name.removeprefix("seed")) for f in folders)
        for folder in folders:
            per_seed.append(run_outcomes(Path(folder)))
        metrics = set.intersection(*(set(s) for s in per_seed))
        out[method] = {}
        for metric in sorted(metrics):
            queries = sorted(set.intersection(*(set(s[metric].index) for s in per_seed)))
            values = np.stack([s[metric].reindex(queries).to_numpy() for s in per_seed])
            out[method][metric] = Outcomes(values, np.asarray(queries), seeds)
    return out


def comparisons(outcomes: dict[str, dict[str, Outcomes]]) -> pd.DataFrame:
    """Every pair of methods on every metric both have (method_a listed before method_b in config order)."""
    rows = []
    for a, b in combinations(outcomes, 2):
        for metric in sorted(set(outcomes[a]) & set(outcomes[b])):
            rows.append(
                {"method_a": a, "method_b": b, "metric": metric, **compare(outcomes[a][metric], outcomes[b][metric])}
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def write_comparisons(run_dirs: list[str | Path], methods: list[str], out: str | Path) -> pd.DataFrame:
    """``comparisons.csv`` from the runs' folders; ``methods[i]`` names ``run_dirs[i]`` (one entry per seed). No run
    (only external methods, which write no per-query ranks): an empty table with the columns."""
    runs: dict[str, list[Path]] = {}
    for method, folder in zip(methods, run_dirs, strict=True):
        runs.setdefault(method, []).append(Path(folder))
    table = comparisons(method_outcomes(runs))
    resultfiles.write_csv(table, out)
    return table
