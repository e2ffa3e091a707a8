"""Weighted token-wise interaction (WTI) from DRL: "Disentangled Representation Learning for Text-Video Retrieval"
(Wang et al., arXiv 2203.07111).

Every caption token meets every frame: a token's match is its best frame, a frame's match is its best token, and
each side's matches are averaged with learned, softmax-normalised weights:

    s(t, v) = 1/2 * ( sum_i w_t(i) max_j cos(t_i, v_j) + sum_j w_v(j) max_i cos(v_j, t_i) )

over the caption's real tokens i (padding excluded) and the video's frames j. The gallery stores one vector per
frame, so this is a :class:`~vtrbench.methods.PairMethod` (late interaction).

Design, each choice cited in the authors' code (github.com/foolwood/DRL at commit 475f96c; paths in that repository,
``file:line``; the brief's ``modules/modeling.py`` is ``tvr/models/modeling.py`` there):

* **Token and frame features.** Text: every token's last hidden state through CLIP's projection
  (``tvr/models/modeling.py:202``, ``encode_text(return_hidden=True)``; ``tvr/models/module_clip.py:456``), the
  padding mask alongside. Video: one CLIP image embedding per frame (``tvr/models/modeling.py:215-216``;
  ``tvr/models/module_clip.py:438-440``). Here: the shared towers' token features and per-frame features, each
  through a linear map to ``dim`` (DRL's two CLIP features share one space already; our towers may have two widths).
* **Temporal module** ``temporal: true``: the WTI recipe uses ``agg_module seqTransf`` (``scripts/msrvtt.sh:16``,
  the default at ``main.py:66``), a transformer over the frames with frame positions whose output is added back
  to its input (``tvr/models/modeling.py:264-278``; residual at ``:278``). Here: the shared temporal encoder plus
  that residual, before the projection. ``temporal: false`` is DRL's ``agg_module None``.
* **Weight heads** ``text_weight_fc`` / ``video_weight_fc`` (``tvr/models/modeling.py:97-116``): ``weight_layers``
  linear layers with ReLU between them, ending in one logit per token / frame; DRL's ``wti_arch`` 1, 2, 3 are 1, 2,
  3 layers, and its WTI runs use 2 (``main.py:69`` default, ``scripts/msrvtt.sh:16``), so ``weight_layers: 2``.
  Init as DRL's ``init_weights``: normal(0, 0.02) weights, zero biases (``tvr/models/modeling.py:573-588``, applied
  at ``:130``). The weights read the features before L2 normalisation (``:406, 410`` vs ``:414-415``), padding
  logits are set to -inf before the softmax over tokens (``:407-408``), frames are softmaxed over the video
  (``:410-412``).
* **Score** (``tvr/models/modeling.py:414-437``): cosine of every (token, frame) pair (``:414-417``), max over
  frames weighted by the token weights (``:432-433``), max over tokens weighted by the frame weights (``:435-436``),
  mean of the two (``:437``). One deviation: DRL zeroes the padded entries of the cosine matrix (``:418``) instead
  of excluding them, so a padding token takes part in a frame's max over tokens with cosine 0 (a frame whose best
  real token has a negative cosine then scores 0); here padding is excluded (-inf before the max). DRL's frame mask
  (``:419``) has nothing to mask here: every video has its M frames. ``score_candidates`` returns the score in
  logit units (times the learned inverse temperature), as :class:`~vtrbench.methods.PairMethod` asks.
* **Loss**: symmetric cross-entropy on the [B, B] WTI matrix times exp(logit_scale) (``tvr/models/modeling.py:189,
  439-441``; ``CrossEn``: ``tvr/models/until_module.py:61-70``), i.e. :func:`vtrbench.losses.symmetric_cross_entropy`,
  after gathering the global batch (``tvr/models/modeling.py:398-403``). The temperature is learned (CLIP's
  ``logit_scale``), clamped at 1/100 (``main.py:277, 280``) as :class:`vtrbench.losses.InfoNCE` does; init
  ``temperature: 0.07``, CLIP's init (DRL starts from the pretrained checkpoint's value, ``modeling.py:131``).
* **Channel decorrelation regulariser** (CDCR), ``cdcr: true`` (off by default, as in the WTI run
  ``scripts/msrvtt.sh:16``; ``main.py:71`` defaults it on): DRL's ``cdcr == 3`` variant, the one its WTI+CDCR run
  uses (``scripts/msrvtt.sh:24``: ``--cdcr 3 --cdcr_alpha1 0.14 --cdcr_alpha2 0.0 --cdcr_lambda 0.001``, the
  defaults here), ``tvr/models/modeling.py:496-535``: on each positive pair, every real token is paired with its
  best frame and every frame with its best token (``:498-513``), the features are standardised per channel over the
  batch (``:517-521``), the channel cross-correlation is weighted by the token / frame weights and divided by the
  batch size (``:524-530``), and the loss is alpha1 * sum (diag - 1)^2 + alpha2 * sum offdiag^2 (``:532-534``),
  added to the contrastive loss times ``cdcr_lambda`` (``:190``). Deviation: the per-channel std is clamped at
  1e-6 (DRL divides by it unguarded: a constant channel gives NaN).

Not taken: DRL's two learning rates (``main.py:43-44``, ``lr`` and ``coef_lr`` for CLIP; the suite trains every
method with one lr).

Cost: the gallery holds M * (dim + 1) floats per video (unit frame vectors and frame weights, offline); per
(caption, video) pair the online part is an L x M cosine matrix (L the caption's tokens) and two weighted maxima.
``score_candidates`` scores at most ``pair_chunk`` pairs per pass, so its memory is bounded by
``pair_chunk * M * (L + dim)`` whatever the gallery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtrbench.backbones import Backbones
from vtrbench.losses import InfoNCE, gather_features, symmetric_cross_entropy
from vtrbench.methods import Batch, Features, PairMethod, pair_blocks
from vtrbench.multivector import MultiVectors
from vtrbench.options import Count, NonNegative, Positive

STD_EPS = 1e-6  # floor of a channel's std in CDCR's standardisation


@dataclass
class LateInteractionOptions:
    dim: Count = 64  # width of the token and frame vectors
    weight_layers: Count = 2  # linear layers per weight head (DRL wti_arch, main.py:69)
    temporal: bool = True  # shared temporal encoder + residual over the frames (DRL agg_module seqTransf)
    temperature: Positive = 0.07  # initial temperature (learned)
    cdcr: bool = False  # add DRL's channel decorrelation regulariser (cdcr == 3)
    cdcr_alpha1: NonNegative = 0.14  # weight of the diagonal term (scripts/msrvtt.sh:24)
    cdcr_alpha2: NonNegative = 0.0  # weight of the off-diagonal term (scripts/msrvtt.sh:24)
    cdcr_lambda: NonNegative = 0.001  # weight of CDCR in the loss (scripts/msrvtt.sh:24)
    pair_chunk: Count = 4096  # (caption, video) pairs per scoring pass: bounds the memory of score_candidates


def weight_head(dim: int, layers: int) -> nn.Sequential:
    """DRL's ``text_weight_fc`` / ``video_weight_fc`` (tvr/models/modeling.py:97-116): ``layers`` linear layers,
    ReLU between them, one logit out; normal(0, 0.02) weights and zero biases (modeling.py:573-588)."""
    parts: list[nn.Module] = []
    for _ in range(layers - 1):
        parts += [nn.Linear(dim, dim), nn.ReLU()]
    parts.append(nn.Linear(dim, 1))
    head = nn.Sequential(*parts)
    for module in head:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
    return head


def wti_similarity(
    tokens: Tensor, mask: Tensor, token_weights: Tensor, frames: Tensor, frame_weights: Tensor
) -> Tensor:
    """Weighted token-wise interaction of T captions with C videos each (tvr/models/modeling.py:414-437).

    Args:
        tokens: [T, L, D] unit token vectors; mask: [T, L] (1 = real token); token_weights: [T, L] (0 on padding).
        frames: [T, C, M, D] unit frame vectors (caption t's own candidates) or [1, C, M, D] (the same C videos for
            every caption); frame_weights: [T|1, C, M].

    Returns:
        [T, C] similarities in [-1, 1].
    """
    sims = tokens[:, None] @ frames.transpose(-1, -2)  # [T, C, L, M] cosines
    t2v = (sims.amax(-1) * token_weights[:, None]).sum(-1)  # each token's best frame, token-weighted: [T, C]
    padding = mask[:, None, :, None] == 0  # [T, 1, L, 1]
    v2t = (sims.masked_fill(padding, float("-inf")).amax(-2) * frame_weights).sum(-1)  # each frame's best token
    return 0.5 * (t2v + v2t)


def cdcr_loss(
    tokens: Tensor,
    mask: Tensor,
    token_weights: Tensor,
    frames: Tensor,
    frame_weights: Tensor,
    alpha1: float,
    alpha2: float,
) -> Tensor:
    """DRL's channel decorrelation regulariser, ``cdcr == 3`` (tvr/models/modeling.py:496-535), on B positive pairs.

    Args:
        tokens [B, L, D], mask [B, L], token_weights [B, L]; frames [B, M, D], frame_weights [B, M] (caption b
        describes video b; unit vectors).
    """
    B, _, D = tokens.shape
    real = mask.bool()
    sims = tokens @ frames.transpose(-1, -2)  # [B, L, M] positive pairs only
    best_frame = sims.argmax(-1)  # [B, L] (modeling.py:498)
    best_token = sims.masked_fill(~real[:, :, None], float("-inf")).argmax(-2)  # [B, M] (modeling.py:499)
    max_v = frames.gather(1, best_frame[..., None].expand(-1, -1, D))  # [B, L, D] (modeling.py:503-504)
    max_t = tokens.gather(1, best_token[..., None].expand(-1, -1, D))  # [B, M, D] (modeling.py:501-502)
    z_a, z_b = _standardise(tokens[real]), _standardise(max_v[real])  # [N_t, D] (modeling.py:517-518)
    x_a, x_b = _standardise(frames.flatten(0, 1)), _standardise(max_t.flatten(0, 1))  # [B*M, D] (:520-521)
    c1 = (z_a * token_weights[real][:, None]).T @ z_b / B  # [D, D] (modeling.py:526-527)
    c2 = (x_a * frame_weights.flatten()[:, None]).T @ x_b / B  # (modeling.py:528-529)
    c = 0.5 * (c1 + c2)
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = (c - torch.diag_embed(torch.diagonal(c))).pow(2).sum()
    return alpha1 * on_diag + alpha2 * off_diag  # modeling.py:532-534


def _standardise(x: Tensor) -> Tensor:
    return (x - x.mean(0)) / x.std(0).clamp_min(STD_EPS)


class LateInteraction(PairMethod):
    design = "multi-vector"
    options_class = LateInteractionOptions

    def __init__(self, backbones: Backbones, options: dict[str, Any], methods: dict[str, Any] | None = None):
        super().__init__(backbones, options)
        opts = self.opts
        self.text_proj = nn.Linear(backbones.text.dim, opts.dim)
        self.video_proj = nn.Linear(backbones.frame.dim, opts.dim)
        self.text_weight_fc = weight_head(opts.dim, opts.weight_layers)
        self.video_weight_fc = weight_head(opts.dim, opts.weight_layers)
        self.nce = InfoNCE(opts.temperature)  # holds the learned logit scale (and the ranks to gather over)

    # -- encoders -------------------------------------------------------------------------------------------------

    def _raw_tokens(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """-> projected token features [B, L, dim] (not normalised) and the mask [B, L] (1 = real token)."""
        out = self.backbones.text(input_ids, attention_mask)
        return self.text_proj(out.tokens), (~out.padding_mask).to(out.tokens.dtype)

    def _raw_frames(self, frames: Tensor) -> Tensor:
        """-> projected frame features [B, M, dim] (not normalised)."""
        per_frame = self.backbones.frame(frames).pooled  # [B, M, Df]
        if self.opts.temporal:
            per_frame = self.backbones.temporal(per_frame) + per_frame  # seqTransf + residual (modeling.py:278)
        return self.video_proj(per_frame)

    def _text_side(self, tokens: Tensor, mask: Tensor) -> Features:
        logits = self.text_weight_fc(tokens).squeeze(-1).masked_fill(mask == 0, float("-inf"))  # [B, L]
        return {"tokens": F.normalize(tokens, dim=-1), "mask": mask, "weights": logits.softmax(-1)}

    def _video_side(self, frames: Tensor) -> Features:
        weights = self.video_weight_fc(frames).squeeze(-1).softmax(-1)  # [B, M]
        return {"frames": F.normalize(frames, dim=-1), "weights": weights}

    def encode_videos(self, frames: Tensor) -> Features:
        return self._video_side(self._raw_frames(frames))  # frames [B, M, dim] (unit), weights [B, M]

    def encode_texts(self, input_ids: Tensor, attention_mask: Tensor) -> Features:
        return self._text_side(*self._raw_tokens(input_ids, attention_mask))  # tokens [B, L, dim], mask, weights

    # -- scoring ------------------------------------------------------------------------------------------------

    def score_candidates(self, queries: Features, gallery: Features, candidates: Tensor) -> Tensor:
        """[n_text, k] logit-unit scores (learned inverse temperature x WTI), ``pair_chunk`` pairs per pass."""
        n_text, k = candidates.shape
        real_columns = queries["mask"].any(0).nonzero()
        width = int(real_columns.max()) + 1 if len(real_columns) else 0  # drop the columns that are padding for all
        tokens, mask, weights = (queries[key][:, :width] for key in ("tokens", "mask", "weights"))
        scale = self.nce.scale()
        out = tokens.new_empty(n_text, k)
        for rows, cols in pair_blocks(n_text, k, self.opts.pair_chunk):
            cand = candidates[rows, cols]  # [r, c]
            sims = wti_similarity(
                tokens[rows], mask[rows], weights[rows], gallery["frames"][cand], gallery["weights"][cand]
            )
            out[rows, cols] = scale * sims
        return out

    def multi_vectors(self, queries: Features, gallery: Features) -> MultiVectors:
        """Token and frame vectors for the candidate search at scale: the caption side of WTI (tokens, weights)."""
        return MultiVectors(queries["tokens"], queries["weights"], gallery["frames"])

    # -- training -------------------------------------------------------------------------------------------------

    def loss_label(self) -> str:
        return "nce+cdcr" if self.opts.cdcr else "nce"

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        tokens, mask = self._raw_tokens(batch["input_ids"], batch["attention_mask"])
        frames = self._raw_frames(batch["frames"])
        world = self.nce.world_size, self.nce.rank  # the global batch, then the weights (modeling.py:398-412)
        text = self._text_side(gather_features(tokens, *world), gather_features(mask, *world))
        video = self._video_side(gather_features(frames, *world))
        sims = wti_similarity(
            text["tokens"], text["mask"], text["weights"], video["frames"][None], video["weights"][None]
        )  # [B_text, B_video]
        terms = {"nce_loss": symmetric_cross_entropy(self.nce.scale() * sims)}
        if self.opts.cdcr:
            reg = cdcr_loss(
                text["tokens"],
                text["mask"],
                text["weights"],
                video["frames"],
                video["weights"],
                self.opts.cdcr_alpha1,
                self.opts.cdcr_alpha2,
            )
            terms["cdcr_loss"] = self.opts.cdcr_lambda * reg
        return terms
