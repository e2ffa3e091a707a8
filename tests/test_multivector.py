"""The candidate search over a multi-vector gallery (vtrbench/multivector.py): its token-wise approximation against
loops, exact search when the candidate depth covers the gallery, and the latency step's rows for it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tests.conftest import method_batch, tiny_backbones
from vtrbench.methods import build_method
from vtrbench.multivector import FrameIndex, candidate_search

CLASS = "baselines.late_interaction:LateInteraction"


def _approx_by_loops(tokens: np.ndarray, weights: np.ndarray, frames: np.ndarray, depth: int) -> np.ndarray:
    """Per video: sum over tokens of weight x the best of its frames among the token's ``depth`` nearest (0: none)."""
    n_video, per_video, _ = frames.shape
    flat = frames.reshape(-1, frames.shape[-1])
    out = np.zeros(n_video)
    for t, w in zip(tokens, weights, strict=True):
        sims = flat @ t
        nearest = np.argsort(-sims, kind="stable")[:depth]
        for v in range(n_video):
            hits = [sims[r] for r in nearest if r // per_video == v]
            out[v] += w * (max(hits) if hits else 0.0)
    return out


def test_the_candidates_are_the_top_videos_of_the_token_wise_approximation():
    g = torch.Generator().manual_seed(0)
    frames = F.normalize(torch.randn(7, 3, 8, generator=g), dim=-1).numpy()
    tokens = F.normalize(torch.randn(2, 5, 8, generator=g), dim=-1).numpy()
    weights = torch.rand(2, 5, generator=g).softmax(-1).numpy()
    index = FrameIndex(frames)
    for depth in (2, 6, 21):
        got = index.candidates(tokens, weights, depth, k=3)
        for q in range(2):
            approx = _approx_by_loops(tokens[q], weights[q], frames, depth)
            assert np.allclose(np.sort(approx[got[q]])[::-1], np.sort(approx)[::-1][:3], atol=1e-5), (depth, q)


def test_with_a_depth_covering_the_gallery_it_is_exact_search():
    torch.manual_seed(0)
    method = build_method(tiny_backbones(), {"class": CLASS, "dim": 16}).eval()
    batch = method_batch(6, 4, 12, seed=1, padded={1: 5, 3: 3})
    with torch.no_grad():
        gallery = method.encode_videos(batch["frames"])
        queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        view = method.multi_vectors(queries, gallery)
        cand, scores = candidate_search(method.score_candidates, queries, gallery, view, depth=6 * 4, k=6)
        exact = method.score(queries, gallery)
    assert (cand.sort(1).values == torch.arange(6)).all()  # every video a candidate, once
    torch.testing.assert_close(scores, torch.gather(exact, 1, cand))
    assert torch.equal(torch.gather(cand, 1, scores.argmax(1, keepdim=True))[:, 0], exact.argmax(1))


def test_the_latency_step_times_the_candidate_path_at_every_gallery_size():
    """Rows with backend multivector per (k, gallery size), flagged synthetic beyond the real gallery, with the
    share of captions whose top 10 equals exact search's (1.0 when k covers the real gallery)."""
    from vtrbench import latency
    from vtrbench.encoding import Encoded

    torch.manual_seed(0)
    method = build_method(tiny_backbones(), {"class": CLASS, "dim": 16}).eval()
    batch = method_batch(12, 4, 12, seed=2, padded={})
    with torch.no_grad():
        gallery = method.encode_videos(batch["frames"])
        queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        stage = Encoded(method, None, queries, gallery)
        settings = latency.Settings(0, 2, 1, 4, 1.0, [12, 48], torch.device("cpu"), 0)
        rec = latency.Recorder("late_interaction", 0, 1, torch.device("cpu"))
        view = method.multi_vectors(queries, gallery)
        latency._multivector_rows(rec, stage, view, settings, ks=[12, 3], depth=48)
    frame = rec.frame()
    assert list(frame.columns) == latency.COLUMNS and (frame.backend == "multivector").all()
    assert sorted({(k, n) for k, n in zip(frame.k, frame.gallery_size, strict=True)}) == [
        (3, 12),
        (3, 48),
        (12, 12),
        (12, 48),
    ]
    assert frame.groupby("gallery_size").synthetic_gallery.all().to_dict() == {12: False, 48: True}
    assert (frame[frame.k == 12].top10_agreement == 1.0).all()
    assert (frame.seconds > 0).all() and frame.groupby(["k", "gallery_size"]).size().eq(2).all()
