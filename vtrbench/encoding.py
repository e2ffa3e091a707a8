"""The one path from a method to the features it scores: gallery and queries of a split, on the job's device.

Validation, test evaluation, two-stage retrieval, the latency benchmark and the device check all encode through
:func:`encode_split` (a loaded checkpoint through :func:`encode_stage`), at the precision the config asks for
(``train.amp``: bf16 encoders on CUDA, fp32 features), so the model whose recall is reported is the model that is
re-ranked and timed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vtrbench.data.batches import Tokens, eval_clips
from vtrbench.data.records import SplitData
from vtrbench.device import autocast
from vtrbench.methods import Features, RetrievalMethod
from vtrbench.runs import Setup, split_tokens


@dataclass
class Encoded:
    """A method with its features of one split (on its device): what scoring and timing read."""

    method: RetrievalMethod
    tokens: Tokens  # the encoded queries' tokens
    queries: Features
    gallery: Features


def _concat(parts: list[Features]) -> Features:
    """Batches stacked along dim 0. Per-token features ([B, L, ...], with the batch trimmed to its longest caption)
    differ in L between batches: they are zero-padded to the widest, so a method marks padding with 0 in its mask
    (and weights), as the towers' attention masks do."""
    return {key: torch.cat(_pad_widths([p[key] for p in parts])) for key in parts[0]}


def _pad_widths(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    if tensors[0].ndim < 2 or len({t.shape[1] for t in tensors}) == 1:
        return tensors
    width = max(t.shape[1] for t in tensors)
    return [torch.nn.functional.pad(t, (0, 0) * (t.ndim - 2) + (0, width - t.shape[1])) for t in tensors]


@torch.no_grad()
def encode_gallery(
    method: RetrievalMethod, split: SplitData, frames: int, batch_size: int, device: torch.device, amp: bool = False
) -> Features:
    """Every video of ``split`` (``frames`` evaluation frames each), in batches; fp32 features on the CPU."""
    parts = []
    for start in range(0, split.num_videos, batch_size):
        clips = eval_clips(split, start, min(start + batch_size, split.num_videos), frames).to(device)
        with autocast(device, amp):
            out = method.encode_videos(clips)
        parts.append({k: v.float().cpu() for k, v in out.items()})
    return _concat(parts)


@torch.no_grad()
def encode_queries(
    method: RetrievalMethod, tokens: Tokens, batch_size: int, device: torch.device, amp: bool = False
) -> Features:
    """Every caption of ``tokens``, in batches; fp32 features on the CPU."""
    parts = []
    n = tokens.input_ids.shape[0]
    for start in range(0, n, batch_size):
        tok = tokens[np.arange(start, min(start + batch_size, n))]
        with autocast(device, amp):
            out = method.encode_texts(tok.input_ids.to(device), tok.attention_mask.to(device))
        parts.append({k: v.float().cpu() for k, v in out.items()})
    return _concat(parts)


def encode_split(
    method: RetrievalMethod, split: SplitData, tokens: Tokens, config: dict[str, Any], device: torch.device
) -> Encoded:
    """Gallery and queries (``tokens``: the split's captions, or a subset of them) with the config's evaluation
    frames, batch size and precision, moved to ``device``."""
    frames, batch, amp = config["eval"]["frames"], config["eval"]["batch_size"], config["train"]["amp"]
    gallery = encode_gallery(method, split, frames, batch, device, amp)
    queries = encode_queries(method, tokens, batch, device, amp)
    on = {k: v.to(device) for k, v in queries.items()}, {k: v.to(device) for k, v in gallery.items()}
    return Encoded(method, tokens, *on)


def encode_stage(setup: Setup, split: SplitData, device: torch.device) -> Encoded:
    """A loaded checkpoint (``vtrbench.runs.load_trained``) on ``device``, in eval mode, with every caption."""
    method = setup.method.to(device).eval()
    return encode_split(method, split, split_tokens(setup, split), setup.config, device)
