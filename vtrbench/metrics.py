"""Text-video retrieval metrics (R@K, MdR, MnR, hard-negative pairwise accuracy) with a stated tie rule.

Inputs everywhere: ``scores: [n_text, n_video]`` (higher = more similar; ``torch.Tensor`` or ``np.ndarray``)
and ``caption_video: [n_text]``, the index of each caption's ground-truth video.

**Tie rule (optimistic, reported).** The rank of a positive is ``1 + number of candidates scoring strictly
higher`` and, next to it, ``ties`` counts the *other* candidates whose score equals the positive's exactly.
There is exactly one rank per query. CLIP4Clip's ``compute_metrics`` instead emits a rank for *every* column
equal to the ground-truth score, so a row with k tied items adds k ranks: the list of ranks grows longer than
the number of queries and every metric is averaged over the wrong denominator (CLIP4Clip issue #80,
acknowledged; 3 queries with one fully tied row give 5 ranks and R@1 = 40%; docs/references.md §3.1).
An optimistic rule alone would flatter a degenerate model (constant scores give R@1 = 100), so ties are
never dropped: they are returned per query and summed in :func:`retrieval_metrics`; the pessimistic rank is
``rank + ties``. Comparisons are exact (no epsilon) in the scores' own dtype; integer scores compare as
float64.

**Several captions per video** (MSVD, MSR-VTT full, DiDeMo sentences). Text-to-video: every caption is a
query over all videos; its positive is its own video. Video-to-text: every video is a query over all captions
and all its captions are positives; its rank is the best (smallest) rank among them, i.e. a hit if any of its
captions is retrieved (the CLIP4Clip / X-Pool convention: ``tensor_video_to_text_sim`` takes the max over the
video's captions). The video's own other captions are not competitors, so the rank is
``1 + #(other videos' captions scoring strictly above the video's best caption)``. CLIP4Clip also collapses
each *competing* video to its best caption (one competitor per video); ``v2t_ranks(...,
competitors="videos")`` gives that grouping (with the tie rule above). The default ``"captions"`` ranks among
individual captions, which never gives a smaller rank. A video without captions is not a v2t query: it is
skipped and counted.

Rows are processed in blocks of about ``_CHUNK_ELEMENTS`` scores, so nothing larger than the score matrix is
built (50k captions x 10k videos is fine).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

_CHUNK_ELEMENTS = 1 << 24  # scores per chunk (128 MiB at float64); tests shrink it to exercise chunk borders
_RECALL_KS = (1, 5, 10)
_ORIGINAL = "original"  # variant name of the true video in a hard-negative group
_COMPETITORS = ("captions", "videos")


@dataclass
class Ranks:
    """Per-query ranks of the positive under the optimistic tie rule.

    Attributes:
        rank: ``[n_query]`` int64, 1-based: 1 + number of candidates scoring strictly higher than the
            positive.
        ties: ``[n_query]`` int64, number of other candidates whose score equals the positive's exactly
            (in v2t: other videos' captions only). The pessimistic rank is ``rank + ties``.
    """

    rank: np.ndarray
    ties: np.ndarray


# ---------------------------------------------------------------------------------------------------------
# validation (boundary checks: one-line errors with what was expected and what was received)


def _as_scores(scores: Any) -> torch.Tensor:
    """Return ``scores`` as a 2-D tensor sharing memory where possible; check shape and finiteness."""
    if isinstance(scores, torch.Tensor):
        s = scores.detach()
    else:
        arr = np.asarray(scores)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"scores must be a numeric array [n_text, n_video], got dtype {arr.dtype}")
        s = torch.from_numpy(np.ascontiguousarray(arr))
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_text, n_video], got shape {tuple(s.shape)}")
    n_text, n_video = s.shape
    if n_video == 0:
        raise ValueError(f"empty gallery: scores must have n_video >= 1, got shape {tuple(s.shape)}")
    if n_text == 0:
        raise ValueError(f"no queries: scores must have n_text >= 1, got shape {tuple(s.shape)}")
    if s.is_complex():
        raise ValueError(f"scores must be real, got dtype {s.dtype}")
    if s.is_floating_point():
        n_bad = sum(int((~torch.isfinite(chunk)).sum()) for chunk in _row_chunks(s))
        if n_bad:
            raise ValueError(f"scores must be finite, got {n_bad} non-finite value(s) (NaN or ±inf)")
    return s


def _as_caption_video(caption_video: Any, n_text: int, n_video: int) -> torch.Tensor:
    """Return ``caption_video`` as an int64 tensor ``[n_text]``; check length and index range."""
    if isinstance(caption_video, torch.Tensor):
        cv = caption_video.detach().cpu().numpy()
    else:
        cv = np.asarray(caption_video)
    if cv.ndim != 1:
        raise ValueError(f"caption_video must be 1-D [n_text], got shape {cv.shape}")
    if cv.dtype.kind not in "iu":
        raise ValueError(f"caption_video must hold integer video indices, got dtype {cv.dtype}")
    if cv.shape[0] != n_text:
        raise ValueError(f"caption_video must have length n_text = {n_text}, got {cv.shape[0]}")
    bad = (cv < 0) | (cv >= n_video)
    if bad.any():
        raise ValueError(
            f"caption_video indices must be in [0, {n_video - 1}] (n_video = {n_video}), "
            f"got {int(bad.sum())} out of range, e.g. {int(cv[bad][0])}"
        )
    return torch.from_numpy(cv.astype(np.int64))


def _check(scores: Any, caption_video: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate; return ``scores [n_text, n_video]`` and ``caption_video [n_text]`` on the same device."""
    s = _as_scores(scores)
    return s, _as_caption_video(caption_video, *s.shape).to(s.device)


def _row_chunks(s: torch.Tensor) -> Iterator[torch.Tensor]:
    """Yield consecutive row blocks of a 2-D tensor, each with about ``_CHUNK_ELEMENTS`` entries."""
    step = max(1, _CHUNK_ELEMENTS // max(1, s.shape[1]))
    for start in range(0, s.shape[0], step):
        yield s[start : start + step]


def _exact(x: torch.Tensor) -> torch.Tensor:
    """Floating scores compare as given; integer scores as float64 (exact up to 2**53, -inf available)."""
    return x if x.is_floating_point() else x.to(torch.float64)


# ---------------------------------------------------------------------------------------------------------
# ranks (the public functions validate, then call these on checked tensors)


def _t2v(s: torch.Tensor, cv: torch.Tensor) -> Ranks:
    higher, ties, start = [], [], 0
    for chunk in _row_chunks(s):
        chunk = _exact(chunk)  # [k, n_video]
        k = chunk.shape[0]
        pos = chunk.gather(1, cv[start : start + k, None])  # [k, 1] score of the own video
        higher.append((chunk > pos).sum(1))
        ties.append((chunk == pos).sum(1) - 1)  # minus the positive itself
        start += k
    return Ranks(rank=torch.cat(higher).cpu().numpy() + 1, ties=torch.cat(ties).cpu().numpy())


def _v2t(s: torch.Tensor, cv: torch.Tensor, competitors: str) -> Ranks:
    n_text, n_video = s.shape
    step = max(1, _CHUNK_ELEMENTS // n_text)
    higher, ties = [], []
    for start in range(0, n_video, step):
        sub = _exact(s[:, start : start + step])  # [n_text, k] all captions x the query videos of this block
        k = sub.shape[1]
        videos = torch.arange(start, start + k, device=s.device)  # [k]
        own = cv[:, None] == videos[None, :]  # [n_text, k] caption belongs to the query video
        best = sub.masked_fill(~own, float("-inf")).amax(0, keepdim=True)  # [1, k] best own caption
        if competitors == "captions":
            cand, other = sub, ~own  # [n_text, k]
        else:  # one candidate per video: its best caption (-inf for a video without captions)
            cand = torch.full((n_video, k), float("-inf"), dtype=sub.dtype, device=s.device)  # [n_video, k]
            cand.scatter_reduce_(0, cv[:, None].expand(n_text, k), sub, reduce="amax")
            other = torch.arange(n_video, device=s.device)[:, None] != videos[None, :]  # [n_video, k]
        # own captions never score above `best`, so masking them matters only for the ties
        higher.append((cand > best).sum(0))
        ties.append(((cand == best) & other).sum(0))
    keep = (torch.bincount(cv, minlength=n_video) > 0).cpu().numpy()  # [n_video] videos that are queries
    rank = torch.cat(higher).cpu().numpy() + 1
    return Ranks(rank=rank[keep], ties=torch.cat(ties).cpu().numpy()[keep])


def t2v_ranks(scores: ArrayLike, caption_video: ArrayLike) -> Ranks:
    """Text-to-video ranks: each caption is a query over all videos, its positive is its own video.

    Args:
        scores: ``[n_text, n_video]`` similarity matrix.
        caption_video: ``[n_text]`` int, index of each caption's ground-truth video.

    Returns:
        :class:`Ranks` with one entry per caption (``[n_text]``).

    Raises:
        ValueError: on a malformed shape, an index out of range, an empty gallery or non-finite scores.

    Example:
        >>> r = t2v_ranks(np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.2]]), np.array([0, 1, 1]))
        >>> r.rank.tolist(), r.ties.tolist()
        ([1, 1, 2], [0, 1, 0])
    """
    s, cv = _check(scores, caption_video)
    return _t2v(s, cv)


def v2t_ranks(scores: ArrayLike, caption_video: ArrayLike, *, competitors: str = "captions") -> Ranks:
    """Video-to-text ranks: each video is a query over all captions, all its captions are positives.

    The rank is that of the video's best-scoring caption; only other videos' captions compete (see the module
    docstring). Videos without captions are skipped: the result holds one entry per video that has captions,
    in increasing video index, i.e. for ``np.flatnonzero(np.bincount(caption_video, minlength=n_video))``.

    Args:
        scores: ``[n_text, n_video]`` similarity matrix.
        caption_video: ``[n_text]`` int, index of each caption's ground-truth video.
        competitors: ``"captions"`` (default) counts every other video's caption scoring strictly above the
            best own caption; ``"videos"`` counts each other video once, by its best caption (CLIP4Clip's
            grouped ``tensor_video_to_text_sim``). ``ties`` are counted in the same unit.

    Returns:
        :class:`Ranks` with one entry per video that has at least one caption.

    Raises:
        ValueError: on a malformed shape, an index out of range, an empty gallery, non-finite scores or an
            unknown ``competitors``.

    Example:
        >>> scores = np.array([[0.9, 0.8], [0.2, 0.6], [0.7, 0.1]])  # captions 0, 2 -> video 0; 1 -> video 1
        >>> v2t_ranks(scores, np.array([0, 1, 0])).rank.tolist()  # video 1: caption 0 (0.8) beats 0.6
        [1, 2]
    """
    if competitors not in _COMPETITORS:
        raise ValueError(f"unknown competitors {competitors!r}; choose one of: {', '.join(_COMPETITORS)}")
    s, cv = _check(scores, caption_video)
    return _v2t(s, cv, competitors)


# ---------------------------------------------------------------------------------------------------------
# summaries


def summarize(ranks: np.ndarray) -> dict[str, float]:
    """Recall at 1, 5 and 10 (percent of ranks <= K), median rank and mean rank.

    Args:
        ranks: ``[n_query]`` 1-based ranks, one per query (e.g. ``t2v_ranks(...).rank``).

    Returns:
        ``{"R@1", "R@5", "R@10", "MdR", "MnR"}`` as floats; R@K in percent.

    Raises:
        ValueError: if ``ranks`` is empty, not 1-D or holds a value below 1.

    Example:
        >>> {k: round(v, 2) for k, v in summarize(np.array([1, 2, 3])).items()}
        {'R@1': 33.33, 'R@5': 100.0, 'R@10': 100.0, 'MdR': 2.0, 'MnR': 2.0}
    """
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array [n_query], got shape {r.shape}")
    if (r < 1).any():
        raise ValueError(f"ranks must be 1-based (>= 1), got minimum {r.min()}")
    out = {f"R@{k}": float(100.0 * np.mean(r <= k)) for k in _RECALL_KS}
    out["MdR"] = float(np.median(r))
    out["MnR"] = float(np.mean(r))
    return out


def pairwise_accuracy(
    scores: ArrayLike, caption_video: ArrayLike, group_id: ArrayLike, variant: Sequence[str] | np.ndarray
) -> dict[str, dict[str, float]]:
    """Hard-negative accuracy of the synthetic benchmark, per hard-negative variant.

    Videos sharing a ``group_id >= 0`` form a group with exactly one ``"original"`` video ``o``; every other
    video ``n`` of the group is a hard negative (variant e.g. ``"colour_swap"``, ``"reversal"``). Both
    directions are compared: each caption ``c`` of ``o`` compares ``s(c, o)`` with ``s(c, n)``, and each
    caption ``c`` of ``n`` compares ``s(c, n)`` with ``s(c, o)``. A comparison counts 1 if the true video
    scores strictly higher, 0.5 on an exact tie, 0 otherwise.

    Args:
        scores: ``[n_text, n_video]`` similarity matrix.
        caption_video: ``[n_text]`` int, index of each caption's ground-truth video.
        group_id: ``[n_video]`` int, hard-negative group of each video; -1 (any negative) means no group.
        variant: ``[n_video]`` str, ``"original"`` or the hard-negative variant name of each video.

    Returns:
        ``{variant: {"accuracy": percent, "comparisons": count}}`` for each hard-negative variant present in a
        group (accuracy is NaN if that variant has no comparisons); ``{}`` when no video is in a group.

    Raises:
        ValueError: on malformed inputs, or a group without exactly one ``"original"`` video.

    Example:
        >>> scores = np.array([[0.9, 0.4], [0.5, 0.5]])  # caption 0 -> original 0, caption 1 -> swap 1
        >>> pairwise_accuracy(scores, np.array([0, 1]), np.array([0, 0]), ["original", "colour_swap"])
        {'colour_swap': {'accuracy': 75.0, 'comparisons': 2}}
    """
    s, cv = _check(scores, caption_video)
    return _pairwise(s, cv, group_id, variant)


def _pairwise_rows(s: torch.Tensor, cv: torch.Tensor, group_id: Any, variant: Any) -> tuple[list, list, list, set]:
    """Every hard-negative comparison (caption index, negative variant, outcome 1 / 0.5 / 0) and the variants met
    (a variant whose videos have no caption has no comparison, but is reported with a NaN accuracy)."""
    n_video = s.shape[1]
    gid = np.asarray(group_id.detach().cpu() if isinstance(group_id, torch.Tensor) else group_id)
    var = np.asarray(variant, dtype=object)
    if gid.shape != (n_video,) or gid.dtype.kind not in "iu":
        raise ValueError(f"group_id must be int [n_video] = [{n_video}], got {gid.dtype} {gid.shape}")
    if var.shape != (n_video,):
        raise ValueError(f"variant must be [n_video] = [{n_video}] strings, got shape {var.shape}")

    captions_of: list[list[int]] = [[] for _ in range(n_video)]  # video -> its caption indices
    for c, v in enumerate(cv.tolist()):
        captions_of[v].append(c)
    queries, kinds, outcomes, seen = [], [], [], set()
    for g in np.unique(gid[gid >= 0]).tolist():
        members = np.flatnonzero(gid == g).tolist()
        originals = [v for v in members if var[v] == _ORIGINAL]
        if len(originals) != 1:
            raise ValueError(f"group {g} must have exactly one {_ORIGINAL!r} video, got {len(originals)}")
        o = originals[0]
        for n in members:
            if n == o:
                continue
            seen.add(str(var[n]))
            for true, false in ((o, n), (n, o)):  # captions of the original, then captions of the negative
                rows = torch.as_tensor(captions_of[true], dtype=torch.int64, device=s.device)
                s_true, s_false = s[rows, true], s[rows, false]  # [n_captions(true)]
                outcome = (s_true > s_false).double() + 0.5 * (s_true == s_false).double()
                queries += captions_of[true]
                kinds += [str(var[n])] * len(captions_of[true])
                outcomes += outcome.tolist()
    return queries, kinds, outcomes, seen


def pairwise_outcomes(
    scores: ArrayLike, caption_video: ArrayLike, group_id: ArrayLike, variant: Sequence[str] | np.ndarray
) -> dict[str, np.ndarray]:
    """The comparisons behind :func:`pairwise_accuracy`, one per row, for paired statistics over queries.

    Returns:
        ``{"query": caption index, "negative": variant name, "outcome": 1 / 0.5 / 0}`` as arrays of equal length.

    Example:
        >>> out = pairwise_outcomes(np.array([[0.9, 0.4], [0.5, 0.5]]), np.array([0, 1]), np.array([0, 0]),
        ...                         ["original", "colour_swap"])
        >>> out["query"].tolist(), out["outcome"].tolist()
        ([0, 1], [1.0, 0.5])
    """
    s, cv = _check(scores, caption_video)
    queries, kinds, outcomes, _ = _pairwise_rows(s, cv, group_id, variant)
    return {"query": np.asarray(queries, dtype=np.int64), "negative": np.asarray(kinds, dtype=object),
            "outcome": np.asarray(outcomes, dtype=np.float64)}  # fmt: skip


def _pairwise(s: torch.Tensor, cv: torch.Tensor, group_id: Any, variant: Any) -> dict[str, dict[str, float]]:
    _, kinds, outcomes, seen = _pairwise_rows(s, cv, group_id, variant)
    correct: dict[str, float] = dict.fromkeys(seen, 0.0)
    count: dict[str, int] = dict.fromkeys(seen, 0)
    for kind, outcome in zip(kinds, outcomes, strict=True):
        correct[kind] = correct.get(kind, 0.0) + outcome
        count[kind] = count.get(kind, 0) + 1
    out = {}
    for name in sorted(count):
        accuracy = 100.0 * correct[name] / count[name] if count[name] else float("nan")
        out[name] = {"accuracy": accuracy, "comparisons": count[name]}
    return out


def retrieval_metrics(
    scores: ArrayLike,
    caption_video: ArrayLike,
    group_id: ArrayLike | None = None,
    variant: Sequence[str] | np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """All retrieval metrics of one score matrix: t2v, v2t and (if groups are given) hard-negative accuracy.

    Args:
        scores: ``[n_text, n_video]`` similarity matrix.
        caption_video: ``[n_text]`` int, index of each caption's ground-truth video.
        group_id: optional ``[n_video]`` int hard-negative group per video (-1: none); needs ``variant``.
        variant: optional ``[n_video]`` str variant name per video; needs ``group_id``.

    Returns:
        ``{"t2v": {...}, "v2t": {...}, "pairwise": {...}}``. ``t2v`` and ``v2t`` hold :func:`summarize`'s
        keys plus ``"ties"`` (total ties over all queries) and ``"queries"`` (number of queries); ``v2t`` also
        holds ``"videos_without_captions"``. ``pairwise`` is :func:`pairwise_accuracy`, or ``{}`` without
        groups.

    Raises:
        ValueError: on malformed inputs, or when only one of ``group_id`` and ``variant`` is given.

    Example:
        >>> m = retrieval_metrics(np.eye(3), np.array([0, 1, 2]))
        >>> m["t2v"]["R@1"], m["v2t"]["queries"], m["pairwise"]
        (100.0, 3, {})
    """
    if (group_id is None) != (variant is None):
        given = "group_id" if variant is None else "variant"
        raise ValueError(f"group_id and variant must be given together, got only {given}")
    s, cv = _check(scores, caption_video)  # validated once, shared by every metric below
    out: dict[str, dict[str, Any]] = {}
    for name, ranks in (("t2v", _t2v(s, cv)), ("v2t", _v2t(s, cv, "captions"))):
        out[name] = {**summarize(ranks.rank), "ties": int(ranks.ties.sum()), "queries": int(ranks.rank.size)}
    out["v2t"]["videos_without_captions"] = s.shape[1] - out["v2t"]["queries"]
    out["pairwise"] = {} if group_id is None else _pairwise(s, cv, group_id, variant)
    return out
