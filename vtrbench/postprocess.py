"""Test-time post-processing of a score matrix: an opt-in evaluation *variant*, never the default.

Many published text-video numbers are not the model's own ranking: the whole test score matrix [n_text, n_video]
is rescored first, with a softmax over the **query** axis, so a video that scores high for every caption (a "hub")
is demoted. That uses the other test queries at once (test-set statistics, not available to a single online query),
so the suite reports it only as an additional variant beside the plain metrics (``eval.postprocess``; README,
"Protocol"), tagged with the variant's name, and model selection on val never applies it.

- ``dsl``: dual softmax (CAMoE, Cheng et al. 2021): ``S * softmax(S / T, dim=0)``, then ranked per query as usual.
  References: starmemda/CAMoE ``DSL.py`` line 9 (commit e953b583; ``sim_matrix * F.softmax(sim_matrix/temp,
  dim=0) * len(sim_matrix)``, the constant factor changes no rank); yuqi657/ts2_net ``main_task_retrieval.py``
  line 427 and ``metrics.py`` line 29 (commit 1d9d4d53; ``sim_matrix * softmax(sim_matrix, axis=0)`` on CLIP
  logits, i.e. ``T = 1`` in logit units = ``T = 0.01`` on cosines with CLIP's scale 100): the "inverted softmax"
  behind TS2-Net's 51.1 (47.0 without) MSR-VTT R@1 is this product. foolwood/DRL ranks the raw matrix
  (``main.py`` line 469, commit 475f96ce).
- ``inverted_softmax``: the inverted softmax of querybank normalisation (QB-Norm: Bogolin et al. 2022, "Cross
  Modal Retrieval with Querybank Normalisation"): ``softmax(S / T, dim=0)`` alone, with the **test queries
  themselves** as the querybank (the paper draws its querybank from training queries; this variant is the
  test-statistics form that published tables mix with it).
- ``none``: the identity.

``T`` is ``eval.postprocess_temperature`` (absent: :data:`DEFAULT_TEMPERATURE`, CLIP's logit scale 100 on cosine
scores). A method's scores are cosines (embedding methods) or logits (pair methods); one temperature means a
sharper softmax for the latter, as it does in the published code that applies it to whatever matrix it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

TYPES = ("none", "dsl", "inverted_softmax")
DEFAULT_TEMPERATURE = 0.01  # = 1 / CLIP's logit scale (100): TS2-Net's softmax(logits) on cosine scores
_COLUMN_BLOCK = 1 << 22  # scores per block of columns (the softmax runs down each column)


@dataclass(frozen=True)
class Postprocess:
    """One variant: its ``type`` (``none``, ``dsl``, ``inverted_softmax``) and its softmax ``temperature``."""

    type: str = "none"
    temperature: float = DEFAULT_TEMPERATURE

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"postprocess type must be one of {', '.join(TYPES)}, got {self.type!r}")
        if not (isinstance(self.temperature, int | float) and self.temperature > 0 and np.isfinite(self.temperature)):
            raise ValueError(f"postprocess temperature must be a number > 0, got {self.temperature!r}")

    @property
    def enabled(self) -> bool:
        return self.type != "none"

    @property
    def tag(self) -> str:
        """The name every file, table row and label of the variant carries (``metrics_dsl.json``, ``dual_mean
        [dsl]``)."""
        return self.type

    def describe(self) -> dict[str, Any]:
        """What the variant's ``metrics_{tag}.json`` records about it."""
        return {"type": self.type, "temperature": float(self.temperature), "tag": self.tag}


def settings(config: dict[str, Any]) -> Postprocess:
    """The variant a (validated) config asks for: ``eval.postprocess`` and ``eval.postprocess_temperature``; absent
    keys resolve to ``none`` (so a config that does not name the option keeps its run folders' fingerprints)."""
    section = config.get("eval", {}) or {}
    return Postprocess(
        str(section.get("postprocess", "none")), float(section.get("postprocess_temperature", DEFAULT_TEMPERATURE))
    )


def label(method: str, variant: Postprocess | str) -> str:
    """A table row's or figure's label of a post-processed number: the method with the variant's tag."""
    tag = variant.tag if isinstance(variant, Postprocess) else variant
    return f"{method} [{tag}]"


def rescore(scores: torch.Tensor | np.ndarray, variant: Postprocess) -> torch.Tensor:
    """The rescored matrix [n_text, n_video] (float64) of ``scores`` [n_text, n_video] (row = query caption).

    The softmax runs over the query axis (dim 0: each video's scores against every query), computed per block of
    columns in float64 so that tiny probabilities do not collapse into ties. ``none`` returns the scores unchanged.
    """
    s = scores if isinstance(scores, torch.Tensor) else torch.from_numpy(np.asarray(scores))
    if s.ndim != 2 or 0 in s.shape:
        raise ValueError(f"scores must be a non-empty 2-D matrix [n_text, n_video], got shape {tuple(s.shape)}")
    if not variant.enabled:
        return s
    s = s.detach().to(torch.float64)
    out = torch.empty_like(s)
    step = max(1, _COLUMN_BLOCK // s.shape[0])
    for start in range(0, s.shape[1], step):
        block = s[:, start : start + step]  # [n_text, k]
        weight = torch.softmax(block / variant.temperature, dim=0)
        out[:, start : start + step] = block * weight if variant.type == "dsl" else weight
    return out
