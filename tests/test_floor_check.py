"""The floor check's table: FLOPs counted per query, the floor and the ratio derived from them (no timing asserted)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from vtrbench import floor_check
from vtrbench.floor_check import main, measure

TINY = {"repeats": 1, "caption_tokens": 6, "frames": 2, "resolution": 16}


class OneMatmul:
    """A stand-in pair scorer whose cost is known by hand: one [1, width] x [width, n] product, 2 * width * n FLOPs."""

    def __init__(self, width: int):
        self.width = width

    def encode_videos(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"video": torch.ones(clips.shape[0], self.width)}

    def encode_texts(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"text": torch.ones(ids.shape[0], self.width)}

    def score_candidates(self, queries, gallery, candidates: torch.Tensor) -> torch.Tensor:
        return queries["text"] @ gallery["video"][candidates[0]].T

    def score(self, queries, gallery) -> torch.Tensor:
        return queries["text"] @ gallery["video"].T


def test_table_rows_of_a_scorer_with_hand_counted_flops(tmp_path, monkeypatch):
    """2 * 16 * 4 = 128 FLOPs at 0.5 GFLOP/s: a floor of 2.56e-4 ms; a median call of 2 ms is 7812.5x that."""
    monkeypatch.setattr(floor_check, "_method", lambda method_class, width, heads, resolution: OneMatmul(width))
    monkeypatch.setattr(floor_check, "matmul_gflops", lambda device: 0.5)
    monkeypatch.setattr(floor_check, "time_calls", lambda call, warmup, calls, device: [0.003, 0.001, 0.002])
    assert main(["--out", str(tmp_path), "--widths", "16", "32", "--videos", "4", "--repeats", "3"]) == 0
    table = pd.read_csv(tmp_path / "floor_check.csv")
    assert list(table["width"]) == [16, 32] and list(table["videos"]) == [4, 4]
    assert list(table["flops_per_query"]) == [128, 256]
    assert list(table["matmul_gflops"]) == [0.5, 0.5]
    assert list(table["floor_ms"]) == pytest.approx([2.56e-4, 5.12e-4])
    assert list(table["query_ms"]) == pytest.approx([2.0, 2.0])
    assert list(table["x_floor"]) == pytest.approx([7812.5, 3906.25])


def test_table_of_the_real_scorer_has_one_row_per_width(tmp_path):
    assert main(["--out", str(tmp_path), "--widths", "16", "32", "--videos", "6", "--repeats", "1"]) == 0
    table = pd.read_csv(tmp_path / "floor_check.csv")
    assert list(table["width"]) == [16, 32] and list(table["method_class"]) == ["cross_encoder"] * 2
    assert table["flops_per_query"].is_monotonic_increasing  # wider fusion, more FLOPs per pair
    assert (table[["floor_ms", "query_ms", "x_floor"]] > 0).all().all()


def test_flops_per_query_are_the_pairs_flops_so_they_grow_linearly_with_the_gallery():
    four, eight = (measure("cross_encoder", 16, n, **TINY)["flops_per_query"] for n in (4, 8))
    assert eight == 2 * four


def test_an_embedding_method_class_is_refused_in_one_line(capsys):
    assert main(["--out", "unused", "--method-class", "dual_encoder", "--widths", "16", "--videos", "2"]) == 2
    assert "is not a pair method" in capsys.readouterr().err
