"""The shared encoders every method builds on, so a comparison changes only the head and the loss.

* text encoder: a transformers ``BertModel``, built from a small config (default, trains from scratch) or
  loaded with ``from_pretrained`` from a local directory or hub id (paper scale: BERT-base-uncased); or CLIP's
  text tower (``CLIPTextModelWithProjection``) when the checkpoint is a CLIP one;
* frame (spatial) encoder: a transformers ``ViTModel`` applied to every frame, giving one pooled feature ([CLS] or
  the mean of the patches) and the patch tokens per frame (built from a config, or ``from_pretrained``: paper
  scale uses an ImageNet DeiT-S/ViT-S, 384-d); or CLIP's vision tower (``CLIPVisionModelWithProjection``);
* temporal encoder: a small pre-LN transformer over the per-frame features with learned frame positions
  (CLIP4Clip seqTransf / CRET's 3-layer temporal encoder).

Which pretrained class is built is read from the checkpoint's saved ``config.json`` (``model_type``): ``bert`` /
``vit`` as before; ``clip`` (a whole ``CLIPModel`` folder, usable for either tower), ``clip_text_model`` or
``clip_vision_model`` for CLIP. CLIP towers output CLIP's *projected* embedding space, so pooled features and
tokens share one width, the projection dim (512 for ViT-B/32), as DRL, TS2-Net and X-CLIP use them:

* text: pooled = ``text_embeds`` (the EOT token after ``final_layer_norm``, through ``text_projection``);
  tokens = every last hidden state through the same ``text_projection``;
* frame: pooled = ``image_embeds`` (the class token after ``post_layernorm``, through ``visual_projection``);
  patches = every patch token through the same ``post_layernorm`` + ``visual_projection``.

CLIP's pooled output is fixed by its pretraining (EOT token / class token), so ``pooling`` is ignored for CLIP.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from transformers import BertConfig, BertModel, ViTConfig, ViTModel

from vtrbench.pretrained import (
    CLIP_MEAN,
    CLIP_STD,
    CLIP_TYPES,
    FRAME_TYPES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TEXT_TYPES,
    CLIPText,
    CLIPVision,
    checkpoint_type,
    image_stats,
    load_clip_tower,
)

MAX_FRAMES = 64  # learned temporal positions available to the temporal encoder


@dataclass
class TextEncoderConfig:
    pretrained: str | None = None  # local dir or hub id (BERT or CLIP); None = build from the fields below
    hidden: int = 64  # width of a from-scratch encoder
    layers: int = 2
    heads: int = 4
    max_length: int = 32  # tokens per caption, including [CLS]/[SEP] (CLIP: <|startoftext|>/<|endoftext|>)
    pooling: str = "mean"  # the caption feature: "cls" token or "mean" of the non-padding tokens; ignored for CLIP


@dataclass
class FrameEncoderConfig:
    pretrained: str | None = None  # local dir or hub id (ViT/DeiT or CLIP); None = build from the fields below
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    patch_size: int = 8  # pixels; 32 px frames -> 4x4 = 16 patches (from scratch only)
    pooling: str = "mean"  # the per-frame feature: "cls" token or "mean" of the patch tokens; ignored for CLIP


@dataclass
class TemporalEncoderConfig:
    layers: int = 2
    heads: int = 4
    # Frame features leave a LayerNorm at unit scale; positions drawn at BERT's 0.02 are 2% of that, so attention
    # starts order-blind and some seeds never learn order (measured: docs/results.md, "Training recipe").
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
    pooled: Tensor  # [B, Dt] the caption feature ([CLS] / mean of the real tokens: model.text.pooling; CLIP: EOT)
    tokens: Tensor  # [B, L, Dt] (CLIP: projected, same width as pooled)
    padding_mask: Tensor  # [B, L] bool, True = padding


@dataclass
class FrameOutput:
    pooled: Tensor  # [B, M, Df] one feature per frame ([CLS] / mean of the patches: model.frame.pooling; CLIP: class)
    patches: Tensor  # [B, M, N, Df] (CLIP: projected, same width as pooled)


class TextEncoder(nn.Module):
    """BERT (or CLIP's text tower) over token ids: the pooled caption feature, the token features, the padding mask.

    ``pooling: mean`` (the from-scratch default) averages the real tokens: a 2-layer BERT trained from zero learns a
    useful [CLS] much later than a useful token average. Pretrained BERTs keep ``cls``, as CLIP4Clip and CRET do.
    CLIP ignores ``pooling``: its caption feature is fixed by pretraining (the EOT token through
    ``text_projection``, i.e. ``text_embeds``), and its tokens go through the same projection, so ``dim`` is the
    projection dim for both.
    """

    def __init__(self, cfg: TextEncoderConfig, vocab_size: int):
        super().__init__()
        key = "model.text.pretrained"
        model_type = checkpoint_type(cfg.pretrained, key, TEXT_TYPES) if cfg.pretrained else "scratch"
        self.kind = "clip" if model_type in CLIP_TYPES else model_type  # "clip" | "bert" | "scratch"
        if self.kind == "clip":
            self.clip = load_clip_tower(CLIPText, cfg.pretrained, model_type, "text", key)
            config = self.clip.config
        elif self.kind == "bert":
            self.bert = BertModel.from_pretrained(cfg.pretrained, add_pooling_layer=False)
            config = self.bert.config
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
        self.dim = config.projection_dim if self.kind == "clip" else config.hidden_size
        if cfg.max_length > config.max_position_embeddings:
            raise ValueError(
                f"model.text.max_length={cfg.max_length} exceeds the {cfg.pretrained or 'text'} encoder's "
                f"max_position_embeddings={config.max_position_embeddings}; lower it"
            )
        if cfg.pooling not in ("cls", "mean"):
            raise ValueError(f"model.text.pooling must be 'cls' or 'mean', got {cfg.pooling!r}")
        self.pooling = cfg.pooling

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> TextOutput:
        """input_ids [B, L] token ids, or float [B, 1 + L, D]: this tower's own output, cached by a frozen-tower run
        (``vtrbench.features``: slot 0 the caption feature, then the tokens), returned as it is."""
        if input_ids.is_floating_point():
            return TextOutput(pooled=input_ids[:, 0], tokens=input_ids[:, 1:], padding_mask=attention_mask == 0)
        if self.kind == "clip":
            out = self.clip(input_ids=input_ids, attention_mask=attention_mask)
            tokens = self.clip.text_projection(out.last_hidden_state)  # [B, L, P] (after final_layer_norm)
            return TextOutput(pooled=out.text_embeds, tokens=tokens, padding_mask=attention_mask == 0)  # [B, P]
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, Dt]
        if self.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            weights = attention_mask.unsqueeze(-1).to(tokens.dtype)  # [B, L, 1]
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)
        return TextOutput(pooled=pooled, tokens=tokens, padding_mask=attention_mask == 0)


class FrameEncoder(nn.Module):
    """ViT (or CLIP's vision tower) on each frame of each video; uint8 frames are normalised here, with the
    encoder's own stats (the checkpoint's preprocessor_config.json; ImageNet's for ViT, CLIP's for CLIP otherwise).

    Frames at another size than the checkpoint's ``image_size`` interpolate its position embeddings (bicubic, in
    transformers' ``interpolate_pos_encoding``). CLIP ignores ``pooling``: its per-frame feature is the class token
    through ``post_layernorm`` + ``visual_projection`` (``image_embeds``), and the patches go through the same two.
    """

    def __init__(self, cfg: FrameEncoderConfig, image_size: int):
        super().__init__()
        key = "model.frame.pretrained"
        model_type = checkpoint_type(cfg.pretrained, key, FRAME_TYPES) if cfg.pretrained else "scratch"
        self.kind = "clip" if model_type in CLIP_TYPES else model_type  # "clip" | "vit" | "scratch"
        if self.kind == "clip":
            self.clip = load_clip_tower(CLIPVision, cfg.pretrained, model_type, "vision", key)
            config = self.clip.config
            if image_size % config.patch_size:
                raise ValueError(
                    f"{key}={cfg.pretrained!r}: its patch size {config.patch_size} must divide the frame resolution "
                    f"dataset.resolution={image_size}"
                )
            mean, std, size = image_stats(cfg.pretrained, CLIP_MEAN, CLIP_STD)
        elif self.kind == "vit":
            self.vit = ViTModel.from_pretrained(cfg.pretrained, add_pooling_layer=False)
            config = self.vit.config
            mean, std, size = image_stats(cfg.pretrained, IMAGENET_MEAN, IMAGENET_STD)
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
            mean, std, size = [0.5] * 3, [0.5] * 3, None
        self.dim = config.projection_dim if self.kind == "clip" else config.hidden_size
        if cfg.pooling not in ("cls", "mean"):
            raise ValueError(f"model.frame.pooling must be 'cls' or 'mean', got {cfg.pooling!r}")
        self.pooling = cfg.pooling
        native = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
        self.interpolate = native != image_size  # the position grid was trained at `native` px
        self.input_size = size or native  # the checkpoint's preprocessing size (crop): pretraining's frame size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: Tensor) -> FrameOutput:
        """frames: [B, M, H, W, 3] uint8 (as stored), [B, M, 3, H, W] float in [0, 1], or [B, M, 1 + N, D] float: this
        tower's own output, cached by a frozen-tower run (``vtrbench.features``: slot 0 the frame feature, then the
        N patches), returned as it is."""
        if frames.ndim == 4:
            return FrameOutput(pooled=frames[:, :, 0], patches=frames[:, :, 1:])
        if frames.dtype == torch.uint8:
            frames = frames.permute(0, 1, 4, 2, 3).float().div_(255.0)  # [B, M, 3, H, W]
        B, M = frames.shape[:2]
        pixels = (frames.flatten(0, 1) - self.mean) / self.std  # [B*M, 3, H, W]
        if self.kind == "clip":
            vision = self.clip.vision_model
            hidden = vision(pixel_values=pixels, interpolate_pos_encoding=self.interpolate).last_hidden_state
            hidden = self.clip.visual_projection(vision.post_layernorm(hidden))  # [B*M, 1+N, P]
            hidden = hidden.view(B, M, *hidden.shape[1:])  # [B, M, 1+N, P]
            return FrameOutput(pooled=hidden[:, :, 0], patches=hidden[:, :, 1:])
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
        if cfg.frame.pretrained:  # a wrong frame checkpoint fails before the text tower's weights are read
            checkpoint_type(cfg.frame.pretrained, "model.frame.pretrained", FRAME_TYPES)
        self.text = TextEncoder(cfg.text, vocab_size)
        self.frame = FrameEncoder(cfg.frame, image_size)
        self.temporal = TemporalEncoder(cfg.temporal, self.frame.dim)

    @contextlib.contextmanager
    def shared_pass(self) -> Iterator[None]:
        """Within the block, each tower runs once per input tensor: two heads reading the same batch (a
        cross-encoder and the embedding method it embeds) share one forward pass, and one autograd graph.

        Calls are keyed by the identity of their input tensors, so only the very same tensors hit the cache.
        Re-entrant: a nested block shares the outer block's cache.
        """
        towers = [t for t in (self.text, self.frame, self.temporal) if "forward" not in vars(t)]
        for tower in towers:
            tower.forward = _run_once(tower)  # an instance attribute: nn.Module.__call__ finds it first
        try:
            yield
        finally:
            for tower in towers:
                del tower.forward


def _run_once(tower: nn.Module) -> Any:
    """``tower``'s forward, memoised on the identity of its input tensors (see ``Backbones.shared_pass``)."""
    forward, cache = type(tower).forward, {}

    def once(*args: Tensor) -> Any:
        key = tuple(id(a) for a in args)
        if key not in cache:
            cache[key] = (forward(tower, *args), args)  # the inputs are kept alive, so their ids stay unique
        return cache[key][0]

    return once


def _check_heads(key: str, dim: int, heads: int) -> None:
    if dim % heads:
        raise ValueError(f"{key}: hidden={dim} must be divisible by heads={heads}")
