"""Symmetric InfoNCE, with the features all-gathered across ranks so the negatives are the global batch.

Adapted from open_clip's ``ClipLoss`` (MIT): one process is the same class with ``world_size=1``. The gather
keeps the local slice's autograd graph, so each rank's gradients are those of the global-batch loss restricted to
its own samples (CLIP4Clip's ``AllGather`` semantics, anchors.md §2.1).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def gather_features(x: Tensor, world_size: int, rank: int) -> Tensor:
    """Concatenate ``x`` [B, ...] from every rank -> [world_size * B, ...]; only the local slice carries grad."""
    if world_size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts)


def symmetric_cross_entropy(logits: Tensor) -> Tensor:
    """Mean of text->video and video->text cross-entropy, positives on the diagonal of ``logits`` [B, B]."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class InfoNCE(nn.Module):
    """Symmetric InfoNCE over L2-normalised features with a learnable temperature (CLIP init 0.07).

    Args:
        temperature: initial temperature tau; the module learns ``logit_scale = log(1/tau)``, clamped at 100.
        world_size, rank: distributed settings; features are all-gathered when ``world_size > 1``.
    """

    def __init__(self, temperature: float = 0.07, world_size: int = 1, rank: int = 0):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(1.0 / temperature).log())
        self.world_size = world_size
        self.rank = rank

    def scale(self) -> Tensor:
        return self.logit_scale.clamp(max=4.6052).exp()  # 1/tau <= 100, as in CLIP

    def logits(self, text: Tensor, video: Tensor) -> Tensor:
        """text [B, D], video [B, D] (normalised) -> [B_global, B_global] scaled similarities."""
        text = gather_features(text, self.world_size, self.rank)
        video = gather_features(video, self.world_size, self.rank)
        return self.scale() * text @ video.T

    def forward(self, text: Tensor, video: Tensor) -> Tensor:
        return symmetric_cross_entropy(self.logits(text, video))
