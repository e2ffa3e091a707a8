"""Symmetric InfoNCE, with the features all-gathered across ranks so the negatives are the global batch.

Adapted from open_clip's ``ClipLoss`` (MIT): one process is the same class with ``world_size=1``. The gather
(``vtrbench.distributed.all_gather_with_grad``) sends back to each rank the gradient of the global-batch loss w.r.t.
its own samples, summed over ranks, so with DDP's gradient average a W-process step equals a one-process step on the
same global batch (CLIP4Clip's ``AllGather`` keeps only the local slice: 1/W of it, docs/references.md §2).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from vtrbench.distributed import all_gather_with_grad


def gather_features(x: Tensor, world_size: int, rank: int) -> Tensor:
    """Concatenate ``x`` [B, ...] from every rank -> [world_size * B, ...]; gradients flow back to the local slice."""
    if world_size == 1:
        return x
    if dist.get_world_size() != world_size or dist.get_rank() != rank:
        raise RuntimeError(
            f"loss set for rank {rank}/{world_size}, process group is {dist.get_rank()}/{dist.get_world_size()}"
        )
    return all_gather_with_grad(x)


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
