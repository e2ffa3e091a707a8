"""Number formatting shared by the report's tables and its findings (one rule: an en dash for a missing value)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def fmt(value: Any, digits: int = 1) -> str:
    """A number with ``digits`` decimals (thousands separated when large), or an en dash when missing."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(value):
        return "–"
    return f"{value:,.{digits}f}" if abs(value) >= 10_000 else f"{value:.{digits}f}"


def mean_std(summary: pd.Series, column: str, digits: int = 1) -> str:
    """``mean ± std`` over seeds; the mean alone with one seed."""
    mean, std = summary.get(f"{column}_mean"), summary.get(f"{column}_std")
    if mean is None or pd.isna(mean):
        return "–"
    return fmt(mean, digits) if std is None or pd.isna(std) else f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def pairwise_columns(summary: pd.DataFrame) -> list[str]:
    return sorted(c[: -len("_mean")] for c in summary.columns if c.startswith("pairwise_") and c.endswith("_mean"))


def query_subset(row: pd.Series) -> int | None:
    """Captions a slow pair scorer was evaluated on (None: every caption of the test split)."""
    value = row.get("query_subset_mean")
    return None if value is None or pd.isna(value) else int(value)
