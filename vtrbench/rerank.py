"""Two-stage retrieval: an embedding method retrieves the top k, a pair method re-scores them (Miech et al. 2021).

Generic over stages: ``first`` is any configured :class:`~vtrbench.methods.EmbeddingMethod`, ``second`` any
:class:`~vtrbench.methods.PairMethod`, used only through their interfaces (``score``, ``logit_scale``,
``score_candidates``, ``interaction_scores``). For each text query the final score of a candidate is

    s = pair score + w * logit_scale(first) * first-stage score      (BLIP's ITM + ITC; each counted once)

and the candidates are ordered by ``s`` above every other video, which keeps the first stage's order (so every
metric of ``vtrbench.metrics`` is defined on the full gallery). The depth ``k`` and the weight ``w`` are chosen on
the **val** split (best t2v R@1; ties go to the smaller k, then the smaller w: the cheaper system), never on
test; the whole (k, w) grid is written for both splits (``rerank_sweep.csv``). Nothing is trained here: both
stages load their own ``model.pt``.

Beside the chosen system, ``metrics.json`` holds ``interaction``: what the pair method's own joint model knows,
without its warm-start embedding or the first stage (``interaction_scores``): pairwise accuracy per hard-negative
type over every caption's within-group pairs, and the t2v R@1 of re-ranking the top k by it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from vtrbench import resultfiles
from vtrbench.candidates import merge, top_candidates
from vtrbench.data.records import SplitData, load_split
from vtrbench.device import start
from vtrbench.encoding import Encoded, encode_stage
from vtrbench.evaluate import Evaluation, write_results
from vtrbench.methods import Batch, EmbeddingMethod, PairMethod, RetrievalMethod
from vtrbench.metrics import pairwise_accuracy, retrieval_metrics
from vtrbench.options import Count, NonNegative
from vtrbench.runs import load_trained


@dataclass
class RerankOptions:
    first: str  # configured embedding method that retrieves the candidates
    second: str  # configured pair method that re-scores them
    k: list[Count] = field(default_factory=lambda: [5, 10, 20, 50])  # depths tried on val
    weights: list[NonNegative] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])  # w of the first-stage score

    def __post_init__(self) -> None:
        if not self.k or not self.weights:
            raise ValueError(f"rerank: k and weights must be non-empty lists, got k={self.k}, weights={self.weights}")


class Rerank(RetrievalMethod):
    """Configuration holder: re-ranking is evaluated by :func:`evaluate_rerank`, never trained."""

    kind = "rerank"
    design = "two-stage"
    options_class = RerankOptions

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        raise RuntimeError("rerank is not trained: it loads the first- and second-stage methods' model.pt")


def options_of(entry: dict[str, Any]) -> RerankOptions:
    return RerankOptions(**{k: v for k, v in entry.items() if k != "class"})


@dataclass
class SplitScores:
    """Everything the (k, w) grid needs on one split: first-stage scores, candidates, pair scores of them."""

    split: SplitData
    first: Tensor  # [n_text, n_video]
    candidates: Tensor  # [n_text, kmax]
    pair: Tensor  # [n_text, kmax]
    interaction: Tensor  # [n_text, kmax]
    scale: float  # the first stage's logit scale


def check_stages(first: RetrievalMethod, second: RetrievalMethod, opts: RerankOptions) -> None:
    if not isinstance(first, EmbeddingMethod):
        raise ValueError(f"rerank: first={opts.first!r} must be an embedding method, it is a {first.kind} method")
    if not isinstance(second, PairMethod):
        raise ValueError(f"rerank: second={opts.second!r} must be a pair method, it is a {second.kind} method")


@torch.no_grad()
def split_scores(first: Encoded, second: Encoded, split: SplitData, kmax: int) -> SplitScores:
    first_method, pair = first.method, second.method
    assert isinstance(first_method, EmbeddingMethod) and isinstance(pair, PairMethod)
    scores = first_method.score(first.queries, first.gallery).float()  # [n_text, n_video]
    cand = top_candidates(scores, kmax)  # [n_text, kmax]
    pair_scores = pair.score_candidates(second.queries, second.gallery, cand).float()
    if type(pair).interaction_scores is PairMethod.interaction_scores:  # the default: the same scores, not rescored
        interaction = pair_scores
    else:
        interaction = pair.interaction_scores(second.queries, second.gallery, cand).float()
    return SplitScores(split, scores, cand, pair_scores, interaction, float(first_method.logit_scale()))


def fused(scores: SplitScores, k: int, weight: float) -> Tensor:
    """[n_text, n_video] ranking scores of the system (k, w)."""
    cand = scores.candidates[:, :k]
    final = scores.pair[:, :k] + weight * scores.scale * scores.first.gather(1, cand)
    return merge(scores.first, final, cand)


def ceiling(scores: SplitScores, k: int) -> float:
    """% of queries whose positive is among the first stage's top k (the best any re-ranker can do)."""
    truth = torch.as_tensor(scores.split.caption_video, device=scores.candidates.device)[:, None]
    return float((scores.candidates[:, :k] == truth).any(1).float().mean() * 100)


def sweep(scores: dict[str, SplitScores], opts: RerankOptions) -> pd.DataFrame:
    """t2v metrics of every (k, w) on every split: one row per (split, k, weight)."""
    rows = []
    for split_name, s in scores.items():
        for k in opts.k:
            kk = min(int(k), s.candidates.shape[1])
            for weight in opts.weights:
                metrics = retrieval_metrics(fused(s, kk, weight).cpu(), s.split.caption_video)
                t2v = {f"t2v_{m}": metrics["t2v"][m] for m in ("R@1", "R@5", "R@10", "MdR", "MnR")}
                rows.append(
                    {"split": split_name, "k": int(k), "weight": float(weight), **t2v, "ceiling": ceiling(s, kk)}
                )
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame) -> tuple[int, float]:
    """The (k, w) with the best val t2v R@1; ties: the smaller k, then the smaller w (the cheaper system)."""
    val = table[table.split == "val"].sort_values(["t2v_R@1", "k", "weight"], ascending=[False, True, True])
    best = val.iloc[0]
    return int(best["k"]), float(best["weight"])


def interaction_view(second: Encoded, scores: SplitScores, k: int) -> dict[str, Any]:
    """What the joint model alone knows: pairwise accuracy over every caption's group pairs, and its re-rank R@1."""
    split = scores.split
    pair = second.method
    assert isinstance(pair, PairMethod)
    out: dict[str, Any] = {}
    if (split.group_id >= 0).all():
        group = _group_candidates(split)  # [n_text, G]
        with torch.no_grad():
            s = pair.interaction_scores(second.queries, second.gallery, group.to(scores.first.device)).float().cpu()
        dense = torch.full((len(split.captions), split.num_videos), float(s.min()) - 1.0)  # only group pairs count
        dense.scatter_(1, group, s)
        out["pairwise"] = pairwise_accuracy(dense, split.caption_video, split.group_id, split.variant)
    ranked = merge(scores.first, scores.interaction[:, :k], scores.candidates[:, :k])
    out["rerank_R@1"] = retrieval_metrics(ranked.cpu(), split.caption_video)["t2v"]["R@1"]
    return out


def _group_candidates(split: SplitData) -> Tensor:
    """[n_text, G]: the videos of each caption's hard-negative group (groups have equal sizes)."""
    members: dict[int, list[int]] = {}
    for v, g in enumerate(split.group_id.tolist()):
        members.setdefault(g, []).append(v)
    rows = [members[int(split.group_id[v])] for v in split.caption_video.tolist()]
    return torch.tensor(rows, dtype=torch.long)


def evaluate_rerank(
    config: dict[str, Any],
    name: str,
    seed: int,
    data_dir: str | Path,
    first_model: str | Path,
    second_model: str | Path,
    out_dir: str | Path,
    tokens_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Choose (k, w) of re-ranker ``name`` on val, evaluate it on test; writes metrics.json, ranks.parquet and
    rerank_sweep.csv under ``out_dir``."""
    opts = options_of(config["methods"][name])
    device = start(config["train"]["threads"], config["train"]["device"])
    setups = [
        load_trained(config, m, seed, data_dir, p, tokens_dir)
        for m, p in ((opts.first, first_model), (opts.second, second_model))
    ]
    check_stages(setups[0].method, setups[1].method, opts)
    kmax = max(int(k) for k in opts.k)
    scores, stages = {}, {}
    for split_name in ("val", "test"):
        split = load_split(data_dir, split_name)
        loaded = [encode_stage(setup, split, device) for setup in setups]
        stages[split_name] = loaded
        scores[split_name] = split_scores(loaded[0], loaded[1], split, kmax)
    table = sweep(scores, opts)
    k, weight = choose(table)
    test = scores["test"]
    ranked = fused(test, min(k, kmax), weight).cpu()
    metrics = retrieval_metrics(ranked, test.split.caption_video, test.split.group_id, test.split.variant)
    first_method, second_method = setups[0].method, setups[1].method
    extra = {
        "method": name,
        "method_class": "rerank",
        "kind": "rerank",
        "design": Rerank.design,
        "seed": seed,
        "dataset": config["dataset"]["name"],
        "split": "test",
        "rerank": {"first": opts.first, "second": opts.second, "k": k, "weight": weight, "scale": test.scale},
        "rerank_ceiling": ceiling(test, min(k, kmax)),
        "interaction": interaction_view(stages["test"][1], test, min(k, kmax)),
        "gallery_floats_per_video": sum(int(v[0].numel()) for s in stages["test"] for v in s.gallery.values()),
        "parameters": sum(p.numel() for m in (first_method, second_method) for p in m.parameters()),
        "commit": setups[1].selected["commit"],
    }
    out_dir = Path(out_dir)
    write_results(Evaluation(metrics=metrics, scores=ranked), test.split, out_dir, extra)
    resultfiles.write_csv(table.assign(method=name, seed=seed, chosen=(table.k == k) & (table.weight == weight)),
                          out_dir / "rerank_sweep.csv")  # fmt: skip
    return {**extra, **metrics, "sweep": table}
