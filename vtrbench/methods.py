"""The method interface (the one seam that matters) and the registry of methods by name.

Two kinds of method, as in BEIR's encoder / pair-scorer split:

* :class:`EmbeddingMethod` (dual encoder, CRET): ``encode_videos`` runs *offline*, once per video;
  ``encode_texts`` runs *online* per query; ``score`` is cheap because it is an inner product of two flat
  vectors (``query_vectors`` / ``gallery_vectors``), so the gallery can go into FAISS.
* :class:`PairMethod` (cross-encoder): the gallery holds cached per-video token features; ``score`` runs the
  fusion model on every (query, video) pair, so its online cost grows with the gallery.

Every method is an ``nn.Module`` built from the shared :class:`~vtrbench.backbones.Backbones` and its own
options; it returns its training loss as named ``*_loss`` terms, which the trainer sums and logs.

Orthogonal to the kind (what the harness can do with the scores), every method declares its *design class*
(``design``, one of :data:`DESIGNS`): where it sits on the spectrum from one vector per video to a joint model of
every pair, which the report's recall-latency figure and tables show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from vtrbench.backbones import Backbones
from vtrbench.options import Count, parse_options
from vtrbench.registry import DEFAULT_DESIGN, check_design, import_class, target
from vtrbench.registry import DESIGNS as DESIGNS  # re-exported: the design classes and what each means

if TYPE_CHECKING:
    from vtrbench.multivector import MultiVectors

Batch = dict[str, Tensor]
Features = dict[str, Tensor]

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (text [B, D], frames [B, M, D], logit scale) -> scalar


@dataclass
class NoOptions:
    """Options of a method that takes none (any key in its config entry is then an error)."""


@dataclass
class BudgetOptions:
    """What every trained method's entry may carry besides its own options (unless its options declare it)."""

    steps: Count | None = None  # this method's step budget (train.steps otherwise); the budget test multiplies it


def split_budget(options_class: type, options: dict[str, Any], where: str) -> tuple[BudgetOptions, dict[str, Any]]:
    """The harness's budget keys of a method entry, parsed, and the method's own options (the rest). A class whose
    options declare ``steps`` itself (a warm-started method's fine-tuning budget) keeps it."""
    own = {f.name for f in fields(options_class)}
    harness = {k: options[k] for k in ("steps",) if k in options and k not in own}
    rest = {k: v for k, v in options.items() if k not in harness}
    return parse_options(BudgetOptions, harness, where), rest


class RetrievalMethod(nn.Module):
    """Base class: subclasses implement the encoders, the score and the loss.

    Args:
        backbones: the shared text / frame / temporal encoders (identical for every method of a run).
        options: the method's own options from the config (everything but ``class``).
        methods: the config's whole method table, for a method that builds another configured method on the same
            backbones (a cross-encoder embeds the embedding method it is warm-started from, ``init_from``).
    """

    kind: ClassVar[str] = "abstract"
    design: ClassVar[str] = DEFAULT_DESIGN  # its design class, one of DESIGNS (what the report's tables show)
    options_class: ClassVar[type] = NoOptions  # the dataclass of the method's options (validated with the config)

    def __init__(self, backbones: Backbones, options: dict[str, Any], methods: dict[str, Any] | None = None):
        super().__init__()
        self.backbones = backbones
        where = type(self).__name__
        self.budget, own = split_budget(self.options_class, dict(options), where)
        self.opts = parse_options(self.options_class, own, where)

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

    # Optional hooks (defaults: no warm start, one lr, the config's budget, every caption evaluated).

    def warm_start(self, state_dict: dict[str, Tensor]) -> None:
        """Initialise from another method's trained weights (``init_from``): by default copy the backbones."""
        own = {k: v for k, v in state_dict.items() if k.startswith("backbones.")}
        self.load_state_dict(own, strict=False)

    def param_lr_scales(self) -> dict[str, float]:
        """Parameter-name prefix -> lr multiplier (the first matching prefix wins; others use the trainer's)."""
        return {}

    def train_overrides(self) -> dict[str, Any]:
        """``train`` keys this method overrides: its entry's ``steps`` (a budget of its own, declared in the config:
        the at-plateau protocol gives a slower learner more steps), or e.g. a warm-started model's fine-tuning."""
        return {"steps": self.budget.steps} if self.budget.steps is not None else {}

    def query_subset(self, n_text: int) -> Any:
        """Caption indices to evaluate (a fixed seeded subset for a slow pair scorer), or None for all."""
        return None

    def design_label(self) -> str:
        """Its design class (one of :data:`DESIGNS`): the class's ``design``; a class whose options change it (CRET
        without its centres is a single vector) overrides this."""
        return self.design

    def loss_label(self) -> str:
        """The loss it trains with, as the tables name it (e.g. ``nce``, ``gees``)."""
        return type(self).__name__.lower()

    @classmethod
    def loss_benchmarks(cls) -> dict[str, LossFn]:
        """Losses the throughput step times alone, on random text [B, D] and frame [B, M, D] features (name -> fn).

        A method whose loss is a research question of its own (CRET: GEES against NCE) declares them here; the
        harness never imports a loss by name.
        """
        return {}


class EmbeddingMethod(RetrievalMethod):
    """Score = inner product of a flat query vector and a flat gallery vector (FAISS-compatible)."""

    kind = "embedding"

    def logit_scale(self) -> float:
        """The factor that puts ``score`` in logit units (its learned inverse temperature; 1.0 if it has none).

        Two-stage retrieval adds ``w * logit_scale * score`` to a pair method's logits, so the weights it tries
        on val mean the same thing for every first stage.
        """
        return 1.0

    def query_vectors(self, queries: Features) -> Tensor:
        """[n_text, D_flat] such that ``score == query_vectors @ gallery_vectors.T``."""
        raise NotImplementedError(f"{type(self).__name__}.query_vectors")

    def gallery_vectors(self, gallery: Features) -> Tensor:
        """[n_video, D_flat]; what an index stores per video."""
        raise NotImplementedError(f"{type(self).__name__}.gallery_vectors")

    def score(self, queries: Features, gallery: Features) -> Tensor:
        query, video = self.query_vectors(queries), self.gallery_vectors(gallery)
        if query.ndim != 2 or video.ndim != 2 or query.shape[1] != video.shape[1]:
            raise ValueError(
                f"{type(self).__name__}: query vectors {tuple(query.shape)} and gallery vectors {tuple(video.shape)} "
                "must both be [n, D] with the same D; make query_vectors and gallery_vectors return one width"
            )
        return query @ video.T


class PairMethod(RetrievalMethod):
    """Score needs a joint forward pass per (query, video) pair.

    A pair method implements :meth:`score_candidates`; full-gallery scoring is the special case where every video
    is a candidate, and two-stage retrieval (``vtrbench.rerank``) passes an embedding method's top k.
    """

    kind = "pair"

    def score_candidates(self, queries: Features, gallery: Features, candidates: Tensor) -> Tensor:
        """Scores of given candidates: ``candidates`` [n_text, k] gallery indices -> [n_text, k] (logit units)."""
        raise NotImplementedError(f"{type(self).__name__}.score_candidates")

    def interaction_scores(self, queries: Features, gallery: Features, candidates: Tensor) -> Tensor:
        """The joint model's own part of :meth:`score_candidates` (without a term it adds from a warm-start
        embedding, e.g. a residual dual-encoder cosine): what the model-based part itself knows. [n_text, k]."""
        return self.score_candidates(queries, gallery, candidates)

    def multi_vectors(self, queries: Features, gallery: Features) -> MultiVectors | None:
        """A multi-vector (late-interaction) method's caption-token and frame vectors, for the candidate search
        such galleries use at scale (``vtrbench.multivector``, timed by the latency step); None: not one."""
        return None

    def shortlist(self, queries: Features, gallery: Features) -> tuple[Tensor, int] | None:
        """Cheap scores of every video [n_text, n_video] from an embedding the method carries (e.g. its warm-start
        first stage) and a depth k: validation then re-scores only each caption's top k. None: no such scores."""
        return None

    def score(self, queries: Features, gallery: Features) -> Tensor:
        n_text, n_video = next(iter(queries.values())).shape[0], next(iter(gallery.values())).shape[0]
        device = next(iter(gallery.values())).device
        every = torch.arange(n_video, device=device).expand(n_text, n_video)  # [n_text, n_video]
        return self.score_candidates(queries, gallery, every)


def pair_blocks(n_text: int, k: int, budget: int) -> Iterator[tuple[slice, slice]]:
    """(rows, columns) blocks of an [n_text, k] candidate matrix, each of at most ``budget`` pairs: how a pair
    method's ``score_candidates`` bounds its memory."""
    cols = min(k, budget)
    rows = max(1, budget // max(cols, 1))
    for r0 in range(0, n_text, rows):
        for c0 in range(0, k, cols):
            yield slice(r0, min(r0 + rows, n_text)), slice(c0, min(c0 + cols, k))


@dataclass
class ExternalOptions:
    rules: str | None = None  # Snakemake file (relative to the working directory) with the rule writing scores.npy
    design: str = DEFAULT_DESIGN  # its design class, one of DESIGNS (the report shows it)

    def __post_init__(self) -> None:
        check_design(self.design, "external")


class ExternalMethod(RetrievalMethod):
    """A method that a user's own Snakemake rule runs (README, "Adding a method", way b).

    Nothing is built or trained by vtrbench: the workflow includes ``rules``, whose rule writes the test split's
    score matrix ``results/{run}/runs/{method}/{fp}/seed{seed}/scores.npy`` (and ``latency.csv``); the
    ``evaluate_external`` rule ranks it with the code that ranks every method (``vtrbench.evaluate.evaluate_scores``),
    so its metrics, ranks and hard-negative pairs are the suite's own and it is compared like any method.
    """

    kind = "external"
    options_class = ExternalOptions

    def design_label(self) -> str:
        return self.opts.design  # an external method declares its design in its config entry (``design``)


def resolve(class_name: str) -> type[RetrievalMethod]:
    """Map a registered name (``vtrbench.registry``) or ``module:Class`` to the method class.

    Raises:
        ValueError: unknown name (listing the registered ones), or a target that is not a method class.
    """
    where = target(class_name)
    cls = import_class(class_name)
    if not (isinstance(cls, type) and issubclass(cls, RetrievalMethod)):
        raise ValueError(f"{where!r} is not a RetrievalMethod subclass")
    return cls


def build_method(
    backbones: Backbones, method_config: dict[str, Any], methods: dict[str, Any] | None = None
) -> RetrievalMethod:
    """Instantiate a method from its config entry (``{"class": name, **options}``); ``methods``: the config's
    method table, for a method that embeds another one (``init_from``)."""
    options = dict(method_config)
    cls = resolve(options.pop("class"))
    return cls(backbones, options, methods)


def design_of(method: RetrievalMethod) -> str:
    """The design class a built method declares (``design_label``), checked against :data:`DESIGNS`."""
    return check_design(method.design_label(), type(method).__name__)


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
