"""CRET: Cross-modal Retrieval Transformer (Ji et al., SIGIR 2022, DOI 10.1145/3477495.3531960).

Read top to bottom with ``docs/cret.md`` (§2 architecture, §3 CCM, §4 GEES, §5 score and loss).
[F] = from the paper's figures/tables, [R] = reconstruction (the paper's equations are not available).

Video side [F, Fig. 2]: frames -> shared frame encoder -> a pooled feature per frame (the paper: CLS; the
  from-scratch default: mean of the patches, ``model.frame.pooling``) and patch tokens.
  * global: per-frame features [B, M, Df] -> shared temporal encoder -> one temporal feature per frame -> linear
    -> L2-norm h [B, M, D]; its mean mu_v [B, D] is the Gaussian mean GEES estimates [R: global score uses mu_v].
  * local: patch tokens [B, M, N, Df] -> frame-wise max-pooling [B, N, Df] -> linear to the text width
    [F: "local features are projected to the text embedding dimension"] -> CCM (video) -> z_v [B, K, Dt].
Text side [F]: caption -> shared text encoder -> pooled feature ([CLS] in the paper) -> linear -> L2-norm t [B, D];
  word tokens -> CCM (text) -> z_t [B, K, Dt].
Score [R, §5]: s(t, v) = <t, mu_v> + alpha * (1/K) sum_k <z_t,k, z_v,k>, an inner product of two flat vectors,
  so the gallery (mu_v and the K centre outputs per video) is computed offline and the query never sees video tokens.
Loss [R, §5]: L = L_global + beta * L_CCM, L_global = GEES (§4) or plain NCE on the means (``nce``),
  L_CCM = symmetric InfoNCE on the local scores (§3), each with its own learnable temperature.

Variant (not in the paper, ``video_memory: frames``): the CCM video memory keeps every frame's patch tokens with a
learned frame position instead of max-pooling them away, so the centres can in principle see motion direction and
order (a max-pooled memory is invariant to the order of the frames, so to time reversal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cret.ccm import CCM, CCMConfig, local_score
from cret.gees import gees_loss, mean_nce_loss
from vtrbench.backbones import MAX_FRAMES, Backbones
from vtrbench.losses import InfoNCE, gather_features, symmetric_cross_entropy
from vtrbench.methods import Batch, EmbeddingMethod, Features, LossFn
from vtrbench.options import Count, NonNegative, Positive


@dataclass
class CRETOptions:
    dim: Count = 64  # width of the global embedding (t, mu_v)
    global_loss: str = "gees"  # "gees" (paper) | "nce" (InfoNCE on the mean temporal feature, Fig. 5 baseline)
    lam: NonNegative = 1.0  # GEES covariance scale lambda [R] (ISDA; 0 = nce)
    gees_chunk: Count | None = None  # videos per GEES chunk (bounds memory; None = whole batch)
    use_ccm: bool = True  # False = the global branch alone (ablation: what CCM adds)
    alpha: NonNegative = 1.0  # score = global + alpha * local [R, docs/cret.md §5]
    beta: NonNegative = 1.0  # loss = global + beta * CCM NCE [R, docs/cret.md §5]
    num_centres: Count = 8  # K [R: GLSCL default]
    ccm_layers: Count = 2  # decoder depth [R]
    ccm_heads: Count = 4
    share_queries: bool = True  # Table 7
    share_weights: bool = True  # Table 7
    video_memory: str = "maxpool"  # "maxpool" (paper, Fig. 2) | "frames" (variant: per-frame tokens + positions)
    temperature: Positive = 0.07  # initial temperature of both branches (learned)

    def __post_init__(self) -> None:
        if self.global_loss not in ("gees", "nce"):
            raise ValueError(f"cret: global_loss must be 'gees' or 'nce', got {self.global_loss!r}")
        if self.video_memory not in ("maxpool", "frames"):
            raise ValueError(f"cret: video_memory must be 'maxpool' or 'frames', got {self.video_memory!r}")
        if self.dim % self.ccm_heads:
            raise ValueError(f"methods.cret.ccm_heads: must divide dim={self.dim}, got {self.ccm_heads}")


class CRET(EmbeddingMethod):
    design = "centres"  # without CCM (use_ccm: false) the global branch alone: a single vector (design_label)
    options_class = CRETOptions

    def __init__(self, backbones: Backbones, options: dict[str, Any], methods: dict[str, Any] | None = None):
        super().__init__(backbones, options)
        opts = self.opts
        text_dim, frame_dim = backbones.text.dim, backbones.frame.dim
        self.global_video_proj = nn.Linear(frame_dim, opts.dim)
        self.global_text_proj = nn.Linear(text_dim, opts.dim)
        self.global_nce = InfoNCE(opts.temperature)  # holds the global branch's learnable logit scale
        if opts.use_ccm:
            self.local_video_proj = nn.Linear(frame_dim, text_dim)  # [F] project to the text width
            self.ccm = CCM(
                CCMConfig(
                    dim=text_dim,
                    num_centres=opts.num_centres,
                    layers=opts.ccm_layers,
                    heads=opts.ccm_heads,
                    share_queries=opts.share_queries,
                    share_weights=opts.share_weights,
                )
            )
            self.local_nce = InfoNCE(opts.temperature)
            if opts.video_memory == "frames":
                self.frame_position = nn.Parameter(torch.randn(MAX_FRAMES, text_dim) * 0.02)

    # ----- video side (offline) -----
    def _video_features(self, frames: Tensor) -> tuple[Tensor, Tensor | None]:
        """-> per-frame global features h [B, M, D] (unit norm), CCM outputs z_v [B, K, Dt] or None."""
        out = self.backbones.frame(frames)
        h = F.normalize(self.global_video_proj(self.backbones.temporal(out.pooled)), dim=-1)  # [B, M, D]
        if not self.opts.use_ccm:
            return h, None
        if self.opts.video_memory == "maxpool":
            memory = self.local_video_proj(out.patches.amax(dim=1))  # [B, N, Dt]
        else:
            B, M, N, _ = out.patches.shape
            tokens = self.local_video_proj(out.patches) + self.frame_position[:M, None]  # [B, M, N, Dt]
            memory = tokens.reshape(B, M * N, -1)  # [B, M*N, Dt]
        return h, self.ccm(memory, "video")

    def encode_videos(self, frames: Tensor) -> Features:
        h, z_v = self._video_features(frames)
        gallery = {"mean": h.mean(1)}  # [B, D] (not re-normalised: <t, mu> = E[<t, v>], docs/cret.md §4)
        if z_v is not None:
            gallery["centres"] = z_v  # [B, K, Dt]
        return gallery

    # ----- text side (online) -----
    def encode_texts(self, input_ids: Tensor, attention_mask: Tensor) -> Features:
        out = self.backbones.text(input_ids, attention_mask)
        queries = {"text": F.normalize(self.global_text_proj(out.pooled), dim=-1)}  # [B, D]
        if self.opts.use_ccm:
            queries["centres"] = self.ccm(out.tokens, "text", out.padding_mask)  # [B, K, Dt]
        return queries

    # ----- score: one inner product of flat vectors -----
    def query_vectors(self, queries: Features) -> Tensor:
        if not self.opts.use_ccm:
            return queries["text"]
        K = queries["centres"].shape[1]
        local = queries["centres"].flatten(1) * (self.opts.alpha / K)  # [n_t, K*Dt]
        return torch.cat([queries["text"], local], dim=1)

    def gallery_vectors(self, gallery: Features) -> Tensor:
        if not self.opts.use_ccm:
            return gallery["mean"]
        return torch.cat([gallery["mean"], gallery["centres"].flatten(1)], dim=1)  # [n_v, D + K*Dt]

    def logit_scale(self) -> float:
        """The global branch's inverse temperature (the score's leading term is <t, mu_v>)."""
        return float(self.global_nce.scale().detach())

    def design_label(self) -> str:
        return self.design if self.opts.use_ccm else "single vector"  # no centres: <t, mu_v> alone

    # ----- training -----
    def loss_label(self) -> str:
        return self.opts.global_loss

    @classmethod
    def loss_benchmarks(cls) -> dict[str, LossFn]:
        """GEES against NCE on the means, alone (the paper's Fig. 5 cost question)."""
        return {"gees": gees_loss, "nce": mean_nce_loss}

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        h, z_v = self._video_features(batch["frames"])
        queries = self.encode_texts(batch["input_ids"], batch["attention_mask"])
        # several processes: the features of the whole global batch (vtrbench/distributed.py), local slice has grad
        world = self.global_nce.world_size, self.global_nce.rank
        text, h = gather_features(queries["text"], *world), gather_features(h, *world)  # [B, D], [B, M, D] global
        scale = self.global_nce.scale()
        if self.opts.global_loss == "gees":
            terms = {"gees_loss": gees_loss(text, h, scale, self.opts.lam, self.opts.gees_chunk)}
        else:
            terms = {"nce_loss": mean_nce_loss(text, h, scale)}
        if z_v is not None:
            z_t, z_v = gather_features(queries["centres"], *world), gather_features(z_v, *world)  # [B, K, Dt] global
            logits = self.local_nce.scale() * local_score(z_t, z_v)  # [B, B]
            terms["ccm_loss"] = self.opts.beta * symmetric_cross_entropy(logits)
        return terms
