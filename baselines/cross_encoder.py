"""Model-based baseline: a cross-encoder reading caption and video together (ClipBERT / CLIP4Clip tightTransf).

Towers (the shared backbones): caption -> text tokens [B, L, Dt]; frames -> per-frame feature -> temporal encoder
[B, M, Df] and patch tokens [B, M, N, Df]. Fusion: a pre-LN transformer over
``[JCLS; text tokens; M temporal frame tokens; video patch tokens]`` (each projected to the fusion width, plus a
type embedding) -> LayerNorm -> linear score from JCLS. ``video_tokens: pooled`` keeps the N patch tokens
max-pooled over frames (the prototype's 24 video tokens); ``patches`` keeps every frame's patches with a frame
position (M x N tokens: sees where each object is in each frame, at ~5x the fusion cost).

Recipe (../shared/docs/synthetic-prototype.md, round 2 Q2; README "Cross-encoder"): from scratch it stays at
chance on CPU budgets, so the towers are **warm-started** from a trained dual encoder (``init_from``) and fine-tuned
at ``tower_lr_scale`` x lr. Loss: listwise cross-entropy per caption over its own hard-negative group plus the
``hard_negatives`` hardest other in-batch videos ranked by the dual encoder's cosine (ALBEF-style mining).
With ``residual: true`` the score is ``fusion head (zero-initialised) + w * dual cosine`` (w learnable, starts at
the dual's logit scale), so training starts from the dual encoder's ranking and the fusion learns a correction.

It is a :class:`~vtrbench.methods.PairMethod`: ``encode_videos`` caches the video tokens once (offline),
``encode_texts`` the text tokens; ``score`` runs the fusion over every (query, video) pair, in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtrbench.backbones import MAX_FRAMES, Backbones
from vtrbench.methods import Batch, Features, PairMethod


@dataclass
class CrossEncoderOptions:
    fusion_layers: int = 2  # joint transformer depth
    fusion_heads: int = 4
    video_tokens: str = "pooled"  # "pooled" (M frame + N frame-max-pooled patch tokens) | "patches" (M + M*N)
    residual: bool = True  # score = fusion head + w * dual cosine (False: the fusion head alone)
    init_from: str | None = None  # name of a configured dual_encoder method whose trained towers and heads we copy
    dual_pooling: str = "seq"  # pooling of that dual encoder (its heads are rebuilt here to load them)
    dual_dim: int = 64  # its embedding width
    tower_lr_scale: float = 0.1  # lr multiplier of the warm-started towers and dual heads
    hard_negatives: int = 4  # extra candidates per caption: hardest other in-batch videos by dual cosine
    steps: int | None = 800  # optimiser steps (overrides train.steps: the budget on top of the dual encoder's)
    eval_every: int | None = 200  # overrides train.eval_every
    eval_queries: int | None = 100  # fixed seeded caption subset scored against the full gallery (None = all)
    max_text_tokens: int = 64  # query token features are padded to this length so batches concatenate
    pair_chunk: int = 4096  # (query, video) pairs per fusion forward in ``score``

    def __post_init__(self) -> None:
        if self.video_tokens not in ("pooled", "patches"):
            raise ValueError(f"cross_encoder: video_tokens must be 'pooled' or 'patches', got {self.video_tokens!r}")
        if self.dual_pooling not in ("mean", "seq"):
            raise ValueError(f"cross_encoder: dual_pooling must be 'mean' or 'seq', got {self.dual_pooling!r}")
        if self.tower_lr_scale <= 0 or self.hard_negatives < 0 or self.pair_chunk < 1:
            raise ValueError("cross_encoder: tower_lr_scale must be > 0, hard_negatives >= 0, pair_chunk >= 1")
        if self.eval_queries is not None and self.eval_queries < 1:
            raise ValueError(f"cross_encoder: eval_queries must be >= 1 or null, got {self.eval_queries}")


TEXT, FRAME, PATCH = 0, 1, 2  # type embeddings


class CrossEncoder(PairMethod):
    options_class = CrossEncoderOptions

    def __init__(self, backbones: Backbones, options: dict[str, Any], methods: dict[str, Any] | None = None):
        super().__init__(backbones, options)
        opts = self.opts
        text_dim, frame_dim = backbones.text.dim, backbones.frame.dim
        dim = frame_dim  # fusion width
        if dim % opts.fusion_heads:
            raise ValueError(f"cross_encoder: fusion width {dim} must be divisible by fusion_heads={opts.fusion_heads}")
        # the dual encoder's heads (same names' shapes as baselines/dual_encoder.py), for mining and the residual
        self.dual_video_proj = nn.Linear(frame_dim, opts.dual_dim)
        self.dual_text_proj = nn.Linear(text_dim, opts.dual_dim)
        self.dual_logit_scale = nn.Parameter(torch.tensor(1.0 / 0.07).log())
        # fusion
        self.text_in = nn.Linear(text_dim, dim)
        self.video_in = nn.Linear(frame_dim, dim)
        self.type_embed = nn.Embedding(3, dim)
        self.frame_pos = nn.Parameter(torch.zeros(MAX_FRAMES, dim))  # frame index of each patch token
        self.jcls = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.frame_pos, std=0.02)
        nn.init.normal_(self.jcls, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, opts.fusion_heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.fusion = nn.TransformerEncoder(
            layer, opts.fusion_layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.head = nn.Linear(dim, 1)
        if opts.residual:  # start exactly at the dual encoder's score
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    # -- hooks used by the trainer and the evaluator ------------------------------------------------------------

    def warm_start(self, state_dict: dict[str, Tensor]) -> None:
        """Copy the towers and the dual heads from a trained dual encoder's ``model.pt`` weights."""
        mapping = {
            "video_proj.": "dual_video_proj.",
            "text_proj.": "dual_text_proj.",
            "nce.logit_scale": "dual_logit_scale",
        }
        picked = {}
        for key, value in state_dict.items():
            if key.startswith("backbones."):
                picked[key] = value
            for old, new in mapping.items():
                if key.startswith(old):
                    picked[new + key[len(old) :]] = value
        own = self.state_dict()
        missing = sorted(k for k in own if (k.startswith(("backbones.", "dual_"))) and k not in picked)
        wrong = sorted(k for k, v in picked.items() if k in own and own[k].shape != v.shape)
        if missing or wrong:
            raise ValueError(
                f"cross_encoder: the init_from checkpoint is not a matching dual encoder (missing {missing[:3]}, "
                f"shape mismatch {wrong[:3]}); check dual_pooling/dual_dim against method {self.opts.init_from!r}"
            )
        self.load_state_dict(picked, strict=False)

    def param_lr_scales(self) -> dict[str, float]:
        """Parameter-name prefix -> lr multiplier: warm-started towers and dual heads train slower."""
        if not self.opts.init_from:
            return {}
        return {"backbones.": self.opts.tower_lr_scale, "dual_": self.opts.tower_lr_scale}

    def train_overrides(self) -> dict[str, Any]:
        out = {}
        if self.opts.steps is not None:
            out["steps"] = self.opts.steps
        if self.opts.eval_every is not None:
            out["eval_every"] = self.opts.eval_every
        return out

    def query_subset(self, n_text: int) -> np.ndarray | None:
        """Fixed seeded caption subset for evaluation (sorted indices), or None for every caption."""
        if self.opts.eval_queries is None or self.opts.eval_queries >= n_text:
            return None
        return np.sort(np.random.default_rng(0).choice(n_text, self.opts.eval_queries, replace=False))

    # -- encoders -------------------------------------------------------------------------------------------------

    def _video(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """-> fusion video tokens [B, Tv, D] (type embedded) and the dual video embedding [B, Dd]."""
        out = self.backbones.frame(frames)
        M = out.patches.shape[1]
        temporal = self.backbones.temporal(out.pooled)  # [B, M, Df]
        pooled = temporal if self.opts.dual_pooling == "seq" else out.pooled
        dual = F.normalize(self.dual_video_proj(pooled.mean(1)), dim=-1)  # [B, Dd]
        frame_tok = self.video_in(temporal) + self.type_embed.weight[FRAME]  # [B, M, D]
        if self.opts.video_tokens == "pooled":
            patch_tok = self.video_in(out.patches.amax(1))  # [B, N, D]
        else:
            patch_tok = self.video_in(out.patches) + self.frame_pos[:M, None]  # [B, M, N, D]
            patch_tok = patch_tok.flatten(1, 2)  # [B, M*N, D]
        return torch.cat([frame_tok, patch_tok + self.type_embed.weight[PATCH]], 1), dual

    def _text(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> text tokens [B, L, D], valid mask [B, L] (1 = token), dual text embedding [B, Dd]."""
        out = self.backbones.text(input_ids, attention_mask)
        dual = F.normalize(self.dual_text_proj(out.pooled), dim=-1)  # [B, Dd]
        tokens = self.text_in(out.tokens) + self.type_embed.weight[TEXT]  # [B, L, D]
        return tokens, attention_mask.to(tokens.dtype), dual

    def encode_videos(self, frames: Tensor) -> Features:
        tokens, dual = self._video(frames)
        return {"tokens": tokens, "dual": dual}

    def encode_texts(self, input_ids: Tensor, attention_mask: Tensor) -> Features:
        tokens, mask, dual = self._text(input_ids, attention_mask)
        L = tokens.shape[1]
        if self.opts.max_text_tokens < L:
            raise ValueError(
                f"cross_encoder: captions of {L} tokens exceed max_text_tokens={self.opts.max_text_tokens}"
            )
        pad = self.opts.max_text_tokens - L  # fixed width so query batches concatenate; trimmed again in score
        return {"tokens": F.pad(tokens, (0, 0, 0, pad)), "mask": F.pad(mask, (0, pad)), "dual": dual}

    # -- scoring ------------------------------------------------------------------------------------------------

    def dual_scale(self) -> Tensor:
        return self.dual_logit_scale.clamp(max=4.6052).exp()

    def pair_scores(self, text: Tensor, mask: Tensor, video: Tensor) -> Tensor:
        """Fusion score of P aligned pairs: text [P, L, D], mask [P, L], video [P, Tv, D] -> [P]."""
        P = text.shape[0]
        x = torch.cat([self.jcls.expand(P, -1, -1), text, video], 1)  # [P, 1+L+Tv, D]
        valid = torch.cat([mask.new_ones(P, 1), mask, mask.new_ones(P, video.shape[1])], 1)  # [P, 1+L+Tv]
        h = self.fusion(x, src_key_padding_mask=valid == 0)  # [P, 1+L+Tv, D]
        return self.head(h[:, 0]).squeeze(-1)  # [P]

    def interaction_scores(self, queries: Features, gallery: Features, candidates: Tensor) -> Tensor:
        """[n_text, k] fusion-head scores of the candidates, ``pair_chunk`` pairs per fusion pass."""
        n_text, k = candidates.shape
        width = max(int(queries["mask"].sum(1).max()), 1)
        text, mask = queries["tokens"][:, :width], queries["mask"][:, :width]  # [n_text, L, D], [n_text, L]
        video = gallery["tokens"]  # [n_video, Tv, D]
        out = text.new_empty(n_text, k)
        videos_per_chunk = max(1, min(k, self.opts.pair_chunk))
        texts_per_chunk = max(1, self.opts.pair_chunk // videos_per_chunk)
        for t0 in range(0, n_text, texts_per_chunk):
            t1 = min(t0 + texts_per_chunk, n_text)
            for v0 in range(0, k, videos_per_chunk):
                v1 = min(v0 + videos_per_chunk, k)
                q, g = t1 - t0, v1 - v0
                s = self.pair_scores(
                    text[t0:t1, None].expand(q, g, -1, -1).flatten(0, 1),
                    mask[t0:t1, None].expand(q, g, -1).flatten(0, 1),
                    video[candidates[t0:t1, v0:v1].flatten()],
                )
                out[t0:t1, v0:v1] = s.view(q, g)
        return out

    def score_candidates(self, queries: Features, gallery: Features, candidates: Tensor) -> Tensor:
        """[n_text, k]: the fusion score, plus the residual dual cosine when ``residual``."""
        out = self.interaction_scores(queries, gallery, candidates)
        if self.opts.residual:
            dual = (queries["dual"][:, None] * gallery["dual"][candidates]).sum(-1)  # [n_text, k]
            out = out + self.dual_scale() * dual
        return out

    def loss_label(self) -> str:
        return "match"

    # -- training -------------------------------------------------------------------------------------------------

    def candidates(self, dual_sim: Tensor, group_id: Tensor) -> Tensor:
        """Candidate videos per caption [B, C]: own group first (positive at column 0), then hardest others.

        Without groups (group_id -1) the group is the positive alone. Groups must have equal sizes in a batch.
        """
        B = dual_sim.shape[0]
        idx = torch.arange(B, device=dual_sim.device)
        same = (group_id[:, None] == group_id[None, :]) & (group_id[:, None] >= 0) | (idx[:, None] == idx[None, :])
        # own positive first, then the rest of the group, by a key that sorts them ahead of everything else
        key = torch.where(same, 2.0, -1.0) + (idx[:, None] == idx[None, :]).float()  # [B, B]
        group_size = int(same.sum(1).min())
        group = key.topk(group_size, dim=1).indices  # [B, G] positive first
        k = min(self.opts.hard_negatives, B - int(same.sum(1).max()))
        if k <= 0:
            return group
        hard = dual_sim.masked_fill(same, float("-inf")).topk(k, dim=1).indices  # [B, k]
        return torch.cat([group, hard], 1)  # [B, C]

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        video, v_dual = self._video(batch["frames"])  # [B, Tv, D], [B, Dd]
        text, mask, t_dual = self._text(batch["input_ids"], batch["attention_mask"])  # [B, L, D], [B, L], [B, Dd]
        B = text.shape[0]
        dual_sim = t_dual @ v_dual.T  # [B, B]
        cand = self.candidates(dual_sim.detach(), batch["group_id"])  # [B, C]
        C = cand.shape[1]
        s = self.pair_scores(
            text[:, None].expand(B, C, -1, -1).flatten(0, 1),
            mask[:, None].expand(B, C, -1).flatten(0, 1),
            video[cand.flatten()],
        ).view(B, C)  # [B, C]
        if self.opts.residual:
            s = s + self.dual_scale() * dual_sim.gather(1, cand)
        target = torch.zeros(B, dtype=torch.long, device=s.device)  # the positive is candidate 0
        return {"match_loss": F.cross_entropy(s, target)}
