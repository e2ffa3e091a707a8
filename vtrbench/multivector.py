"""Candidate search over a multi-vector gallery: every frame vector in one FAISS index, then exact scoring of k videos.

A late-interaction method (DRL's weighted token-wise interaction, ColBERT's MaxSim) stores several vectors per video
and scores a caption against a video by matching each caption token to its best frame. Exact search scores every
video of the gallery, so its cost grows with the gallery like a cross-encoder's (only cheaper per pair). The path such
methods use at scale (ColBERT v2 / PLAID's candidate generation) is two stages:

1. every frame vector of the gallery goes into one index (here exact inner product, ``faiss.IndexFlatIP``; any FAISS
   index fits the same call); each caption token retrieves its ``depth`` nearest frames;
2. the videos those frames belong to are ranked by the token-wise approximation the hits allow (per token, the best
   retrieved frame of the video, 0 where none was retrieved; summed with the method's token weights), and the top
   ``k`` are scored exactly by the method (``PairMethod.score_candidates``).

When ``depth`` covers every frame and ``k`` every video, stage 2 scores the whole gallery: the result is exact search
(``tests/test_multivector.py``). A method exposes its vectors through ``PairMethod.multi_vectors``; the latency step
times both paths (``backend`` ``pair``: exact over every video; ``multivector``: this one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np
import torch
from torch import Tensor


@dataclass
class MultiVectors:
    """A multi-vector method's search view: unit caption-token vectors with their weights, and unit frame vectors
    per video (what the index stores)."""

    tokens: Tensor  # [n_text, L, D]
    weights: Tensor  # [n_text, L], 0 on padding
    frames: Tensor  # [n_video, M, D]


class FrameIndex:
    """Every frame vector of a gallery in one inner-product index, with the video each row belongs to."""

    def __init__(self, frames: np.ndarray, index: faiss.Index | None = None):
        """``frames`` [n_video, M, D]; ``index``: one already holding them row by row, video-major (an approximate
        one, e.g. ``vtrbench.ann.build``'s HNSW, at scale); None: an exact one is built here."""
        n_video, per_video, dim = frames.shape
        self.n_video, self.per_video = n_video, per_video
        if index is None:
            index = faiss.IndexFlatIP(dim)
            index.add(np.ascontiguousarray(frames.reshape(-1, dim), dtype=np.float32))
        if index.ntotal != n_video * per_video:
            raise ValueError(f"frame index holds {index.ntotal} vectors, the gallery has {n_video} x {per_video}")
        self.index = index

    def candidates(self, tokens: np.ndarray, weights: np.ndarray, depth: int, k: int) -> np.ndarray:
        """The top ``k`` videos of each caption by the token-wise approximation from each token's ``depth`` nearest
        frames: [n_text, k] video indices (fewer hits than k: padded with the caption's best candidate)."""
        n_text, length, dim = tokens.shape
        depth = min(depth, self.n_video * self.per_video)
        sims, rows = self.index.search(np.ascontiguousarray(tokens.reshape(-1, dim), dtype=np.float32), depth)
        videos = (rows // self.per_video).reshape(n_text, length, depth)
        sims = sims.reshape(n_text, length, depth)
        out = np.empty((n_text, min(k, self.n_video)), dtype=np.int64)
        token_of = np.repeat(np.arange(length), depth)  # the token of each retrieved (token, frame) hit
        for q in range(n_text):
            found, where = np.unique(videos[q], return_inverse=True)  # the videos any token reached
            best = np.zeros((length, len(found)), dtype=np.float32)  # per token, its best retrieved frame per video
            np.maximum.at(best, (token_of, where.reshape(-1)), sims[q].reshape(-1))
            approx = weights[q] @ best  # [len(found)]
            order = found[np.argsort(-approx, kind="stable")][: out.shape[1]]
            out[q] = np.pad(order, (0, out.shape[1] - len(order)), mode="edge")
        return out


ScoreCandidates = Callable[[dict[str, Tensor], dict[str, Tensor], Tensor], Tensor]


class CandidateIndex:
    """Both stages as an index ``vtrbench.ann.measure`` can time: ``search(rows, k)`` takes caption numbers [q, 1]
    (rows of ``queries``) and returns each caption's top k of its ``k_exact`` candidates by the method's exact
    score (``score``: its ``score_candidates``), as FAISS returns (scores, ids)."""

    def __init__(
        self,
        score: ScoreCandidates,
        queries: dict[str, Tensor],
        gallery: dict[str, Tensor],
        view: MultiVectors,
        frames: FrameIndex,
        depth: int,
        k_exact: int,
    ):
        self.score, self.queries, self.gallery, self.frames = score, queries, gallery, frames
        self.tokens, self.weights = view.tokens.float().cpu().numpy(), view.weights.float().cpu().numpy()
        self.depth, self.k_exact = depth, k_exact

    def scored(self, rows: np.ndarray) -> tuple[Tensor, Tensor]:
        """Stage 1 then stage 2 for captions ``rows`` [q, 1]: their candidates [q, k_exact] (on the gallery's
        device) and the exact scores of them [q, k_exact]."""
        mine = rows[:, 0]
        found = self.frames.candidates(self.tokens[mine], self.weights[mine], self.depth, self.k_exact)
        candidates = torch.from_numpy(found).to(next(iter(self.gallery.values())).device)
        picked = {key: value[torch.from_numpy(mine).to(value.device)] for key, value in self.queries.items()}
        return candidates, self.score(picked, self.gallery, candidates)

    def search(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        candidates, scores = self.scored(rows)
        top = scores.float().cpu().topk(min(k, candidates.shape[1]), dim=1)
        return top.values.numpy(), np.take_along_axis(candidates.cpu().numpy(), top.indices.numpy(), axis=1)


def candidate_search(
    score: ScoreCandidates,
    queries: dict[str, Tensor],
    gallery: dict[str, Tensor],
    view: MultiVectors,
    depth: int,
    k: int,
) -> tuple[Tensor, Tensor]:
    """Stage 1 then stage 2 for every caption over an exact frame index (``score``: the method's
    ``score_candidates``): the candidates [n_text, k] and their exact scores [n_text, k]."""
    search = CandidateIndex(score, queries, gallery, view, FrameIndex(view.frames.float().cpu().numpy()), depth, k)
    return search.scored(np.arange(len(view.tokens))[:, None])
