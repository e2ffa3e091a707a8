"""Two-stage re-ranking: the merge against a brute-force reference, the (k, w) choice on val only, and the generic
stage path with a toy pair method written here (no cross-encoder involved)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from vtrbench.candidates import merge, top_candidates
from vtrbench.data.batches import Tokens
from vtrbench.data.records import SplitData
from vtrbench.encoding import Encoded
from vtrbench.methods import EmbeddingMethod, PairMethod
from vtrbench.options import parse_options
from vtrbench.rerank import RerankOptions, choose, fused, split_scores, sweep


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
    scores = merge(FIRST, SECOND.gather(1, cand), cand)
    assert _ranking(scores) == _reference(FIRST, SECOND, k)


def test_k1_keeps_first_stage_order_and_k_all_is_the_pair_ranking():
    cand = top_candidates(FIRST, 1)
    assert _ranking(merge(FIRST, SECOND.gather(1, cand), cand)) == _ranking(FIRST)
    cand = top_candidates(FIRST, 5)
    assert _ranking(merge(FIRST, SECOND.gather(1, cand), cand)) == _ranking(SECOND)


def test_option_checks():
    with pytest.raises(ValueError, match=r"methods.rr.weights: expected a list of numbers >= 0, got \[-1.0\]"):
        parse_options(RerankOptions, {"first": "f", "second": "s", "weights": [-1.0]}, "methods.rr")
    with pytest.raises(ValueError, match=r"methods.rr.k: expected a list of integers >= 1, got \[0, 5\]"):
        parse_options(RerankOptions, {"first": "f", "second": "s", "k": [0, 5]}, "methods.rr")
    with pytest.raises(ValueError, match="k and weights must be non-empty"):
        RerankOptions("f", "s", k=[])


def test_depth_and_weight_are_chosen_on_val_only():
    """A constructed grid where val prefers (k=5, w=0) and test prefers (k=20, w=1): val decides."""
    rows = [
        ("val", 5, 0.0, 60.0),
        ("val", 20, 1.0, 55.0),
        ("val", 20, 0.0, 58.0),
        ("test", 5, 0.0, 40.0),
        ("test", 20, 1.0, 70.0),
        ("test", 20, 0.0, 50.0),
    ]
    table = pd.DataFrame(rows, columns=["split", "k", "weight", "t2v_R@1"])
    assert choose(table) == (5, 0.0)
    tie = pd.concat([table, pd.DataFrame([("val", 3, 0.5, 60.0)], columns=table.columns)], ignore_index=True)
    assert choose(tie) == (3, 0.5)  # a tie on val goes to the smaller (cheaper) depth


class ToyFirst(EmbeddingMethod):
    """Scores = fixed query/gallery vectors (the features are the vectors themselves)."""

    def __init__(self):
        torch.nn.Module.__init__(self)

    def query_vectors(self, queries):
        return queries["v"]

    def gallery_vectors(self, gallery):
        return gallery["v"]

    def logit_scale(self) -> float:
        return 10.0


class ToyPair(PairMethod):
    """A joint score that knows the answer for query i: video i scores 1, every other 0."""

    def __init__(self):
        torch.nn.Module.__init__(self)

    def score_candidates(self, queries, gallery, candidates):
        return (gallery["id"][candidates] == queries["id"][:, None]).float()  # [n_text, k]


def _split(n: int) -> SplitData:
    return SplitData(
        video_ids=[f"v{i}" for i in range(n)],
        frames=None,  # type: ignore[arg-type]
        group_id=np.full(n, -1),
        variant=np.array(["original"] * n, dtype=object),
        captions=[f"c{i}" for i in range(n)],
        caption_video=np.arange(n),
    )


def test_generic_two_stage_with_a_toy_pair_method():
    n = 6
    rng = torch.Generator().manual_seed(0)
    # first stage: noisy, the positive is 2nd for every query (a distractor i+1 scores higher)
    vectors = torch.eye(n)
    queries = {"v": vectors + 1.5 * vectors.roll(1, dims=1), "id": torch.arange(n)}
    gallery = {"v": vectors + 0.01 * torch.rand(n, n, generator=rng), "id": torch.arange(n)}
    no_tokens = Tokens(torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1, dtype=torch.long))
    first, second = Encoded(ToyFirst(), no_tokens, queries, gallery), Encoded(ToyPair(), no_tokens, queries, gallery)
    scores = split_scores(first, second, _split(n), kmax=3)
    assert scores.scale == 10.0 and scores.candidates.shape == (n, 3)
    opts = RerankOptions(first="f", second="s", k=[1, 3], weights=[0.0, 1.0])
    table = sweep({"val": scores, "test": scores}, opts)
    r1 = table.set_index(["split", "k", "weight"])["t2v_R@1"]
    assert r1[("val", 1, 0.0)] == 0.0  # k = 1 keeps the first stage's wrong top 1
    assert r1[("val", 3, 0.0)] == 100.0  # the pair method finds the positive among the top 3
    assert r1[("val", 3, 1.0)] < 100.0  # adding 10 x the noisy first stage once overrides a margin of 1
    assert choose(table) == (3, 0.0)
    # w counts the first stage once: final = pair + w * scale * first, on the candidates
    cand = scores.candidates
    expected = scores.pair + 1.0 * 10.0 * scores.first.gather(1, cand)
    merged = fused(scores, 3, 1.0)
    assert torch.equal(_order_within(merged, cand), _order_within(merge(scores.first, expected, cand), cand))


def _order_within(scores: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    return torch.argsort(scores.gather(1, cand), dim=1, descending=True, stable=True)


class CountingPair(ToyPair):
    """ToyPair that counts its scoring passes."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def score_candidates(self, queries, gallery, candidates):
        self.calls += 1
        return super().score_candidates(queries, gallery, candidates)


class CountingPairWithInteraction(CountingPair):
    """A pair method whose interaction score is its own (here: minus its score)."""

    def interaction_scores(self, queries, gallery, candidates):
        return -self.score_candidates(queries, gallery, candidates)


@pytest.mark.parametrize("own_interaction", [False, True])
def test_pairs_are_scored_once_unless_the_method_has_its_own_interaction_score(own_interaction):
    n = 4
    vectors = torch.eye(n)
    features = {"v": vectors, "id": torch.arange(n)}
    tokens = Tokens(torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1, dtype=torch.long))
    pair = CountingPairWithInteraction() if own_interaction else CountingPair()
    scores = split_scores(Encoded(ToyFirst(), tokens, features, features), Encoded(pair, tokens, features, features),
                          _split(n), kmax=2)  # fmt: skip
    assert pair.calls == (2 if own_interaction else 1)
    assert torch.equal(scores.interaction, -scores.pair if own_interaction else scores.pair)
