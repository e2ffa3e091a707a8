"""Evaluate a method on a split: encode the gallery once, encode the queries, score, rank.

Used twice: on ``val`` during training (model selection) and on ``test`` by the evaluate step
(:func:`evaluate_checkpoint`), which writes ``metrics.json`` and the raw per-query ranks ``ranks.parquet`` (so a
new metric needs no re-run). An external method's score matrix (:func:`evaluate_scores`) is ranked by the same
code, so its files are the suite's own and it is compared like every other method. With ``eval.postprocess`` on
(:mod:`vtrbench.postprocess`), the test evaluation also writes the rescored variant's files, tagged with its name,
beside the plain ones; validation (model selection) never applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from vtrbench import resultfiles
from vtrbench.candidates import merge, top_candidates
from vtrbench.data.batches import Tokens
from vtrbench.data.records import SplitData, load_split
from vtrbench.device import start
from vtrbench.encoding import encode_split
from vtrbench.methods import (
    DEFAULT_DESIGN,
    PairMethod,
    RetrievalMethod,
    check_design,
    check_scores,
    design_of,
    gallery_floats_per_video,
)
from vtrbench.metrics import pairwise_outcomes, retrieval_metrics, t2v_ranks, v2t_ranks
from vtrbench.postprocess import Postprocess, rescore, settings
from vtrbench.runs import effective_train, load_trained, split_tokens


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    scores: Tensor  # [n_text, n_video]
    queries: np.ndarray | None = None  # caption indices of the rows of ``scores`` (None: every caption)


@torch.no_grad()
def evaluate(
    method: RetrievalMethod,
    split: SplitData,
    tokens: Tokens,
    config: dict[str, Any],
    device: torch.device,
    name: str = "method",
    shortlist: bool = False,
) -> Evaluation:
    """Full text->video and video->text evaluation of ``method`` on ``split`` (encoded by
    :func:`vtrbench.encoding.encode_split`: the config's frames, batch size and precision).

    ``shortlist``: a pair method that carries a cheap first stage (``PairMethod.shortlist``) re-scores only that
    stage's top k of every caption (how it is validated while training: all captions, at k pairs each); otherwise
    a pair method scores every video, on its ``query_subset`` of captions.
    """
    was_training = method.training
    method.eval()
    cheap = shortlist and isinstance(method, PairMethod)
    subset = None if cheap else method.query_subset(len(split.captions))  # a slow pair scorer: a caption subset
    encoded = encode_split(method, split, tokens if subset is None else tokens[subset], config, device)
    queries, gallery = encoded.queries, encoded.gallery
    n_text = len(split.captions) if subset is None else len(subset)
    short = method.shortlist(queries, gallery) if cheap else None
    if short is not None:
        first, k = short
        cand = top_candidates(first, k)
        raw = merge(first, method.score_candidates(queries, gallery, cand), cand)
    else:
        raw = method.score(queries, gallery)
    scores = check_scores(raw.float().cpu(), n_text, split.num_videos, name)
    method.train(was_training)
    caption_video = split.caption_video if subset is None else split.caption_video[subset]
    metrics = retrieval_metrics(scores, caption_video, split.group_id, split.variant)
    metrics["gallery_floats_per_video"] = gallery_floats_per_video(gallery)
    if subset is not None:
        metrics["query_subset"] = len(subset)  # t2v over these captions only, against the full gallery
    return Evaluation(metrics=metrics, scores=scores, queries=subset)


def validation_score(metrics: dict[str, Any], val_metric: str) -> float:
    """The number model selection maximises: t2v R@1+R@5+R@10 (``rsum``) or t2v R@1."""
    t2v = metrics["t2v"]
    return t2v["R@1"] + t2v["R@5"] + t2v["R@10"] if val_metric == "rsum" else t2v["R@1"]


def write_results(
    evaluation: Evaluation,
    split: SplitData,
    out_dir: Path,
    extra: dict[str, Any],
    postprocess: Postprocess | None = None,
) -> None:
    """``metrics.json`` (summary + run info), ``ranks.parquet`` (one row per query) and ``pairwise.parquet``, all
    atomically. With a ``postprocess`` variant on (test split only), also ``metrics_{tag}.json``,
    ``ranks_{tag}.parquet`` and ``pairwise_{tag}.parquet`` of the rescored matrix (:mod:`vtrbench.postprocess`),
    beside the plain files, which are written exactly as without it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = np.arange(len(split.captions)) if evaluation.queries is None else np.asarray(evaluation.queries)
    _write_files(evaluation.scores, evaluation.metrics, rows, split, out_dir, extra, "")
    if postprocess is None or not postprocess.enabled:
        return
    scores = rescore(evaluation.scores, postprocess)  # over the rows scored (a pair method's caption subset)
    metrics = retrieval_metrics(scores, split.caption_video[rows], split.group_id, split.variant)
    kept = {k: v for k, v in evaluation.metrics.items() if k not in metrics}  # gallery floats, query subset
    tagged = {**extra, "postprocess": postprocess.describe(), **kept, **metrics}
    _write_files(scores, tagged, rows, split, out_dir, {}, f"_{postprocess.tag}")


def _write_files(
    scores: Tensor,
    metrics: dict[str, Any],
    rows: np.ndarray,
    split: SplitData,
    out_dir: Path,
    extra: dict[str, Any],
    suffix: str,
) -> None:
    """``metrics{suffix}.json``, ``ranks{suffix}.parquet`` and ``pairwise{suffix}.parquet`` of one score matrix."""
    caption_video = split.caption_video[rows]
    t2v = t2v_ranks(scores, caption_video)
    v2t = v2t_ranks(scores, caption_video)
    ranked = np.flatnonzero(np.bincount(caption_video, minlength=split.num_videos))  # videos with a caption
    ranks = pd.concat(
        [
            pd.DataFrame(
                {
                    "direction": "t2v",
                    "query": rows,
                    "rank": t2v.rank,
                    "ties": t2v.ties,
                    "video_id": [split.video_ids[v] for v in caption_video],
                }
            ),
            pd.DataFrame(
                {
                    "direction": "v2t",
                    "query": ranked,
                    "rank": v2t.rank,
                    "ties": v2t.ties,
                    "video_id": [split.video_ids[v] for v in ranked],
                }
            ),
        ],
        ignore_index=True,
    )
    resultfiles.write_parquet(ranks, out_dir / f"ranks{suffix}.parquet")
    outcomes = {"query": np.zeros(0, np.int64), "negative": np.zeros(0, object), "outcome": np.zeros(0)}
    if (split.group_id >= 0).all():  # the comparisons behind the pairwise accuracies, one row each
        outcomes = pairwise_outcomes(scores, caption_video, split.group_id, split.variant)
        outcomes["query"] = rows[outcomes["query"]]
    resultfiles.write_parquet(pd.DataFrame(outcomes), out_dir / f"pairwise{suffix}.parquet")
    resultfiles.write_json(out_dir / f"metrics{suffix}.json", {**extra, **metrics})


def read_scores(path: str | Path, split: SplitData, split_name: str = "test") -> Tensor:
    """An external method's ``scores.npy``: float [n_caption, n_video] of the prepared split, row i = caption i,
    column j = video j in the split's order. One line naming the file otherwise."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err}); write it with numpy.save") from None
    expected = (len(split.captions), split.num_videos)
    if array.shape != expected:
        raise ValueError(
            f"{path}: scores must be [n_caption, n_video] = {list(expected)} of the prepared {split_name} split "
            f"(one row per caption, every video once), got {list(array.shape)}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{path}: scores must be real numbers, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: {int((~np.isfinite(array)).sum())} scores are NaN or infinite")
    return torch.from_numpy(array.astype(np.float32))


def evaluate_scores(
    config: dict[str, Any],
    method_name: str,
    seed: int,
    data_dir: str | Path,
    scores_path: str | Path,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Rank an external method's test scores (README, "Adding a method", way b) as a trained method's are ranked:
    ``metrics.json``, ``ranks.parquet`` and ``pairwise.parquet`` on the suite's own test split and hard-negative
    pairs."""
    data = load_split(data_dir, "test")
    scores = read_scores(scores_path, data)
    metrics = retrieval_metrics(scores, data.caption_video, data.group_id, data.variant)
    extra = {
        "method": method_name,
        "method_class": config["methods"][method_name]["class"],
        "kind": "external",
        "design": check_design(config["methods"][method_name].get("design", DEFAULT_DESIGN), method_name),
        "seed": seed,
        "dataset": config["dataset"]["name"],
        "split": "test",
    }
    write_results(Evaluation(metrics=metrics, scores=scores), data, Path(out_dir), extra, settings(config))
    return {**extra, **metrics}


def evaluate_checkpoint(
    config: dict[str, Any],
    method_name: str,
    seed: int,
    data_dir: str | Path,
    model_path: str | Path,
    out_dir: str | Path,
    split: str = "test",
    tokens_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``model.pt`` on ``split``; writes ``metrics.json``, ``ranks.parquet`` (and ``pairwise.parquet``) under
    ``out_dir``. On ``val`` a pair method is scored as training validated it (``shortlist``), so the val numbers are
    the ones model selection saw."""
    device = start(config["train"]["threads"], config["train"]["device"])
    setup = load_trained(config, method_name, seed, data_dir, model_path, tokens_dir)
    setup.method.to(device)
    data = load_split(data_dir, split)
    result = evaluate(
        setup.method, data, split_tokens(setup, data), config, device, method_name, shortlist=split == "val"
    )
    extra = {
        "method": method_name,
        "method_class": config["methods"][method_name]["class"],
        "kind": setup.method.kind,
        "design": design_of(setup.method),
        "seed": seed,
        "dataset": config["dataset"]["name"],
        "split": split,
        "selected_step": setup.selected["step"],
        "val_score": setup.selected["val"],
        "train_steps": effective_train(config, setup.method)["steps"],
        "commit": setup.selected["commit"],
        "parameters": sum(p.numel() for p in setup.method.parameters()),
    }
    # the post-processing variant is a test-split report only: the val files are what model selection saw
    write_results(result, data, Path(out_dir), extra, settings(config) if split == "test" else None)
    return {**extra, **result.metrics}
