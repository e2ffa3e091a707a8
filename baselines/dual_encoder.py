"""Embedding-based baseline: a CLIP4Clip-style dual encoder (Luo et al., arXiv 2104.08860).

Video: per-frame feature from the shared frame encoder -> (``seq`` only: the shared temporal transformer) -> mean
over frames -> linear -> L2-normalise. Text: the shared text encoder's pooled feature -> linear -> L2-normalise.
Score: cosine.
Loss: symmetric InfoNCE with a learnable temperature. ``mean`` corresponds to CLIP4Clip's meanP head and ``seq``
to its seqTransf head; neither sees which object does what, and ``mean`` cannot see frame order at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from vtrbench.backbones import Backbones
from vtrbench.losses import InfoNCE
from vtrbench.methods import Batch, EmbeddingMethod, Features
from vtrbench.options import Count, Positive


@dataclass
class DualEncoderOptions:
    pooling: str = "mean"  # "mean" (CLIP4Clip meanP) | "seq" (temporal transformer, CLIP4Clip seqTransf)
    dim: Count = 64  # joint embedding width
    temperature: Positive = 0.07  # initial InfoNCE temperature (learned)

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "seq"):
            raise ValueError(f"dual_encoder: pooling must be 'mean' or 'seq', got {self.pooling!r}")


class DualEncoder(EmbeddingMethod):
    design = "single vector"
    options_class = DualEncoderOptions

    def __init__(self, backbones: Backbones, options: dict[str, Any], methods: dict[str, Any] | None = None):
        super().__init__(backbones, options)
        self.video_proj = nn.Linear(backbones.frame.dim, self.opts.dim)
        self.text_proj = nn.Linear(backbones.text.dim, self.opts.dim)
        self.nce = InfoNCE(self.opts.temperature)

    def encode_videos(self, frames: Tensor) -> Features:
        per_frame = self.backbones.frame(frames).pooled  # [B, M, Df]
        if self.opts.pooling == "seq":
            per_frame = self.backbones.temporal(per_frame)  # [B, M, Df]
        video = F.normalize(self.video_proj(per_frame.mean(1)), dim=-1)  # [B, D]
        return {"video": video}

    def encode_texts(self, input_ids: Tensor, attention_mask: Tensor) -> Features:
        caption = self.backbones.text(input_ids, attention_mask).pooled  # [B, Dt]
        return {"text": F.normalize(self.text_proj(caption), dim=-1)}  # [B, D]

    def query_vectors(self, queries: Features) -> Tensor:
        return queries["text"]

    def gallery_vectors(self, gallery: Features) -> Tensor:
        return gallery["video"]

    def logit_scale(self) -> float:
        return float(self.nce.scale().detach())

    def loss_label(self) -> str:
        return "nce"

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        video = self.encode_videos(batch["frames"])["video"]
        text = self.encode_texts(batch["input_ids"], batch["attention_mask"])["text"]
        return {"nce_loss": self.nce(text, video)}
