"""The shared encoders every method builds on, so a comparison changes only the head and the loss.

* text encoder: a transformers ``BertModel``, built from a small config (default, trains from scratch) or
  loaded with ``from_pretrained`` from a local directory or hub id (paper scale: BERT-base-uncased);
* frame (spatial) encoder: a transformers ``ViTModel`` applied to every frame, giving one pooled feature ([CLS] or
  the mean of the patches) and the patch tokens per frame (built from a config, or ``from_pretrained``: paper
  scale uses an ImageNet DeiT-S/ViT-S, 384-d);
* temporal encoder: a small pre-LN transformer over the per-frame features with learned frame positions
  (CLIP4Clip seqTransf / CRET's 3-layer temporal encoder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizerFast,
    PreTrainedTokenizerBase,
    ViTConfig,
    ViTModel,
)

MAX_FRAMES = 64  # learned temporal positions available to the temporal encoder


@dataclass
class TextEncoderConfig:
    pretrained: str | None = None  # local dir or hub id; None = build from the fields below (random init)
    hidden: int = 64  # width of a from-scratch encoder
    layers: int = 2
    heads: int = 4
    max_length: int = 32  # tokens per caption, including [CLS]/[SEP]
    pooling: str = "mean"  # the caption feature: "cls" token or "mean" of the non-padding tokens


@dataclass
class FrameEncoderConfig:
    pretrained: str | None = None  # local dir or hub id; None = build from the fields below (random init)
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    patch_size: int = 8  # pixels; 32 px frames -> 4x4 = 16 patches
    pooling: str = "mean"  # the per-frame feature: "cls" token or "mean" of the patch tokens


@dataclass
class TemporalEncoderConfig:
    layers: int = 2
    heads: int = 4
    # Frame features leave a LayerNorm at unit scale; positions drawn at BERT's 0.02 are 2% of that, so attention
    # starts order-blind and some seeds never learn order (measured: README "Training recipe").
    position_std: float = 0.5


@dataclass
class BackboneConfig:
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    frame: FrameEncoderConfig = field(default_factory=FrameEncoderConfig)
    temporal: TemporalEncoderConfig = field(default_factory=TemporalEncoderConfig)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> BackboneConfig:
        return cls(
            text=TextEncoderConfig(**cfg.get("text", {})),
            frame=FrameEncoderConfig(**cfg.get("frame", {})),
            temporal=TemporalEncoderConfig(**cfg.get("temporal", {})),
        )


@dataclass
class TextOutput:
    pooled: Tensor  # [B, Dt] the caption feature ([CLS] or mean of the real tokens: model.text.pooling)
    tokens: Tensor  # [B, L, Dt]
    padding_mask: Tensor  # [B, L] bool, True = padding


@dataclass
class FrameOutput:
    pooled: Tensor  # [B, M, Df] one feature per frame ([CLS] or mean of the patches: model.frame.pooling)
    patches: Tensor  # [B, M, N, Df]


class TextEncoder(nn.Module):
    """BERT over token ids; returns the pooled caption feature and the token features with their padding mask.

    ``pooling: mean`` (the from-scratch default) averages the real tokens: a 2-layer BERT trained from zero learns a
    useful [CLS] much later than a useful token average. Pretrained BERTs keep ``cls``, as CLIP4Clip and CRET do.
    """

    def __init__(self, cfg: TextEncoderConfig, vocab_size: int):
        super().__init__()
        if cfg.pretrained:
            self.bert = BertModel.from_pretrained(cfg.pretrained, add_pooling_layer=False)
        else:
            _check_heads("model.text", cfg.hidden, cfg.heads)
            config = BertConfig(
                vocab_size=vocab_size,
                hidden_size=cfg.hidden,
                num_hidden_layers=cfg.layers,
                num_attention_heads=cfg.heads,
                intermediate_size=4 * cfg.hidden,
                max_position_embeddings=max(cfg.max_length, 64),
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
            )
            self.bert = BertModel(config, add_pooling_layer=False)
        if cfg.pooling not in ("cls", "mean"):
            raise ValueError(f"model.text.pooling must be 'cls' or 'mean', got {cfg.pooling!r}")
        self.pooling = cfg.pooling
        self.dim = self.bert.config.hidden_size

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> TextOutput:
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, Dt]
        if self.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            weights = attention_mask.unsqueeze(-1).to(tokens.dtype)  # [B, L, 1]
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)
        return TextOutput(pooled=pooled, tokens=tokens, padding_mask=attention_mask == 0)


class FrameEncoder(nn.Module):
    """ViT applied to each frame of each video; uint8 frames are normalised here, with the encoder's own stats."""

    def __init__(self, cfg: FrameEncoderConfig, image_size: int):
        super().__init__()
        if cfg.pretrained:
            self.vit = ViTModel.from_pretrained(cfg.pretrained, add_pooling_layer=False)
            mean, std = _image_stats(cfg.pretrained)
        else:
            _check_heads("model.frame", cfg.hidden, cfg.heads)
            if image_size % cfg.patch_size:
                raise ValueError(
                    f"model.frame.patch_size={cfg.patch_size} must divide the frame resolution {image_size}"
                )
            config = ViTConfig(
                image_size=image_size,
                patch_size=cfg.patch_size,
                hidden_size=cfg.hidden,
                num_hidden_layers=cfg.layers,
                num_attention_heads=cfg.heads,
                intermediate_size=4 * cfg.hidden,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
            )
            self.vit = ViTModel(config, add_pooling_layer=False)
            mean, std = [0.5] * 3, [0.5] * 3
        if cfg.pooling not in ("cls", "mean"):
            raise ValueError(f"model.frame.pooling must be 'cls' or 'mean', got {cfg.pooling!r}")
        self.pooling = cfg.pooling
        self.interpolate = self.vit.config.image_size != image_size
        self.dim = self.vit.config.hidden_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: Tensor) -> FrameOutput:
        """frames: [B, M, H, W, 3] uint8 (as stored) or [B, M, 3, H, W] float in [0, 1]."""
        if frames.dtype == torch.uint8:
            frames = frames.permute(0, 1, 4, 2, 3).float().div_(255.0)  # [B, M, 3, H, W]
        B, M = frames.shape[:2]
        pixels = (frames.flatten(0, 1) - self.mean) / self.std  # [B*M, 3, H, W]
        hidden = self.vit(pixel_values=pixels, interpolate_pos_encoding=self.interpolate).last_hidden_state
        hidden = hidden.view(B, M, *hidden.shape[1:])  # [B, M, 1+N, Df]
        patches = hidden[:, :, 1:]
        return FrameOutput(pooled=hidden[:, :, 0] if self.pooling == "cls" else patches.mean(2), patches=patches)


class TemporalEncoder(nn.Module):
    """Pre-LN transformer over the frame sequence with learned frame positions: one output per frame."""

    def __init__(self, cfg: TemporalEncoderConfig, dim: int):
        super().__init__()
        _check_heads("model.temporal", dim, cfg.heads)
        self.position = nn.Parameter(torch.zeros(MAX_FRAMES, dim))
        nn.init.normal_(self.position, std=cfg.position_std)
        layer = nn.TransformerEncoderLayer(
            dim, cfg.heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, M, D] per-frame features -> [B, M, D] temporally contextualised features."""
        M = x.shape[1]
        if M > MAX_FRAMES:
            raise ValueError(f"temporal encoder supports at most {MAX_FRAMES} frames, got {M}")
        return self.encoder(x + self.position[:M])


class Backbones(nn.Module):
    """The three shared encoders; each method owns its heads and projections on top."""

    def __init__(self, cfg: BackboneConfig, vocab_size: int, image_size: int):
        super().__init__()
        self.text = TextEncoder(cfg.text, vocab_size)
        self.frame = FrameEncoder(cfg.frame, image_size)
        self.temporal = TemporalEncoder(cfg.temporal, self.frame.dim)


def load_tokenizer(cfg: TextEncoderConfig, vocab_file: str | Path | None) -> PreTrainedTokenizerBase:
    """The pretrained encoder's own tokenizer, or a word-level BERT tokenizer over the dataset's vocab.txt."""
    if cfg.pretrained:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(cfg.pretrained)
    if vocab_file is None or not Path(vocab_file).is_file():
        raise FileNotFoundError(
            f"vocabulary file {vocab_file} not found: a from-scratch text encoder uses the prepared dataset's vocab.txt"
        )
    return BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)  # transformers 5: `vocab`, not `vocab_file`


def _check_heads(key: str, dim: int, heads: int) -> None:
    if dim % heads:
        raise ValueError(f"{key}: hidden={dim} must be divisible by heads={heads}")


def _image_stats(pretrained: str) -> tuple[list[float], list[float]]:
    """Normalisation stats from a local preprocessor_config.json; ImageNet's when absent (DeiT/ViT default)."""
    path = Path(pretrained) / "preprocessor_config.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return list(data.get("image_mean", [0.485, 0.456, 0.406])), list(data.get("image_std", [0.229, 0.224, 0.225]))
    return [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
