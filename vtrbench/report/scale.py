"""Gallery-scale tables from the scale step's files (``vtrbench/scale.py``; no figures here).

* ``scale.csv``: one row per (method, gallery size): exact t2v R@1/R@5/R@10 and MdR of the test captions against the
  test split plus distractors, bytes stored per video, distractor encoding speed, the exact search's seconds; and,
  for a method with index points (an embedding method, or a multi-vector one's candidate search), the chosen point
  of each index family at that size (its test recall@10, R@1 through it, p50/p99 ms, queries/s);
* ``recall_qps.csv``: every index point (method, gallery size, family, build and search parameters) with build
  seconds, bytes per video, val and test recall@10 of the exact top 10, R@1 through the index, p50/p99 ms, batched
  queries per second, ``chosen`` (on val) and ``pareto`` (the ann-benchmarks frontier of its method and gallery
  size: no other point has both higher test recall and more queries per second).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vtrbench import resultfiles
from vtrbench.ann import pareto

GALLERY_REQUIRED = ("method", "gallery_size", "t2v_R@1")
ANN_REQUIRED = ("method", "gallery_size", "family", "test_recall10", "qps", "chosen")
CHOSEN_SHOWN = ["test_recall10", "test_R@1", "p50_ms", "p99_ms", "qps", "build_s", "bytes_per_video"]


def chosen_points(points: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, gallery size): each family's chosen point, its columns prefixed with the family and
    its parameters in ``{family}_point``."""
    chosen = points[points.chosen.astype(bool)]
    wide = []
    for family, rows in chosen.groupby("family", sort=False):
        label = (rows["build"].fillna("").astype(str) + " " + rows["search"].fillna("").astype(str)).str.strip()
        part = rows[["method", "gallery_size", *CHOSEN_SHOWN]]
        part = part.rename(columns={c: f"{family}_{c}" for c in CHOSEN_SHOWN})
        wide.append(part.assign(**{f"{family}_point": label.to_numpy()}))
    out = wide[0]
    for part in wide[1:]:
        out = out.merge(part, on=["method", "gallery_size"], how="outer")
    return out


def scale_tables(gallery_files: list[str | Path], ann_files: list[str | Path], tables: str | Path) -> tuple:
    """Write ``scale.csv`` and ``recall_qps.csv`` into ``tables``; returns both frames."""
    gallery = pd.concat(
        [resultfiles.read_csv(f, GALLERY_REQUIRED, "gallery.csv") for f in gallery_files], ignore_index=True
    )
    points = pd.concat([resultfiles.read_csv(f, ANN_REQUIRED, "ann.csv") for f in ann_files], ignore_index=True)
    points["pareto"] = False
    for _, rows in points.groupby(["method", "gallery_size"], sort=False):
        points.loc[rows.index, "pareto"] = pareto(rows).to_numpy()
    table = gallery
    if points.chosen.astype(bool).any():  # none when only pair methods were scaled: no index holds their galleries
        table = gallery.merge(chosen_points(points), on=["method", "gallery_size"], how="left")
    out = Path(tables)
    resultfiles.write_csv(table, out / "scale.csv")
    resultfiles.write_csv(points, out / "recall_qps.csv")
    return table, points
