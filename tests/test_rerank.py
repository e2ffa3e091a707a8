"""Two-stage re-ranking against a brute-force reference on hand-made scores."""

from __future__ import annotations

import pytest
import torch

from baselines.rerank import RerankOptions, rerank, top_candidates, variant_names


def _reference(first: torch.Tensor, second_full: torch.Tensor, k: int) -> list[list[int]]:
    """Brute force: sort by first, re-sort the first k by second, keep the rest in first-stage order."""
    out = []
    for f, s in zip(first.tolist(), second_full.tolist(), strict=True):
        order = sorted(range(len(f)), key=lambda v: (-f[v], v))
        head = sorted(order[:k], key=lambda v: (-s[v], v))
        out.append(head + order[k:])
    return out


def _ranking(scores: torch.Tensor) -> list[list[int]]:
    return torch.sort(scores, dim=1, descending=True, stable=True).indices.tolist()


FIRST = torch.tensor([[0.9, 0.8, 0.1, 0.5, 0.3], [0.2, 0.4, 0.6, 0.8, 1.0]])
SECOND = torch.tensor([[0.0, 2.0, 5.0, 1.0, 3.0], [4.0, 3.0, 2.0, 1.0, 0.0]])


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_matches_brute_force(k):
    cand = top_candidates(FIRST, k)
    scores = rerank(FIRST, SECOND.gather(1, cand), cand)
    assert _ranking(scores) == _reference(FIRST, SECOND, k)


def test_k1_keeps_first_stage_order_and_k_all_is_the_pair_ranking():
    cand = top_candidates(FIRST, 1)
    assert _ranking(rerank(FIRST, SECOND.gather(1, cand), cand)) == _ranking(FIRST)
    cand = top_candidates(FIRST, 5)
    assert _ranking(rerank(FIRST, SECOND.gather(1, cand), cand)) == _ranking(SECOND)


def test_variant_names_and_option_checks():
    assert variant_names("rerank", {"class": "rerank", "k": [10, 20]}) == [
        "rerank@10",
        "rerank@10+dual",
        "rerank@20",
        "rerank@20+dual",
    ]
    with pytest.raises(ValueError, match="fuse"):
        RerankOptions(fuse=["dual"])
    with pytest.raises(ValueError, match="k must"):
        RerankOptions(k=[])
