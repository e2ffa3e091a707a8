"""X-Pool: cross-modal language-video attention (Gorti et al., CVPR 2022, arXiv 2203.15086).

The caption attends over the video's frames and pools them into a caption-conditioned video vector; the score is
the cosine of the caption and that vector. The pooled vector depends on the caption, so a video cannot be indexed
as one vector: this is a :class:`~vtrbench.methods.PairMethod`.

Design, each choice cited in the authors' code (github.com/layer6ai-labs/xpool at commit bc88718; paths in that
repository, ``file:line``):

* **Inputs.** The caption is one pooled text embedding and the video one embedding per frame, with no temporal
  module in between (``model/clip_transformer.py:29-37``: CLIP's text / image features, reshaped to
  [B, M, D], go straight into ``pool_frames``). Here: the shared towers' pooled caption feature and per-frame
  features, each through a linear map to ``dim`` (X-Pool needs none: its two CLIP features share one 512-d space,
  ``config/all_config.py:37``; our towers may have two widths). ``temporal: true`` (not in X-Pool) runs the shared
  temporal encoder over the frames first, so the pooling can see frame order.
* **Pooling** (``modules/transformer.py:92-111``, ``Transformer.forward``): one LayerNorm shared by the text and the
  frames (``:100-101``); scaled dot-product attention with the projected text as the only query and the projected
  frames as keys and values (``:31-47``), logits / sqrt(head_dim) (``:50-51``), softmax over the frames (``:52``),
  the weighted sum of the values (``:55``), the out-projection (``:61``); then LayerNorm (``:105``), a linear
  layer with dropout added back as a residual, ``out = a + dropout(linear(a))`` (``:107-108``, the residual is
  around that linear layer, not around the text), and a last LayerNorm (``:109``).
* **Heads** ``heads: 1`` (``config/all_config.py:52``, ``num_mha_heads`` default 1; the head split:
  ``modules/transformer.py:12-13, 32, 39, 45``).
* **Dropout** ``dropout: 0.3`` on that linear layer only (``modules/transformer.py:78, 108``;
  ``config/all_config.py:53`` default 0.3, the MSR-VTT-9k recipe ``README.md:73``; 0.4 for MSR-VTT-7k and MSVD,
  ``README.md:74-75``). The attention itself has no dropout.
* **Init**: every weight of the pooling's linear layers (q, k, v, out, linear) is the identity and every bias 0
  (``modules/transformer.py:83-89``), so at step 0 the pooled vector is the LayerNorm of a softmax-weighted mean
  of the LayerNormed frames.
* **Score**: cosine of the caption embedding itself (not its LayerNorm) and the pooled vector
  (``modules/metrics.py:7-28``, ``sim_matrix_training``: both L2-normalised, ``:14-15``; one pooled vector per
  (text, video), ``:20-26``). ``score_candidates`` returns it in logit units (times the learned inverse
  temperature), as :class:`~vtrbench.methods.PairMethod` asks, so a re-ranker's fusion weight means the same here
  as for any pair method; the ranking is the cosine's.
* **Loss**: symmetric cross-entropy over the [B_text, B_video] matrix of caption-conditioned cosines times
  exp(logit_scale) (``modules/loss.py:6-27``, ``CLIPLoss``; ``trainer/trainer.py:55-58``), i.e.
  :func:`vtrbench.losses.symmetric_cross_entropy`. The temperature is learned (CLIP's own ``logit_scale``,
  ``trainer/trainer.py:58``), clamped at 1/100 (``trainer/trainer.py:67``: ``clamp(max=log(100))``), as
  :class:`vtrbench.losses.InfoNCE` does. Its init here is ``temperature: 0.07``, CLIP's init
  (``model/clip_model.py:296``); X-Pool starts from the value a pretrained CLIP checkpoint carries
  (``model/clip_transformer.py:11-16``: ``CLIPModel.from_pretrained``, or ``load_clip`` ->
  ``model/clip_model.py:520, 439``), which a from-scratch run does not have. Under several processes the captions and
  frames of the whole global batch are gathered first (every caption pools every video of the global batch).

Not taken: X-Pool's two learning rates (CLIP towers at 1e-6, new layers at 1e-5 / 3e-5, ``train.py:50-58``,
``README.md:73``; the suite trains every method with one lr, so the comparison changes only the head and the loss)
and ``attention_temperature`` (``config/all_config.py:51``: read only by their non-transformer pooling baselines).

Cost: the keys and values depend only on the video, so ``encode_videos`` computes them offline and the gallery holds
them ([B, M, dim] each, 2 * M * dim floats per video); per (caption, video) pair the online part is the attention
over M frames, two dim x dim layers and the cosine. ``score_candidates`` scores at most ``pair_chunk`` pairs per
pass, so its memory is bounded by ``pair_chunk * M * dim`` whatever the gallery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from vtrbench.backbones import Backbones
from vtrbench.losses import InfoNCE, gather_features, symmetric_cross_entropy
from vtrbench.methods import Batch, Features, PairMethod, pair_blocks
from vtrbench.options import Count, NonNegative, Positive


@dataclass
class XPoolOptions:
    dim: Count = 64  # joint embedding width (X-Pool: CLIP's 512, config/all_config.py:37)
    heads: Count = 1  # attention heads of the pooling (config/all_config.py:52)
    dropout: NonNegative = 0.3  # on the pooling's residual linear layer (modules/transformer.py:108), < 1
    temporal: bool = False  # run the shared temporal encoder over the frames first (not in X-Pool)
    temperature: Positive = 0.07  # initial temperature (learned; CLIP's init, model/clip_model.py:296)
    pair_chunk: Count = 4096  # (caption, video) pairs per scoring pass: bounds the memory of score_candidates

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"xpool: heads={self.heads} must divide dim={self.dim}")
        if self.dropout >= 1:
            raise ValueError(f"xpool: dropout must be below 1, got {self.dropout}")


class TextConditionedPool(nn.Module):
    """X-Pool's ``Transformer`` with its ``MultiHeadedAttention`` (modules/transformer.py:7-111), split so the
    video half (LayerNorm, keys, values) runs once per video, offline."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.linear_proj = nn.Linear(dim, dim)
        self.layer_norm1 = nn.LayerNorm(dim)
        self.layer_norm2 = nn.LayerNorm(dim)
        self.layer_norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.out_proj, self.linear_proj):
            nn.init.eye_(layer.weight)  # modules/transformer.py:83-89
            nn.init.zeros_(layer.bias)

    def keys_values(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """frames [..., M, D] -> keys, values [..., M, D] (the shared LayerNorm first: modules/transformer.py:101)."""
        frames = self.layer_norm1(frames)
        return self.k_proj(frames), self.v_proj(frames)

    def query(self, text: Tensor) -> Tensor:
        """text [T, D] -> the attention query [T, D] (modules/transformer.py:100, 31)."""
        return self.q_proj(self.layer_norm1(text))

    def forward(self, query: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """Pool each of C videos for each of T captions.

        Args:
            query: [T, D] from :meth:`query`.
            keys, values: [T, C, M, D] (caption t's own candidates) or [1, C, M, D] (the same C videos for every
                caption), from :meth:`keys_values`.

        Returns:
            [T, C, D] caption-conditioned video vectors.
        """
        T, D = query.shape
        H = self.heads
        q = query.reshape(T, 1, H, D // H, 1)  # [T, 1, H, hd, 1]
        k = keys.unflatten(-1, (H, D // H)).transpose(-2, -3)  # [T|1, C, H, M, hd]
        v = values.unflatten(-1, (H, D // H)).transpose(-2, -3)  # [T|1, C, H, M, hd]
        logits = (k @ q) / math.sqrt(D // H)  # [T, C, H, M, 1] (modules/transformer.py:50-51)
        weights = logits.softmax(dim=-2)  # over the frames (modules/transformer.py:52)
        pooled = (weights.transpose(-1, -2) @ v).squeeze(-2)  # [T, C, H, hd] (modules/transformer.py:55)
        attn = self.layer_norm2(self.out_proj(pooled.flatten(-2)))  # [T, C, D] (modules/transformer.py:61, 105)
        return self.layer_norm3(attn + self.dropout(self.linear_proj(attn)))  # modules/transformer.py:107-109


class XPool(PairMethod):
    design = "query-conditioned"
    options_class = XPoolOptions

    def __init__(self, backbones: Backbones, options: dict[str, Any], methods: dict[str, Any] | None = None):
        super().__init__(backbones, options)
        opts = self.opts
        self.text_proj = nn.Linear(backbones.text.dim, opts.dim)
        self.video_proj = nn.Linear(backbones.frame.dim, opts.dim)
        self.pool = TextConditionedPool(opts.dim, opts.heads, opts.dropout)
        self.nce = InfoNCE(opts.temperature)  # holds the learned logit scale (and the ranks to gather over)

    # -- encoders -------------------------------------------------------------------------------------------------

    def frame_features(self, frames: Tensor) -> Tensor:
        """frames [B, M, ...] -> per-frame embeddings [B, M, dim]."""
        per_frame = self.backbones.frame(frames).pooled  # [B, M, Df]
        if self.opts.temporal:
            per_frame = self.backbones.temporal(per_frame)
        return self.video_proj(per_frame)

    def encode_videos(self, frames: Tensor) -> Features:
        keys, values = self.pool.keys_values(self.frame_features(frames))
        return {"keys": keys, "values": values}  # [B, M, dim] each: the video half of the attention, offline

    def encode_texts(self, input_ids: Tensor, attention_mask: Tensor) -> Features:
        return {"text": self.text_proj(self.backbones.text(input_ids, attention_mask).pooled)}  # [B, dim]

    # -- scoring ------------------------------------------------------------------------------------------------

    def similarity(self, text: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """Cosine of each caption and each video pooled for it: text [T, D], keys / values [T|1, C, M, D] -> [T, C]."""
        pooled = self.pool(self.pool.query(text), keys, values)  # [T, C, D]
        return (F.normalize(text, dim=-1)[:, None] * F.normalize(pooled, dim=-1)).sum(-1)

    def score_candidates(self, queries: Features, gallery: Features, candidates: Tensor) -> Tensor:
        """[n_text, k] logit-unit scores (learned inverse temperature x cosine), ``pair_chunk`` pairs per pass."""
        n_text, k = candidates.shape
        text, keys, values = queries["text"], gallery["keys"], gallery["values"]
        scale = self.nce.scale()
        out = text.new_empty(n_text, k)
        for rows, cols in pair_blocks(n_text, k, self.opts.pair_chunk):
            cand = candidates[rows, cols]  # [r, c]
            out[rows, cols] = scale * self.similarity(text[rows], keys[cand], values[cand])
        return out

    # -- training -------------------------------------------------------------------------------------------------

    def loss_label(self) -> str:
        return "nce"

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        text = self.encode_texts(batch["input_ids"], batch["attention_mask"])["text"]  # [B, dim]
        frames = self.frame_features(batch["frames"])  # [B, M, dim]
        world = self.nce.world_size, self.nce.rank
        text, frames = gather_features(text, *world), gather_features(frames, *world)  # the global batch
        keys, values = self.pool.keys_values(frames)
        sims = self.similarity(text, keys[None], values[None])  # [B_text, B_video]: every caption pools every video
        return {"nce_loss": symmetric_cross_entropy(self.nce.scale() * sims)}
