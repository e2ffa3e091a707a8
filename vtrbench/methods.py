"""The method interface (the one seam that matters) and the registry of methods by name.

Two kinds of method, as in BEIR's encoder / pair-scorer split:

* :class:`EmbeddingMethod` (dual encoder, CRET): ``encode_videos`` runs *offline*, once per video;
  ``encode_texts`` runs *online* per query; ``score`` is cheap because it is an inner product of two flat
  vectors (``query_vectors`` / ``gallery_vectors``), so the gallery can go into FAISS.
* :class:`PairMethod` (cross-encoder): the gallery holds cached per-video token features; ``score`` runs the
  fusion model on every (query, video) pair, so its online cost grows with the gallery.

Every method is an ``nn.Module`` built from the shared :class:`~vtrbench.backbones.Backbones` and its own
options; it returns its training loss as named ``*_loss`` terms, which the trainer sums and logs.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vtrbench.backbones import Backbones

Batch = dict[str, Tensor]
Features = dict[str, Tensor]

# name -> "module:Class". Strings, not classes, so the registry imports no method code until one is asked for
# (methods import this module for their base class). Users may also give "my_package.module:MyMethod" directly.
METHODS: dict[str, str] = {
    "dual_encoder": "baselines.dual_encoder:DualEncoder",
    "cret": "cret.model:CRET",
}


class RetrievalMethod(nn.Module):
    """Base class: subclasses implement the encoders, the score and the loss.

    Args:
        backbones: the shared text / frame / temporal encoders (identical for every method of a run).
        options: the method's own options from the config (everything but ``class``).
    """

    kind: ClassVar[str] = "abstract"
    options_class: ClassVar[type]  # the dataclass of the method's options (validated with the config)

    def __init__(self, backbones: Backbones, options: dict[str, Any]):
        super().__init__()
        self.backbones = backbones
        self.options = dict(options)

    def encode_videos(self, frames: Tensor) -> Features:
        """frames: [B, M, 3, H, W] float -> gallery features, each tensor [B, ...]."""
        raise NotImplementedError(f"{type(self).__name__}.encode_videos")

    def encode_texts(self, input_ids: Tensor, attention_mask: Tensor) -> Features:
        """input_ids, attention_mask: [B, L] -> query features, each tensor [B, ...]."""
        raise NotImplementedError(f"{type(self).__name__}.encode_texts")

    def score(self, queries: Features, gallery: Features) -> Tensor:
        """Similarity of every query to every gallery video: [n_text, n_video]."""
        raise NotImplementedError(f"{type(self).__name__}.score")

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """Training loss on a batch of B (video, caption) pairs matched on the diagonal: named ``*_loss`` terms.

        ``batch`` holds ``frames`` [B, M, 3, H, W], ``input_ids`` / ``attention_mask`` [B, L] and ``group_id`` [B]
        (hard-negative group of each video, -1 when none).
        """
        raise NotImplementedError(f"{type(self).__name__}.loss")


class EmbeddingMethod(RetrievalMethod):
    """Score = inner product of a flat query vector and a flat gallery vector (FAISS-compatible)."""

    kind = "embedding"

    def query_vectors(self, queries: Features) -> Tensor:
        """[n_text, D_flat] such that ``score == query_vectors @ gallery_vectors.T``."""
        raise NotImplementedError(f"{type(self).__name__}.query_vectors")

    def gallery_vectors(self, gallery: Features) -> Tensor:
        """[n_video, D_flat]; what an index stores per video."""
        raise NotImplementedError(f"{type(self).__name__}.gallery_vectors")

    def score(self, queries: Features, gallery: Features) -> Tensor:
        return self.query_vectors(queries) @ self.gallery_vectors(gallery).T


class PairMethod(RetrievalMethod):
    """Score needs a joint forward pass per (query, video) pair."""

    kind = "pair"


def resolve(class_name: str) -> type[RetrievalMethod]:
    """Map a registered name (or ``module:Class``) to the method class.

    Raises:
        ValueError: unknown name, listing the registered ones.
    """
    target = METHODS.get(class_name, class_name)
    if ":" not in target:
        raise ValueError(f"unknown method class {class_name!r}; choose one of: {', '.join(sorted(METHODS))}")
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import method class {target!r}: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, RetrievalMethod)):
        raise ValueError(f"{target!r} is not a RetrievalMethod subclass")
    return cls


def build_method(backbones: Backbones, method_config: dict[str, Any]) -> RetrievalMethod:
    """Instantiate a method from its config entry (``{"class": name, **options}``)."""
    options = dict(method_config)
    cls = resolve(options.pop("class"))
    return cls(backbones, options)


def gallery_floats_per_video(gallery: Features) -> int:
    """Number of floats a method stores per gallery video (the index's memory cost)."""
    return int(sum(t[0].numel() for t in gallery.values()))


@torch.no_grad()
def check_scores(scores: Tensor, n_text: int, n_video: int, method: str) -> Tensor:
    """Validate a method's output at the boundary: shape and finiteness."""
    if scores.shape != (n_text, n_video):
        raise ValueError(
            f"method {method!r}: scores must be [n_text, n_video] = {(n_text, n_video)}, got {tuple(scores.shape)}"
        )
    if not torch.isfinite(scores).all():
        raise FloatingPointError(f"method {method!r} produced non-finite scores (NaN/Inf); the model is broken")
    return scores
