"""Model-based baseline: a cross-encoder reading caption and video together (ClipBERT / CLIP4Clip tightTransf /
ALBEF-BLIP ITM), trained the way ALBEF and BLIP train their matching head.

Towers: the shared backbones. Fusion: a pre-LN transformer over ``[JCLS; text tokens; video tokens]`` (each
projected to the fusion width, plus a type embedding; video tokens carry a learned frame position) -> LayerNorm ->
linear score from JCLS. Video tokens (``video_tokens``):

* ``pooled``: the M temporal frame features + the N patch tokens max-pooled over frames (M + N tokens);
* ``patches``: the M temporal frame features + every frame's N patch tokens (M + M*N tokens: sees where each
  object is in each frame, order included, at several times the fusion cost).

Recipe (ALBEF, Li et al. 2021 §3; BLIP, Li et al. 2022 §3.2; each choice measured on the val split:
docs/cross-encoder.md):

* warm start from a trained embedding method (``init_from``: a dual encoder or CRET, same seed). That method is
  *embedded* here, on the same backbones: its own loss is kept as the contrastive term (ITC) beside the matching
  loss, its similarity mines the hard negatives, and its features give the cheap shortlist used for validation;
* matching loss: listwise cross-entropy per caption over its own hard-negative group plus ``hard_negatives``
  other in-batch videos drawn in proportion to the softmax of the first stage's similarity (ALBEF samples one hard
  negative per sample this way; UNITER mines them with the model itself);
* towers at ``tower_lr_scale`` x lr; the fusion head starts at a small non-zero init (``HEAD_INIT_STD``: a zero
  head gives the fusion no gradient signal through the score's ranking);
* the score is the fusion head alone; combining it with the first stage's score is the two-stage harness's job
  (``vtrbench.rerank``: ITM + w * ITC, w chosen on val), so nothing is counted twice.

Cost: the last fusion layer computes only the JCLS output (the only one read), pairs are scored ``pair_chunk`` at a
time (small enough for the caches), and no attention mask is built when a chunk has no padding (one query never
has). How far this is from the FLOP floor: docs/cross-encoder.md.

It is a :class:`~vtrbench.methods.PairMethod`: ``encode_videos`` caches the video tokens once (offline) together
with the first stage's gallery features; ``encode_texts`` the text tokens; ``score_candidates`` runs the fusion
over every (query, candidate) pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtrbench.backbones import MAX_FRAMES, Backbones
from vtrbench.methods import Batch, EmbeddingMethod, Features, PairMethod, build_method
from vtrbench.options import Count, NonNegativeInt, Positive

TEXT, FRAME, PATCH = 0, 1, 2  # type embeddings
FIRST = "first."  # feature-key prefix of the embedded first stage's features
HEAD_INIT_STD = 0.02  # init std of the score head: small, not zero (ALBEF/BLIP heads; docs/cross-encoder.md)


@dataclass
class CrossEncoderOptions:
    init_from: str | None = None  # configured embedding method whose trained weights we start from and embed
    fusion_layers: Count = 2  # joint transformer depth
    fusion_heads: Count = 4
    video_tokens: str = "pooled"  # "pooled" (M frame + N frame-max-pooled patch tokens) | "patches" (M + M*N)
    contrastive: bool = True  # keep the embedded first stage's own loss (ITC) beside the matching loss
    hard_negatives: NonNegativeInt = 4  # extra candidates per caption: in-batch videos drawn by first-stage softmax
    sampling: str = "softmax"  # "softmax" (ALBEF: drawn in proportion to exp(sim)) | "hardest" (top by sim)
    tower_lr_scale: Positive = 1.0  # lr multiplier of the towers and the first stage's heads
    steps: Count | None = 1000  # optimiser steps (overrides train.steps: the budget on top of the warm start)
    eval_every: Count | None = 250  # overrides train.eval_every
    val_k: Count = 20  # validation re-scores the first stage's top val_k of every val caption
    eval_queries: Count | None = 100  # test: a fixed seeded caption subset scored against the full gallery
    max_text_tokens: Count = 64  # query token features are padded to this length so batches concatenate
    pair_chunk: Count = 64  # (query, video) pairs per fusion pass (docs/cross-encoder.md)

    def __post_init__(self) -> None:
        if self.video_tokens not in ("pooled", "patches"):
            raise ValueError(f"cross_encoder: video_tokens must be 'pooled' or 'patches', got {self.video_tokens!r}")
        if self.sampling not in ("softmax", "hardest"):
            raise ValueError(f"cross_encoder: sampling must be 'softmax' or 'hardest', got {self.sampling!r}")


class FusionLayer(nn.Module):
    """Pre-LN transformer block whose queries may be a prefix of its tokens (the last layer: JCLS only).

    ``forward(x, mask, queries)``: x [P, T, D]; mask [P, T] bool (True = a real token) or None (no padding);
    the output is [P, queries, D], every query attending to all T tokens. Written out (rather than
    ``nn.TransformerEncoderLayer``) so the last layer computes one row instead of T.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, mask: Tensor | None, queries: int | None = None) -> Tensor:
        P, T, D = x.shape
        Q, H = (T if queries is None else queries), self.heads
        h = self.norm1(x)
        w, b = self.qkv.weight, self.qkv.bias
        q = F.linear(h[:, :Q], w[:D], b[:D]).view(P, Q, H, D // H).transpose(1, 2)  # [P, H, Q, D/H]
        kv = F.linear(h, w[D:], b[D:]).view(P, T, 2, H, D // H).permute(2, 0, 3, 1, 4)  # [2, P, H, T, D/H]
        # attention as two batched matmuls rather than the fused scaled_dot_product_attention kernel: faster on CPU
        # for these short sequences (T ~ 40; docs/cross-encoder.md)
        logits = torch.matmul(q * (D // H) ** -0.5, kv[0].transpose(-1, -2))  # [P, H, Q, T]
        if mask is not None:
            logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
        a = torch.matmul(logits.softmax(-1), kv[1])  # [P, H, Q, D/H]
        y = x[:, :Q] + self.out(a.transpose(1, 2).reshape(P, Q, D))  # [P, Q, D]
        return y + self.mlp(self.norm2(y))


class CrossEncoder(PairMethod):
    design = "cross-encoder"
    options_class = CrossEncoderOptions

    def __init__(self, backbones: Backbones, options: dict[str, Any], methods: dict[str, Any] | None = None):
        super().__init__(backbones, options)
        opts = self.opts
        self.first: EmbeddingMethod | None = None
        if opts.init_from:
            if not methods or opts.init_from not in methods:
                raise ValueError(f"cross_encoder: init_from={opts.init_from!r} is not a configured method")
            first = build_method(backbones, methods[opts.init_from], methods)  # the same backbones: one tower
            if not isinstance(first, EmbeddingMethod):
                raise ValueError(f"cross_encoder: init_from={opts.init_from!r} must be an embedding method")
            self.first = first
        text_dim, frame_dim = backbones.text.dim, backbones.frame.dim
        dim = frame_dim  # fusion width
        if dim % opts.fusion_heads:
            raise ValueError(f"cross_encoder: fusion width {dim} must be divisible by fusion_heads={opts.fusion_heads}")
        self.text_in = nn.Linear(text_dim, dim)
        self.video_in = nn.Linear(frame_dim, dim)
        self.type_embed = nn.Embedding(3, dim)
        self.frame_pos = nn.Parameter(torch.zeros(MAX_FRAMES, dim))  # frame index of each video token
        self.jcls = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.frame_pos, std=0.02)
        nn.init.normal_(self.jcls, std=0.02)
        self.fusion = nn.ModuleList([FusionLayer(dim, opts.fusion_heads) for _ in range(opts.fusion_layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 1)
        nn.init.normal_(self.head.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.head.bias)

    # -- hooks used by the trainer and the evaluator ------------------------------------------------------------

    def warm_start(self, state_dict: dict[str, Tensor]) -> None:
        """Load the ``init_from`` method's trained weights into the embedded first stage (towers included)."""
        if self.first is None:
            raise ValueError("cross_encoder: a warm start needs init_from")
        missing, unexpected = self.first.load_state_dict(state_dict, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"cross_encoder: the init_from checkpoint does not fit method {self.opts.init_from!r} (missing "
                f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}); retrain it with this config"
            )

    def param_lr_scales(self) -> dict[str, float]:
        """The towers and the first stage's heads train at ``tower_lr_scale`` x lr, the fusion at lr."""
        return {"backbones.": self.opts.tower_lr_scale, "first.": self.opts.tower_lr_scale}

    def train_overrides(self) -> dict[str, Any]:
        out = {}
        if self.opts.steps is not None:
            out["steps"] = self.opts.steps
        if self.opts.eval_every is not None:
            out["eval_every"] = self.opts.eval_every
        return out

    def query_subset(self, n_text: int) -> np.ndarray | None:
        """Fixed seeded caption subset for the full-gallery test evaluation (sorted indices), or None for all."""
        if self.opts.eval_queries is None or self.opts.eval_queries >= n_text:
            return None
        return np.sort(np.random.default_rng(0).choice(n_text, self.opts.eval_queries, replace=False))

    def shortlist(self, queries: Features, gallery: Features) -> tuple[Tensor, int] | None:
        """The embedded first stage's scores [n_text, n_video] and the depth ``val_k`` validation re-scores."""
        if self.first is None:
            return None
        return self.first.score(_unprefix(queries), _unprefix(gallery)), self.opts.val_k

    def loss_label(self) -> str:
        return "itc+match" if self.first is not None and self.opts.contrastive else "match"

    # -- encoders -------------------------------------------------------------------------------------------------

    def _video_tokens(self, frames: Tensor) -> Tensor:
        """-> fusion video tokens [B, Tv, D] (type and frame position embedded)."""
        out = self.backbones.frame(frames)
        M = out.patches.shape[1]
        temporal = self.backbones.temporal(out.pooled)  # [B, M, Df]
        frame_tok = self.video_in(temporal) + self.type_embed.weight[FRAME] + self.frame_pos[:M]  # [B, M, D]
        if self.opts.video_tokens == "pooled":
            patch_tok = self.video_in(out.patches.amax(1))  # [B, N, D]
        else:
            patch_tok = (self.video_in(out.patches) + self.frame_pos[:M, None]).flatten(1, 2)  # [B, M*N, D]
        return torch.cat([frame_tok, patch_tok + self.type_embed.weight[PATCH]], 1)

    def _text_tokens(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """-> text tokens [B, L, D] and their mask [B, L] (1 = token)."""
        out = self.backbones.text(input_ids, attention_mask)
        tokens = self.text_in(out.tokens) + self.type_embed.weight[TEXT]  # [B, L, D]
        return tokens, attention_mask.to(tokens.dtype)

    def encode_videos(self, frames: Tensor) -> Features:
        with self.backbones.shared_pass():  # the first stage and the fusion read one tower pass
            gallery = {"tokens": self._video_tokens(frames)}
            if self.first is not None:
                gallery |= {FIRST + k: v for k, v in self.first.encode_videos(frames).items()}
        return gallery

    def encode_texts(self, input_ids: Tensor, attention_mask: Tensor) -> Features:
        with self.backbones.shared_pass():
            tokens, mask = self._text_tokens(input_ids, attention_mask)
            L = tokens.shape[1]
            if self.opts.max_text_tokens < L:
                raise ValueError(
                    f"cross_encoder: captions of {L} tokens exceed max_text_tokens={self.opts.max_text_tokens}"
                )
            pad = self.opts.max_text_tokens - L  # fixed width so query batches concatenate; trimmed again in scoring
            queries = {"tokens": F.pad(tokens, (0, 0, 0, pad)), "mask": F.pad(mask, (0, pad))}
            if self.first is not None:
                queries |= {FIRST + k: v for k, v in self.first.encode_texts(input_ids, attention_mask).items()}
        return queries

    # -- scoring ------------------------------------------------------------------------------------------------

    def pair_scores(self, text: Tensor, mask: Tensor, video: Tensor) -> Tensor:
        """Fusion score of P aligned pairs: text [P, L, D], mask [P, L], video [P, Tv, D] -> [P]."""
        P = text.shape[0]
        x = torch.cat([self.jcls.expand(P, -1, -1), text, video], 1)  # [P, 1+L+Tv, D]
        padded = not bool(mask.all())
        valid = torch.cat([mask.new_ones(P, 1), mask, mask.new_ones(P, video.shape[1])], 1).bool() if padded else None
        for i, layer in enumerate(self.fusion):
            x = layer(x, valid, queries=1 if i == len(self.fusion) - 1 else None)  # last layer: JCLS only
        return self.head(self.norm(x[:, 0])).squeeze(-1)  # [P]

    def score_candidates(self, queries: Features, gallery: Features, candidates: Tensor) -> Tensor:
        """[n_text, k] fusion-head scores of the candidates, ``pair_chunk`` pairs per fusion pass."""
        n_text, k = candidates.shape
        width = max(int(queries["mask"].sum(1).max()), 1)
        text, mask = queries["tokens"][:, :width], queries["mask"][:, :width]  # [n_text, L, D], [n_text, L]
        flat = candidates.flatten()  # [n_text * k] pair p = (text p // k, video flat[p])
        owner = torch.arange(n_text, device=candidates.device).repeat_interleave(k)
        out = text.new_empty(n_text * k)
        for p0 in range(0, n_text * k, self.opts.pair_chunk):
            p1 = min(p0 + self.opts.pair_chunk, n_text * k)
            rows = owner[p0:p1]
            out[p0:p1] = self.pair_scores(text[rows], mask[rows], gallery["tokens"][flat[p0:p1]])
        return out.view(n_text, k)

    # -- training -------------------------------------------------------------------------------------------------

    def candidates(self, first_sim: Tensor, group_id: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Candidate videos per caption [B, C]: own group first (positive at column 0), then other in-batch videos,
        sampled in proportion to softmax(similarity) (``sampling: softmax``) or the most similar (``hardest``).

        Without groups (group_id -1) the group is the positive alone. Groups must have equal sizes in a batch.
        """
        B = first_sim.shape[0]
        idx = torch.arange(B, device=first_sim.device)
        same = (group_id[:, None] == group_id[None, :]) & (group_id[:, None] >= 0) | (idx[:, None] == idx[None, :])
        # own positive first, then the rest of the group, by a key that sorts them ahead of everything else
        key = torch.where(same, 2.0, -1.0) + (idx[:, None] == idx[None, :]).float()  # [B, B]
        group_size = int(same.sum(1).min())
        group = key.topk(group_size, dim=1).indices  # [B, G] positive first
        k = min(self.opts.hard_negatives, B - int(same.sum(1).max()))
        if k <= 0:
            return group
        others = first_sim.masked_fill(same, float("-inf"))  # [B, B]
        if self.opts.sampling == "hardest":
            hard = others.topk(k, dim=1).indices
        else:
            hard = torch.multinomial(others.softmax(1), k, replacement=False, generator=generator)  # [B, k]
        return torch.cat([group, hard], 1)  # [B, C]

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        with self.backbones.shared_pass():  # one tower pass for the contrastive term, the mining and the fusion
            terms: dict[str, Tensor] = {}
            if self.first is not None and self.opts.contrastive:
                terms |= self.first.loss(batch)
            video = self._video_tokens(batch["frames"])  # [B, Tv, D]
            text, mask = self._text_tokens(batch["input_ids"], batch["attention_mask"])  # [B, L, D], [B, L]
            B = text.shape[0]
            if self.first is not None:
                with torch.no_grad():
                    q = self.first.encode_texts(batch["input_ids"], batch["attention_mask"])
                    first_sim = self.first.logit_scale() * self.first.score(
                        q, self.first.encode_videos(batch["frames"])
                    )
            else:
                first_sim = torch.zeros(B, B, device=text.device)
        cand = self.candidates(first_sim.float(), batch["group_id"])  # [B, C]
        C = cand.shape[1]
        s = self.pair_scores(
            text[:, None].expand(B, C, -1, -1).flatten(0, 1),
            mask[:, None].expand(B, C, -1).flatten(0, 1),
            video[cand.flatten()],
        ).view(B, C)  # [B, C]
        target = torch.zeros(B, dtype=torch.long, device=s.device)  # the positive is candidate 0
        return {**terms, "match_loss": F.cross_entropy(s, target)}


def _unprefix(features: Features) -> Features:
    """The first stage's own features out of a cross-encoder feature dict."""
    return {k[len(FIRST) :]: v for k, v in features.items() if k.startswith(FIRST)}
