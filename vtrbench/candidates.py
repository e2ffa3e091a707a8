"""A first stage's top k and the ranking of re-scored candidates: shared by validation and two-stage retrieval.

Both :func:`vtrbench.evaluate.evaluate` (a pair method validated on its own first stage's shortlist) and
:mod:`vtrbench.rerank` (an embedding method's top k re-scored by a pair method) rank candidates this way, so a
re-ranked list means the same thing wherever it is built.
"""

from __future__ import annotations

import torch
from torch import Tensor


def top_candidates(first: Tensor, k: int) -> Tensor:
    """[n_text, k] indices of the first stage's top k (stable: a tie keeps the lower video index first)."""
    order = torch.sort(first, dim=1, descending=True, stable=True).indices
    return order[:, : min(k, first.shape[1])]


def merge(first: Tensor, second: Tensor, candidates: Tensor) -> Tensor:
    """Scores whose ranking is the re-ranked list.

    Args:
        first: [n_text, n_video] first-stage scores.
        second: [n_text, k] final scores of ``candidates``.
        candidates: [n_text, k] video indices, the first stage's top k.

    Returns:
        [n_text, n_video]: the candidates get ``second`` shifted above every other video's first-stage score;
        the others keep ``first`` (their order and ties are the first stage's).
    """
    out = first.clone()
    inside = torch.zeros_like(first, dtype=torch.bool).scatter_(1, candidates, True)
    rest_max = first.masked_fill(inside, float("-inf")).amax(1, keepdim=True)  # [n_text, 1]
    rest_max = torch.where(torch.isfinite(rest_max), rest_max, torch.zeros_like(rest_max))  # k = n_video
    shift = rest_max - second.amin(1, keepdim=True) + 1.0  # [n_text, 1]
    out.scatter_(1, candidates, second + shift)
    return out
