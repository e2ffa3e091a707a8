"""CCM: Cross-modal Correspondence Modeling (CRET, SIGIR 2022; docs/cret.md §3).

Facts [F] (paper Fig. 2 and Table 7; docs/cret.md §1 and §3): K learnable centre queries, shared by both
modalities, are decoded against each modality's local features by a transformer decoder with weights shared
across modalities; the K outputs live in an aligned space and are trained with an NCE loss. Table 7 ablates
sharing the queries and sharing the decoder weights; both shared is best. Both switches are config
fields here.

Reconstructed [R] (docs/cret.md §3, following GLSCL, Zhang et al. 2024):
  * each decoder layer is PyTorch's ``nn.TransformerDecoderLayer``: query self-attention -> cross-attention
    over the memory (the "distance -> weight" step, text padding masked to -inf) -> FFN. We use
    ``norm_first=True`` (pre-LN) plus a final LayerNorm in ``nn.TransformerDecoder``, a ReLU FFN (the
    PyTorch/DETR default) and ``batch_first=True``;
  * the output of centre k is L2-normalised: z_k = C_last[k] / ||C_last[k]||;
  * the local score matches centre k of the text only with centre k of the video and averages over k:
        s_loc(t, v) = (1/K) sum_k <z^t_k, z^v_k>                    (``local_score``)
  * K, depth and heads are unknown; defaults here are small test sizes, GLSCL uses K = 8, 3 layers, 8 heads.

Memory: for video, the frame-wise max-pooled, projected patch tokens [B, N, D]; for text, the word tokens
[B, L, D] with a padding mask (True = padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODALITIES = ("text", "video")


@dataclass
class CCMConfig:
    """Configuration of the CCM module (docs/cret.md §3)."""

    dim: int = 64  # model width D (the text embedding dim; video tokens are projected to it, docs/cret.md §2)
    num_centres: int = 8  # K shared centre queries [R] (GLSCL default, docs/cret.md §3)
    layers: int = 2  # decoder depth [R] (GLSCL uses 3)
    heads: int = 4  # attention heads; must divide dim [R]
    ffn_mult: int = 4  # FFN hidden width = ffn_mult * dim (standard transformer ratio) [R]
    dropout: float = 0.0  # dropout inside the decoder layers [R]
    share_queries: bool = True  # paper Table 7: one set of centre queries for text and video [F]
    share_weights: bool = True  # paper Table 7: one decoder for text and video [F]

    def __post_init__(self) -> None:
        if self.dim < 1 or self.num_centres < 1 or self.layers < 1 or self.heads < 1 or self.ffn_mult < 1:
            raise ValueError(
                "CCMConfig sizes must be >= 1, got "
                f"dim={self.dim}, num_centres={self.num_centres}, layers={self.layers}, "
                f"heads={self.heads}, ffn_mult={self.ffn_mult}"
            )
        if self.dim % self.heads != 0:
            raise ValueError(f"CCMConfig.heads must divide dim, got dim={self.dim}, heads={self.heads}")


def _make_decoder(cfg: CCMConfig) -> nn.TransformerDecoder:
    """Pre-LN decoder: self-attn over queries -> cross-attn over memory -> FFN, then a final LayerNorm."""
    layer = nn.TransformerDecoderLayer(
        d_model=cfg.dim,
        nhead=cfg.heads,
        dim_feedforward=cfg.ffn_mult * cfg.dim,
        dropout=cfg.dropout,
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerDecoder(layer, num_layers=cfg.layers, norm=nn.LayerNorm(cfg.dim))


def _check_modality(modality: str) -> None:
    """Raise ValueError unless ``modality`` is "text" or "video"."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of: {', '.join(MODALITIES)}")


class CCM(nn.Module):
    """K centre queries decoded against a modality's tokens; returns K unit-norm centre features (docs/cret.md §3).

    Parameters are stored under the key ``"shared"`` when shared, else under ``"text"`` and ``"video"``:
    ``centres[key]`` is [K, D] and ``decoders[key]`` an ``nn.TransformerDecoder``. Unsharing the queries adds
    exactly K * D parameters; unsharing the weights doubles the decoder's parameters.
    """

    def __init__(self, cfg: CCMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        query_keys = ("shared",) if cfg.share_queries else MODALITIES
        weight_keys = ("shared",) if cfg.share_weights else MODALITIES
        self.centres = nn.ParameterDict(
            {k: nn.Parameter(torch.empty(cfg.num_centres, cfg.dim)) for k in query_keys}
        )  # each [K, D]
        for p in self.centres.values():
            nn.init.normal_(p, std=0.02)  # centre init std 0.02 (DETR/GLSCL practice, docs/cret.md §3)
        self.decoders = nn.ModuleDict({k: _make_decoder(cfg) for k in weight_keys})

    def centres_for(self, modality: str) -> Tensor:
        """The [K, D] centre queries used for ``modality`` ("text" or "video")."""
        _check_modality(modality)
        return self.centres["shared" if self.cfg.share_queries else modality]

    def decoder_for(self, modality: str) -> nn.TransformerDecoder:
        """The decoder used for ``modality`` ("text" or "video")."""
        _check_modality(modality)
        return self.decoders["shared" if self.cfg.share_weights else modality]

    def forward(self, memory: Tensor, modality: str, padding_mask: Tensor | None = None) -> Tensor:
        """Decode the centre queries against ``memory``.

        Args:
            memory: [B, n, D] tokens (video: frame-max-pooled projected patch tokens; text: word tokens).
            modality: "text" or "video"; selects the query set / decoder when they are not shared.
            padding_mask: optional [B, n] bool, True = padding (ignored by cross-attention).

        Returns:
            [B, K, D] centre outputs, each row L2-normalised.

        Raises:
            ValueError: on an unknown modality, a memory that is not [B, n, D] with D = cfg.dim and n >= 1, a
                padding mask that is not a [B, n] bool tensor, or a row that is entirely padding.
        """
        _check_modality(modality)
        if memory.dim() != 3 or memory.shape[-1] != self.cfg.dim or memory.shape[1] < 1:
            raise ValueError(
                f"`memory` must be [B, n, D] with n >= 1 and D = {self.cfg.dim}, got {tuple(memory.shape)}"
            )
        B, n, _ = memory.shape  # [B, n, D]
        if padding_mask is not None:
            if padding_mask.dtype != torch.bool or tuple(padding_mask.shape) != (B, n):
                raise ValueError(
                    f"`padding_mask` must be a bool tensor of shape [B, n] = [{B}, {n}], "
                    f"got {padding_mask.dtype} {tuple(padding_mask.shape)}"
                )
            empty = padding_mask.all(dim=1)  # [B]
            if bool(empty.any()):
                rows = empty.nonzero().flatten().tolist()
                raise ValueError(
                    f"{modality} rows {rows} are entirely padding (caption with no tokens); "
                    "cross-attention over zero keys is undefined (NaN)"
                )
        queries = self.centres_for(modality).unsqueeze(0).expand(B, -1, -1)  # [B, K, D]
        out = self.decoder_for(modality)(queries, memory, memory_key_padding_mask=padding_mask)  # [B, K, D]
        return F.normalize(out, dim=-1)  # [B, K, D]


def local_score(text_centres: Tensor, video_centres: Tensor) -> Tensor:
    """Local CCM score s_loc(t, v) = (1/K) sum_k <z^t_k, z^v_k> for every text/video pair (docs/cret.md §3 [R]).

    Centre k of the text is compared only with centre k of the video (GLSCL's mean of per-query cosines).

    Args:
        text_centres: [n_t, K, D] CCM outputs for the texts (unit-norm rows).
        video_centres: [n_v, K, D] CCM outputs for the videos (unit-norm rows).

    Returns:
        [n_t, n_v] scores in [-1, 1] for unit-norm inputs.

    Raises:
        ValueError: if the inputs are not 3-D or their K, D differ.

    Example:
        >>> z = F.normalize(torch.ones(2, 3, 4), dim=-1)
        >>> local_score(z, z)
        tensor([[1., 1.],
                [1., 1.]])
    """
    same_kd = text_centres.shape[1:] == video_centres.shape[1:]
    if text_centres.dim() != 3 or video_centres.dim() != 3 or not same_kd:
        raise ValueError(
            "`text_centres` and `video_centres` must be [n_t, K, D] and [n_v, K, D] with equal K, D, "
            f"got {tuple(text_centres.shape)} and {tuple(video_centres.shape)}"
        )
    K = text_centres.shape[1]
    return torch.einsum("tkd,vkd->tv", text_centres, video_centres) / K  # [n_t, n_v]
