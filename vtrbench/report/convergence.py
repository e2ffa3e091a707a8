"""The budget test: is a method at its plateau at the budget it was run with?

With a decaying learning rate the last part of any run looks flat by construction, so the slope of one run says
nothing. The test compares two runs instead: the run the report shows (``steps``) and one with ``factor`` x the
steps and the same schedule shape, both scored on the **val** split (as model selection sees it). The gain in val
t2v R@1 gets a paired 95 % interval (``vtrbench.report.compare.hierarchical_bootstrap``: seeds, then val queries);
a method is **still improving** when the interval lies above 0. Nothing here reads the test split.

``convergence.csv``: method, steps, steps_long, val_R@1, val_R@1_long, gain, ci_low, ci_high, seeds, queries,
still_improving.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vtrbench import resultfiles
from vtrbench.report.compare import hierarchical_bootstrap

COLUMNS = ["method", "steps", "steps_long", "val_R@1", "val_R@1_long", "gain", "ci_low", "ci_high", "seeds"]
COLUMNS += ["queries", "still_improving"]


def budget_test(method: str, short: list[Path], long: list[Path]) -> dict[str, object]:
    """One row of ``convergence.csv`` from the val folders of the shorter and the longer runs (one per seed)."""
    a, b = [resultfiles.read_t2v_hits(f) for f in long], [resultfiles.read_t2v_hits(f) for f in short]
    queries = sorted(set.intersection(*(set(s.index) for s in a + b)))
    xa = np.stack([s.reindex(queries).to_numpy() for s in a])
    xb = np.stack([s.reindex(queries).to_numpy() for s in b])
    gain, low, high = hierarchical_bootstrap(xa, xb, paired_seeds=True)  # the same seeds, longer
    steps = [resultfiles.read_metrics(f / "metrics.json").get("train_steps") for f in (short[0], long[0])]
    return {
        "method": method,
        "steps": steps[0],
        "steps_long": steps[1],
        "val_R@1": float(xb.mean()),
        "val_R@1_long": float(xa.mean()),
        "gain": gain,
        "ci_low": low,
        "ci_high": high,
        "seeds": min(len(a), len(b)),
        "queries": len(queries),
        "still_improving": bool(low > 0),
    }


def convergence(pairs: list[tuple[str, Path, Path]], out: str | Path) -> pd.DataFrame:
    """``convergence.csv`` from (method, val folder of the run, val folder of the longer run), one per seed."""
    by_method: dict[str, tuple[list[Path], list[Path]]] = {}
    for method, short, long in pairs:
        entry = by_method.setdefault(method, ([], []))
        entry[0].append(Path(short))
        entry[1].append(Path(long))
    table = pd.DataFrame([budget_test(m, s, lg) for m, (s, lg) in by_method.items()], columns=COLUMNS)
    resultfiles.write_csv(table, out)
    return table
