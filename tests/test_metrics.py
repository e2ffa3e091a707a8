"""Tests for vtrbench.metrics: hand cases worked out in comments, a double-loop reference, torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.retrieval import RetrievalMRR, RetrievalRecall

from vtrbench import metrics
from vtrbench.metrics import (
    pairwise_accuracy,
    retrieval_metrics,
    summarize,
    t2v_ranks,
    v2t_ranks,
)

# ---------------------------------------------------------------------------------------------------------
# naive references: a double loop per direction, straight from the definitions in the module docstring


def naive_t2v(s: np.ndarray, cv: np.ndarray) -> tuple[list[int], list[int]]:
    ranks, ties = [], []
    for i in range(s.shape[0]):
        pos = s[i, cv[i]]
        ranks.append(1 + sum(s[i, j] > pos for j in range(s.shape[1])))
        ties.append(sum(s[i, j] == pos for j in range(s.shape[1]) if j != cv[i]))
    return ranks, ties


def naive_v2t(s: np.ndarray, cv: np.ndarray, competitors: str = "captions") -> tuple[list[int], list[int]]:
    ranks, ties = [], []
    for v in range(s.shape[1]):
        own = [c for c in range(s.shape[0]) if cv[c] == v]
        if not own:
            continue  # a video without captions is not a query
        best = max(s[c, v] for c in own)
        if competitors == "captions":
            cand = [s[c, v] for c in range(s.shape[0]) if cv[c] != v]
        else:  # each other video (with captions) competes once, by its best caption
            cand = [max(s[c, v] for c in range(s.shape[0]) if cv[c] == w) for w in set(cv.tolist()) - {v}]
        ranks.append(1 + sum(x > best for x in cand))
        ties.append(sum(x == best for x in cand))
    return ranks, ties


def clip4clip_compute_metrics(x: np.ndarray) -> np.ndarray:
    """CLIP4Clip metrics.py compute_metrics, rank part only (0-based): shows the tie bug (issue #80)."""
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, np.newaxis]
    _, ind = np.where(sx - d == 0)
    return ind


# ---------------------------------------------------------------------------------------------------------
# hand cases

# caption i belongs to video i; the positive sits on the diagonal
SCORES_3X3 = np.array(
    [
        [0.9, 0.1, 0.0],  # c0 -> v0: 0.9 is the row max                     -> t2v rank 1
        [0.8, 0.5, 0.1],  # c1 -> v1: 0.8 > 0.5                              -> t2v rank 2
        [0.7, 0.6, 0.2],  # c2 -> v2: 0.7, 0.6 > 0.2                         -> t2v rank 3
    ]
)
CV_3 = np.array([0, 1, 2])


def test_t2v_hand_3x3():
    r = t2v_ranks(SCORES_3X3, CV_3)
    assert r.rank.tolist() == [1, 2, 3]
    assert r.ties.tolist() == [0, 0, 0]
    assert r.rank.dtype == np.int64 and r.ties.dtype == np.int64
    # R@1 = 1/3 = 33.33 %, R@5 = R@10 = 100 %, MdR = median(1, 2, 3) = 2, MnR = 6 / 3 = 2
    assert summarize(r.rank) == pytest.approx({"R@1": 100 / 3, "R@5": 100.0, "R@10": 100.0, "MdR": 2.0, "MnR": 2.0})


def test_v2t_hand_3x3():
    # columns are the video queries: v0 = [0.9, 0.8, 0.7] own c0 = 0.9 is the max            -> rank 1
    #                                v1 = [0.1, 0.5, 0.6] own c1 = 0.5, c2 = 0.6 above it     -> rank 2
    #                                v2 = [0.0, 0.1, 0.2] own c2 = 0.2 is the max            -> rank 1
    r = v2t_ranks(SCORES_3X3, CV_3)
    assert r.rank.tolist() == [1, 2, 1]
    assert r.ties.tolist() == [0, 0, 0]
    # R@1 = 2/3 = 66.67 %, MdR = median(1, 1, 2) = 1, MnR = 4 / 3 = 1.33
    assert summarize(r.rank) == pytest.approx({"R@1": 200 / 3, "R@5": 100.0, "R@10": 100.0, "MdR": 1.0, "MnR": 4 / 3})


def test_summarize_recall_cutoffs():
    # ranks 1, 5, 6, 10, 11: R@1 = 1/5 = 20 %, R@5 = 2/5 = 40 %, R@10 = 4/5 = 80 %,
    # MdR = median = 6, MnR = 33 / 5 = 6.6; even count: median(1, 2, 3, 4) = 2.5
    assert summarize(np.array([1, 5, 6, 10, 11])) == pytest.approx(
        {"R@1": 20.0, "R@5": 40.0, "R@10": 80.0, "MdR": 6.0, "MnR": 6.6}
    )
    assert summarize(np.array([4, 1, 3, 2]))["MdR"] == 2.5


def test_retrieval_metrics_hand_3x3():
    m = retrieval_metrics(torch.tensor(SCORES_3X3), torch.tensor(CV_3))
    assert set(m) == {"t2v", "v2t", "pairwise"}
    assert m["t2v"] == pytest.approx(
        {"R@1": 100 / 3, "R@5": 100.0, "R@10": 100.0, "MdR": 2.0, "MnR": 2.0, "ties": 0, "queries": 3}
    )
    assert m["v2t"]["R@1"] == pytest.approx(200 / 3)
    assert (m["v2t"]["queries"], m["v2t"]["ties"], m["v2t"]["videos_without_captions"]) == (3, 0, 0)
    assert m["pairwise"] == {}


# ---------------------------------------------------------------------------------------------------------
# ties


def test_fully_tied_row_gives_rank_1_and_reports_ties():
    scores = np.array(
        [
            [1.0, 0.0, 0.0],  # c0 -> v0: clear hit                            -> rank 1, ties 0
            [0.5, 0.5, 0.5],  # c1 -> v1: nothing strictly higher, 2 others tie -> rank 1, ties 2
            [0.0, 0.0, 1.0],  # c2 -> v2: clear hit                            -> rank 1, ties 0
        ]
    )
    r = t2v_ranks(scores, CV_3)
    assert r.rank.tolist() == [1, 1, 1]
    assert r.ties.tolist() == [0, 2, 0]
    assert (r.rank + r.ties).tolist() == [1, 3, 1]  # pessimistic ranks
    m = retrieval_metrics(scores, CV_3)
    assert (m["t2v"]["queries"], m["t2v"]["ties"], m["t2v"]["R@1"]) == (3, 2, 100.0)
    # CLIP4Clip (issue #80) emits one rank per tied column: 1 + 3 + 1 = 5 ranks for 3 queries,
    # [0, 0, 1, 2, 0] (0-based) -> "R@1" = 3/5 = 60 % over the wrong denominator; ours keeps 3 ranks
    buggy = clip4clip_compute_metrics(scores)
    assert buggy.tolist() == [0, 0, 1, 2, 0]
    assert len(r.rank) == 3


def test_constant_scores_are_all_ties():
    scores = np.full((4, 3), 0.25)  # captions 0, 1 -> v0; 2 -> v1; 3 -> v2
    cv = np.array([0, 0, 1, 2])
    t2v = t2v_ranks(scores, cv)
    assert t2v.rank.tolist() == [1, 1, 1, 1] and t2v.ties.tolist() == [2, 2, 2, 2]  # n_video - 1
    v2t = v2t_ranks(scores, cv)  # other videos' captions: 4 - own captions
    assert v2t.rank.tolist() == [1, 1, 1] and v2t.ties.tolist() == [2, 3, 3]


def test_exact_comparison_no_epsilon():
    # 0.1 + 0.2 = 0.30000000000000004 > 0.3 in float64: strictly higher, not a tie
    scores = np.array([[0.3, 0.1 + 0.2]])
    r = t2v_ranks(scores, np.array([0]))
    assert (r.rank.tolist(), r.ties.tolist()) == ([2], [0])


# ---------------------------------------------------------------------------------------------------------
# several captions per video

# captions c0, c1 -> v0, c2 -> v1
SCORES_MULTI = np.array(
    [
        [0.2, 0.9],  # c0 (v0)
        [0.6, 0.1],  # c1 (v0)
        [0.4, 0.8],  # c2 (v1)
    ]
)
CV_MULTI = np.array([0, 0, 1])


def test_multi_caption_t2v():
    # c0: 0.9 (v1) > 0.2 -> rank 2; c1: 0.6 is the row max -> rank 1; c2: 0.8 is the row max -> rank 1
    assert t2v_ranks(SCORES_MULTI, CV_MULTI).rank.tolist() == [2, 1, 1]


def test_multi_caption_v2t_takes_best_caption():
    # v0: column [0.2, 0.6, 0.4]; best own caption c1 = 0.6; competitor c2 = 0.4 -> rank 1
    #     (c0's own rank, 3, is not used)
    # v1: column [0.9, 0.1, 0.8]; own c2 = 0.8; competitors c0 = 0.9 (above), c1 = 0.1 -> rank 2
    r = v2t_ranks(SCORES_MULTI, CV_MULTI)
    assert r.rank.tolist() == [1, 2]
    assert r.ties.tolist() == [0, 0]


def test_multi_caption_own_captions_are_not_competitors():
    # v0's two captions tie at 0.7 with each other: no tie is reported, since own captions do not compete;
    # c2 (v1) also scores 0.7 for v0: that one is a tie with a competitor
    scores = np.array([[0.7, 0.0], [0.7, 0.0], [0.7, 0.5]])
    r = v2t_ranks(scores, CV_MULTI)
    assert r.rank.tolist() == [1, 1]
    assert r.ties.tolist() == [1, 0]
    # own caption above the best competitor but another own caption below it: still rank 1
    scores = np.array([[0.9, 0.0], [0.1, 0.0], [0.5, 0.5]])
    assert v2t_ranks(scores, CV_MULTI).rank.tolist() == [1, 1]


def test_v2t_competitors_videos_counts_each_video_once():
    # v1's own caption c2 scores 0.5; both captions of v0 score above it (0.9, 0.85)
    scores = np.array([[0.0, 0.9], [0.0, 0.85], [0.0, 0.5]])
    assert v2t_ranks(scores, CV_MULTI).rank.tolist() == [1, 3]  # two competing captions above
    assert v2t_ranks(scores, CV_MULTI, competitors="videos").rank.tolist() == [1, 2]  # one competing video


def test_video_without_captions_is_skipped_and_counted():
    # 3 videos, captions only for v0 and v2; v1 stays a t2v candidate (it wins for c1)
    scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.4]])
    cv = np.array([0, 2])
    assert t2v_ranks(scores, cv).rank.tolist() == [1, 2]
    r = v2t_ranks(scores, cv)  # queries: v0 (column [0.9, 0.3]) -> rank 1, v2 (column [0.2, 0.4]) -> rank 1
    assert r.rank.tolist() == [1, 1]
    m = retrieval_metrics(scores, cv)
    assert (m["v2t"]["queries"], m["v2t"]["videos_without_captions"], m["t2v"]["queries"]) == (2, 1, 2)


# ---------------------------------------------------------------------------------------------------------
# against the naive reference on random matrices (float scores, and small integers to force many ties)


def _random_case(seed: int, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_video = int(rng.integers(1, 9))
    n_text = int(rng.integers(1, 20))
    cv = rng.integers(0, n_video, size=n_text)  # some videos get several captions, some none
    scores = rng.integers(0, 3, size=(n_text, n_video)) if integer else rng.standard_normal((n_text, n_video))
    return scores, cv


@pytest.mark.parametrize("chunk", [3, 1 << 24], ids=["tiny_chunks", "default_chunks"])
@pytest.mark.parametrize("integer", [False, True], ids=["float", "int"])
@pytest.mark.parametrize("seed", range(8))
def test_against_naive_reference(seed, integer, chunk, monkeypatch):
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", chunk)
    scores, cv = _random_case(seed, integer)
    for to in (np.asarray, torch.as_tensor):
        r = t2v_ranks(to(scores), to(cv))
        assert (r.rank.tolist(), r.ties.tolist()) == naive_t2v(scores, cv)
        for competitors in ("captions", "videos"):
            r = v2t_ranks(to(scores), to(cv), competitors=competitors)
            assert (r.rank.tolist(), r.ties.tolist()) == naive_v2t(scores, cv, competitors)


def test_float32_and_integer_inputs_agree_with_float64():
    rng = np.random.default_rng(0)
    scores = rng.integers(-3, 4, size=(30, 10))  # small integers are exact in every float dtype
    cv = rng.integers(0, 10, size=30)
    ref = t2v_ranks(scores.astype(np.float64), cv)
    for s in (scores, scores.astype(np.float32), torch.tensor(scores, dtype=torch.float16)):
        r = t2v_ranks(s, cv)
        np.testing.assert_array_equal(r.rank, ref.rank)
        np.testing.assert_array_equal(r.ties, ref.ties)


# ---------------------------------------------------------------------------------------------------------
# against torchmetrics (single caption per video, continuous scores: no ties)


def test_recall_matches_torchmetrics():
    n = 40
    scores = torch.randn(n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scores += 2.0 * torch.eye(n, dtype=torch.float64)  # a weak model, so R@1 < R@5 < R@10 < 100
    cv = torch.arange(n)
    ours = retrieval_metrics(scores, cv)
    for direction, s in (("t2v", scores), ("v2t", scores.T)):  # one caption per video: v2t is the transpose
        # torchmetrics >= 1.7.4 drops items with preds <= 0 (docs/references.md §3.2), so pass exp(scores) > 0
        preds = s.exp().flatten()
        target = torch.eye(n, dtype=torch.bool).flatten()
        indexes = torch.arange(n).repeat_interleave(n)  # row i of s is query i
        for k in (1, 5, 10):
            recall = RetrievalRecall(top_k=k)(preds, target, indexes=indexes)
            assert ours[direction][f"R@{k}"] == pytest.approx(100 * float(recall), abs=1e-4)  # float32
        ranks = (t2v_ranks if direction == "t2v" else v2t_ranks)(scores, cv).rank
        assert float(np.mean(1.0 / ranks)) == pytest.approx(float(RetrievalMRR()(preds, target, indexes=indexes)))


def test_torchmetrics_drops_nonpositive_preds():
    # why the cross-check uses exp(scores): every score negative, the positive first in each row (R@1 = 100),
    # yet torchmetrics 1.9 treats preds <= 0 as non-relevant and reports 0
    scores = torch.tensor([[-0.1, -0.5], [-0.5, -0.1]])
    assert summarize(t2v_ranks(scores, torch.arange(2)).rank)["R@1"] == 100.0
    target, indexes = torch.eye(2, dtype=torch.bool).flatten(), torch.arange(2).repeat_interleave(2)
    assert float(RetrievalRecall(top_k=1)(scores.flatten(), target, indexes=indexes)) == 0.0


# ---------------------------------------------------------------------------------------------------------
# hard-negative pairwise accuracy

# videos: v0 original (g0), v1 colour_swap (g0), v2 action_swap (g0), v3 original (g1), v4 colour_swap (g1),
#         v5 ungrouped (-1)
# captions: c0 -> v0, c1 -> v1, c2 -> v2, c3 -> v3, c4 -> v3, c5 -> v4, c6 -> v5
PAIR_CV = np.array([0, 1, 2, 3, 3, 4, 5])
PAIR_GROUP = np.array([0, 0, 0, 1, 1, -1])
PAIR_VARIANT = ["original", "colour_swap", "action_swap", "original", "colour_swap", "original"]


def _pair_scores() -> np.ndarray:
    s = np.zeros((7, 6))
    s[0, 0], s[0, 1] = 0.9, 0.9  # c0 of v0 vs colour_swap v1: exact tie                 -> 0.5
    s[1, 1], s[1, 0] = 0.8, 0.3  # c1 of v1 (colour_swap) vs its original v0: right     -> 1
    s[0, 2] = 0.1  # c0 of v0 (0.9) vs action_swap v2 (0.1): right                      -> 1
    s[2, 2], s[2, 0] = 0.2, 0.6  # c2 of v2 (action_swap) vs original v0: wrong         -> 0
    s[3, 3], s[3, 4] = 0.7, 0.5  # c3 of v3 vs colour_swap v4: right                    -> 1
    s[4, 3], s[4, 4] = 0.4, 0.5  # c4 of v3 vs colour_swap v4: wrong                    -> 0
    s[5, 4], s[5, 3] = 0.6, 0.6  # c5 of v4 (colour_swap) vs original v3: exact tie     -> 0.5
    s[6, 5], s[6, 0] = 0.0, 0.9  # v5 is in no group: never compared
    return s


def test_pairwise_accuracy_hand_two_groups():
    # colour_swap: g0 both directions (c0: 0.5, c1: 1) + g1 (c3: 1, c4: 0, c5: 0.5) = 3 / 5 = 60 %
    # action_swap: g0 both directions (c0: 1, c2: 0) = 1 / 2 = 50 %
    out = pairwise_accuracy(_pair_scores(), PAIR_CV, PAIR_GROUP, PAIR_VARIANT)
    assert out == {
        "action_swap": {"accuracy": pytest.approx(50.0), "comparisons": 2},
        "colour_swap": {"accuracy": pytest.approx(60.0), "comparisons": 5},
    }
    m = retrieval_metrics(_pair_scores(), PAIR_CV, torch.tensor(PAIR_GROUP), np.array(PAIR_VARIANT))
    assert m["pairwise"] == out


def test_pairwise_accuracy_without_groups_is_empty():
    assert pairwise_accuracy(_pair_scores(), PAIR_CV, np.full(6, -1), PAIR_VARIANT) == {}


# ---------------------------------------------------------------------------------------------------------
# errors: one line each, naming what was expected and what was received

ERROR_CASES = [
    ("scores 1-D", lambda: t2v_ranks(np.zeros(3), CV_3), r"2-D \[n_text, n_video\], got shape \(3,\)"),
    ("scores 3-D", lambda: v2t_ranks(np.zeros((3, 3, 1)), CV_3), r"2-D .* got shape \(3, 3, 1\)"),
    ("scores strings", lambda: t2v_ranks(np.array([["a"]]), [0]), r"numeric array .* got dtype <U1"),
    ("empty gallery", lambda: t2v_ranks(np.zeros((3, 0)), CV_3), r"empty gallery.*got shape \(3, 0\)"),
    ("no queries", lambda: v2t_ranks(np.zeros((0, 3)), np.zeros(0, int)), r"no queries.*got shape \(0, 3\)"),
    ("nan and inf", lambda: t2v_ranks(np.array([[np.nan, 1], [np.inf, 0]]), [0, 1]), r"got 2 non-finite"),
    ("cv length", lambda: t2v_ranks(SCORES_3X3, [0, 1]), r"length n_text = 3, got 2"),
    ("cv 2-D", lambda: t2v_ranks(SCORES_3X3, np.zeros((3, 1), int)), r"1-D \[n_text\], got shape \(3, 1\)"),
    ("cv float", lambda: t2v_ranks(SCORES_3X3, np.array([0.0, 1.0, 2.0])), r"integer video indices.*float64"),
    (
        "cv too big",
        lambda: v2t_ranks(SCORES_3X3, [0, 1, 3]),
        r"in \[0, 2\] \(n_video = 3\), got 1 out of range, e.g. 3",
    ),
    ("cv negative", lambda: t2v_ranks(SCORES_3X3, [-1, 1, 2]), r"got 1 out of range, e.g. -1"),
    (
        "competitors",
        lambda: v2t_ranks(SCORES_3X3, CV_3, competitors="x"),
        r"unknown competitors 'x'; choose one",
    ),
    (
        "summarize empty",
        lambda: summarize(np.array([], dtype=np.int64)),
        r"non-empty 1-D .* got shape \(0,\)",
    ),
    ("summarize 0-based", lambda: summarize(np.array([0, 1])), r"1-based \(>= 1\), got minimum 0"),
    (
        "group without variant",
        lambda: retrieval_metrics(SCORES_3X3, CV_3, group_id=[0, 0, 0]),
        r"got only group_id",
    ),
    (
        "group_id length",
        lambda: pairwise_accuracy(SCORES_3X3, CV_3, np.array([0, 0]), ["original"] * 3),
        r"group_id must be int \[n_video\] = \[3\], got int64 \(2,\)",
    ),
    (
        "variant length",
        lambda: pairwise_accuracy(SCORES_3X3, CV_3, np.array([0, 0, 0]), ["original"]),
        r"variant must be \[n_video\] = \[3\] strings, got shape \(1,\)",
    ),
    (
        "two originals",
        lambda: pairwise_accuracy(SCORES_3X3, CV_3, np.array([0, 0, 0]), ["original", "original", "reversal"]),
        r"group 0 must have exactly one 'original' video, got 2",
    ),
    (
        "no original",
        lambda: pairwise_accuracy(SCORES_3X3, CV_3, np.array([0, 0, -1]), ["reversal", "reversal", "original"]),
        r"group 0 must have exactly one 'original' video, got 0",
    ),
]


@pytest.mark.parametrize(("call", "match"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
