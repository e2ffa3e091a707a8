"""Two-stage retrieval: a first-stage method retrieves the top k, a pair scorer re-orders them (Miech et al. 2021).

For each text query: the first stage (an embedding method, e.g. ``dual_seq``) scores the whole gallery; its top
``k`` videos are scored by the second stage (a pair method, e.g. ``cross_encoder``) and re-ordered by

* ``cross``: the second stage's score alone;
* ``cross+dual``: the second stage's score plus ``fuse_weight`` x the first stage's score (both in logit units;
  ``fuse_weight: null`` takes the first stage's learned inverse temperature).

Videos outside the top k keep the first stage's order below the re-ranked ones, so a full score matrix (and every
metric of ``vtrbench.metrics``) is defined. Each (k, fusion) pair is reported as its own method:
``{name}@{k}`` and ``{name}@{k}+dual``. Nothing is trained: both stages load their own ``model.pt``. The v2t
numbers of a re-ranked matrix are reported for completeness only; re-ranking is a text-to-video procedure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vtrbench.methods import Batch, RetrievalMethod

FUSIONS = ("cross", "cross+dual")


@dataclass
class RerankOptions:
    first: str = "dual_seq"  # configured embedding method that retrieves the candidates
    second: str = "cross_encoder"  # configured pair method that re-ranks them
    k: list[int] = field(default_factory=lambda: [10, 20])  # re-ranking depths (one reported method each)
    fuse: list[str] = field(default_factory=lambda: list(FUSIONS))  # "cross" and/or "cross+dual"
    fuse_weight: float | None = None  # weight of the first-stage score in "cross+dual" (None: its 1/temperature)

    def __post_init__(self) -> None:
        if not self.k or any(int(k) < 1 for k in self.k):
            raise ValueError(f"rerank: k must be a non-empty list of depths >= 1, got {self.k}")
        bad = [f for f in self.fuse if f not in FUSIONS]
        if not self.fuse or bad:
            raise ValueError(f"rerank: fuse must be a non-empty list of {', '.join(FUSIONS)}, got {self.fuse}")


class Rerank(RetrievalMethod):
    """Configuration holder: re-ranking is evaluated by :func:`evaluate_rerank`, never trained."""

    kind = "rerank"
    options_class = RerankOptions

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        raise RuntimeError("rerank is not trained: it loads the first- and second-stage methods' model.pt")


def variant_names(name: str, options: dict[str, Any]) -> list[str]:
    """Reported method names, in config order: ``{name}@{k}`` (cross) and ``{name}@{k}+dual`` (cross+dual)."""
    opts = RerankOptions(**{k: v for k, v in options.items() if k != "class"})
    return [f"{name}@{k}" + ("" if f == "cross" else "+dual") for k in opts.k for f in opts.fuse]


def rerank(first: Tensor, second: Tensor, candidates: Tensor) -> Tensor:
    """Scores whose ranking is the re-ranked list.

    Args:
        first: [n_text, n_video] first-stage scores.
        second: [n_text, k] second-stage (possibly fused) scores of ``candidates``.
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


def top_candidates(first: Tensor, k: int) -> Tensor:
    """[n_text, k] indices of the first stage's top k (stable: a tie keeps the lower video index first)."""
    order = torch.sort(first, dim=1, descending=True, stable=True).indices
    return order[:, : min(k, first.shape[1])]


def first_stage_weight(method: RetrievalMethod) -> float:
    """The first stage's learned inverse temperature (its scores in logit units), 1.0 if it has none."""
    for attr in ("nce", "global_nce"):
        module = getattr(method, attr, None)
        if module is not None and hasattr(module, "scale"):
            return float(module.scale())
    return 1.0


@torch.no_grad()
def evaluate_rerank(
    config: dict[str, Any], name: str, seed: int, data_dir: str | Path, runs_dir: str | Path, split: str = "test"
) -> list[dict[str, Any]]:
    """Evaluate every (k, fusion) variant of rerank method ``name``; writes ``{runs_dir}/{variant}/seed{seed}/``.

    ``runs_dir`` is ``results/runs/{dataset}``: the stages' weights are read from
    ``{runs_dir}/{first|second}/seed{seed}/model.pt``.
    """
    from vtrbench.data.records import load_split
    from vtrbench.evaluate import Evaluation, encode_gallery, encode_queries, write_results
    from vtrbench.metrics import retrieval_metrics
    from vtrbench.runs import load_trained
    from vtrbench.train import pick_device, split_tokens

    opts = RerankOptions(**{k: v for k, v in config["methods"][name].items() if k != "class"})
    for stage in (opts.first, opts.second):
        if stage not in config["methods"]:
            raise ValueError(f"methods.{name}: stage {stage!r} is not a configured method")
    torch.set_num_threads(config["train"]["threads"])
    device = pick_device(config["train"]["device"])
    runs_dir = Path(runs_dir)
    data = load_split(data_dir, split)
    frames, batch = config["eval"]["frames"], config["eval"]["batch_size"]
    stages = {}
    for stage in (opts.first, opts.second):
        setup = load_trained(config, stage, seed, data_dir, runs_dir / stage / f"seed{seed}" / "model.pt")
        method = setup.method.to(device)
        gallery = encode_gallery(method, data, frames, batch, device)
        queries = encode_queries(method, split_tokens(setup, data), batch, device)
        stages[stage] = (
            method,
            {k: v.to(device) for k, v in queries.items()},
            {k: v.to(device) for k, v in gallery.items()},
        )
    first_method, q1, g1 = stages[opts.first]
    second_method, q2, g2 = stages[opts.second]
    first = first_method.score(q1, g1).float()  # [n_text, n_video]
    cand = top_candidates(first, max(opts.k))  # [n_text, kmax]
    n_text, kmax = cand.shape
    text, mask = q2["tokens"], q2["mask"]
    width = max(int(mask.sum(1).max()), 1)
    cross = second_method.pair_scores(  # [n_text * kmax] one fusion pass per candidate pair
        text[:, None, :width].expand(-1, kmax, -1, -1).flatten(0, 1),
        mask[:, None, :width].expand(-1, kmax, -1).flatten(0, 1),
        g2["tokens"][cand.flatten()],
    ).view(n_text, kmax)
    if getattr(second_method.opts, "residual", False):
        cross = cross + second_method.dual_scale() * (q2["dual"][:, None] * g2["dual"][cand]).sum(-1)
    weight = opts.fuse_weight if opts.fuse_weight is not None else first_stage_weight(first_method)
    ceiling = {}
    results = []
    for k in opts.k:
        kk = min(k, kmax)
        hit = (cand[:, :kk] == torch.as_tensor(data.caption_video, device=cand.device)[:, None]).any(1)
        ceiling[k] = float(hit.float().mean() * 100)
        for fuse in opts.fuse:
            second = cross[:, :kk] + (weight * first.gather(1, cand[:, :kk]) if fuse == "cross+dual" else 0.0)
            scores = rerank(first, second, cand[:, :kk]).cpu()
            variant = f"{name}@{k}" + ("" if fuse == "cross" else "+dual")
            metrics = retrieval_metrics(scores, data.caption_video, data.group_id, data.variant)
            extra = {
                "method": variant,
                "method_class": "rerank",
                "kind": "rerank",
                "seed": seed,
                "dataset": config["dataset"]["name"],
                "split": split,
                "rerank": {"first": opts.first, "second": opts.second, "k": k, "fuse": fuse, "fuse_weight": weight},
                "rerank_ceiling": ceiling[k],  # % of queries whose positive is in the first stage's top k
                "gallery_floats_per_video": sum(int(v[0].numel()) for v in (*g1.values(), *g2.values())),
                "parameters": sum(p.numel() for m in (first_method, second_method) for p in m.parameters()),
            }
            write_results(Evaluation(metrics=metrics, scores=scores), data, runs_dir / variant / f"seed{seed}", extra)
            results.append({**extra, **metrics})
    return results
