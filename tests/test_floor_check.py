"""The floor check's table: FLOPs counted per query, the floor and the ratio derived from them (no timing asserted)."""

from __future__ import annotations

import pandas as pd
import pytest

from vtrbench.floor_check import main, measure

TINY = {"repeats": 1, "caption_tokens": 6, "frames": 2, "resolution": 16}


def test_table_has_one_row_per_width_with_the_floor_derived_from_the_counted_flops(tmp_path):
    assert main(["--out", str(tmp_path), "--widths", "16", "32", "--videos", "6", "--repeats", "1"]) == 0
    table = pd.read_csv(tmp_path / "floor_check.csv")
    assert list(table["width"]) == [16, 32]
    assert table["flops_per_query"].is_monotonic_increasing  # wider fusion, more FLOPs per pair
    assert list(table["floor_ms"]) == pytest.approx(list(table["flops_per_query"] / table["matmul_gflops"] / 1e6))
    assert list(table["x_floor"]) == pytest.approx(list(table["query_ms"] / table["floor_ms"]))


def test_flops_per_query_are_the_pairs_flops_so_they_grow_linearly_with_the_gallery():
    four, eight = (measure("cross_encoder", 16, n, **TINY)["flops_per_query"] for n in (4, 8))
    assert eight == 2 * four


def test_an_embedding_method_class_is_refused_in_one_line(capsys):
    assert main(["--out", "unused", "--method-class", "dual_encoder", "--widths", "16", "--videos", "2"]) == 2
    assert "is not a pair method" in capsys.readouterr().err
