"""Frozen towers: the text and frame towers' outputs computed once per prepared dataset, read by every training step.

Why: with pretrained towers that stay fixed (``train.freeze_towers``, the frozen-feature protocol of the field's
linear-probe and adapter baselines), running them in every training step repeats the same forward pass thousands of
times. The features job runs them once over the training split (every stored frame of every video, every caption) and
writes their outputs here; a training step then gathers its batch's rows and runs only the method's own head
(temporal encoder, CCM, fusion, projections). Validation, test evaluation and latency still run the towers on pixels
and token ids, so a query's measured cost includes them.

A batch of cached features goes through the same tower calls as pixels do: ``FrameEncoder`` and ``TextEncoder``
read a features tensor (``FRAME_SLOTS`` / ``TEXT_SLOTS`` below) as their own output, so no method changes.

Files (all atomic; ``features.json`` last, it marks the folder complete)::

    frames.npy     float32 [n_video, F, 1 + N, D]  per stored frame: slot 0 the frame feature, then the N patches
    text.npy       float32 [n_caption, 1 + L, D]   per caption: slot 0 the caption feature, then the L token features
    text_mask.npy  int64   [n_caption, L]          the tokens' attention mask (1 = token), L = the longest caption
    features.json  shapes and the digest of the towers' weights that computed them
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from vtrbench import resultfiles
from vtrbench.backbones import Backbones, FrameEncoder, TextEncoder
from vtrbench.data.batches import Tokens

META = "features.json"
CHUNK = 64  # videos (or 8x as many captions) per forward pass: bounds the job's memory, not its result


def tower_digest(tower: torch.nn.Module) -> str:
    """SHA-256 of one tower's weights: a cache's features are read only by the tower that computed them."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def tower_digests(backbones: Backbones) -> dict[str, str]:
    """The digest of each tower (a warm-started method may carry a first stage's fine-tuned text tower: with
    ``freeze_towers: frame`` only the frame tower has to be the cache's)."""
    return {"text": tower_digest(backbones.text), "frame": tower_digest(backbones.frame)}


@torch.no_grad()
def frame_features(encoder: FrameEncoder, frames: Tensor) -> Tensor:
    """uint8 frames [B, M, H, W, 3] -> the frame tower's output as one tensor [B, M, 1 + N, D] (slot 0 pooled)."""
    out = encoder(frames)
    return torch.cat([out.pooled.unsqueeze(2), out.patches], 2)


@torch.no_grad()
def text_features(encoder: TextEncoder, tokens: Tokens) -> Tensor:
    """Token ids [B, L] -> the text tower's output as one tensor [B, 1 + L, D] (slot 0 pooled)."""
    out = encoder(tokens.input_ids, tokens.attention_mask)
    return torch.cat([out.pooled.unsqueeze(1), out.tokens], 1)


@dataclass
class CachedFeatures:
    """The training split's tower outputs, memory-mapped (see the module docstring for the shapes)."""

    frames: np.ndarray
    text: np.ndarray | None  # None: the text tower fine-tunes (``train.freeze_towers: frame``), batches carry ids
    text_mask: np.ndarray | None

    def clips(self, videos: np.ndarray, frame_idx: np.ndarray) -> Tensor:
        """Frame features of ``videos`` [B] at ``frame_idx`` [B, M] -> [B, M, 1 + N, D]."""
        return torch.from_numpy(np.ascontiguousarray(self.frames[videos[:, None], frame_idx]))

    def captions(self, captions: np.ndarray) -> tuple[Tensor, Tensor]:
        """Caption features [B, 1 + W, D] and mask [B, W], trimmed to the batch's longest caption (as token ids are)."""
        mask = self.text_mask[captions]
        width = max(int(mask.sum(1).max()), 1)
        text = np.ascontiguousarray(self.text[captions, : 1 + width])
        return torch.from_numpy(text), torch.from_numpy(np.ascontiguousarray(mask[:, :width]))


def load_features(folder: str | Path, backbones: Backbones, which: str = "both") -> CachedFeatures:
    """The cache under ``folder``; refuses one whose ``which`` towers (``frame`` or ``both``) had other weights
    than this run's (it would train on wrong inputs)."""
    folder = Path(folder)
    meta_path = folder / META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: run the features job first (vtrbench.cli features)")
    meta = json.loads(meta_path.read_text())
    ours = tower_digests(backbones)
    for tower in ("text", "frame") if which == "both" else ("frame",):
        if meta["towers"].get(tower) != ours[tower]:
            raise RuntimeError(
                f"{folder}: the cached {tower} features were computed by other {tower} tower weights than this "
                f"run's (digest {meta['towers'].get(tower)} against {ours[tower]}); rerun the features job for "
                "these towers"
            )
    frames, text, mask = (np.load(folder / name, mmap_mode="r") for name in ("frames.npy", "text.npy", "text_mask.npy"))
    return CachedFeatures(frames, text, mask)


def compute_features(backbones: Backbones, frames: Any, tokens: Tokens) -> CachedFeatures:
    """Run the towers over every stored frame (``frames``: a FrameStore, ``frames[idx]`` -> uint8
    [len(idx), F, H, W, 3]) and every caption, in chunks, in eval mode."""
    backbones.eval()
    n_video, width = len(frames), int(tokens.attention_mask.sum(1).max())
    ids, mask = tokens.input_ids[:, :width], tokens.attention_mask[:, :width]
    video = [
        frame_features(
            backbones.frame, torch.from_numpy(np.ascontiguousarray(frames[np.arange(i, min(i + CHUNK, n_video))]))
        )
        for i in tqdm(range(0, n_video, CHUNK), desc="frame features", unit="chunk", mininterval=5)
    ]
    step = 8 * CHUNK
    text = [
        text_features(backbones.text, Tokens(ids[i : i + step], mask[i : i + step]))
        for i in tqdm(range(0, ids.shape[0], step), desc="caption features", unit="chunk", mininterval=5)
    ]
    return CachedFeatures(torch.cat(video).float().numpy(), torch.cat(text).float().numpy(), mask.numpy())


def write_features(backbones: Backbones, frames: Any, tokens: Tokens, out: str | Path) -> dict[str, Any]:
    """The features job: :func:`compute_features`, written under ``out`` with the towers' digest (last)."""
    out = Path(out)
    cache = compute_features(backbones, frames, tokens)
    resultfiles.write_npy(out / "frames.npy", cache.frames)
    resultfiles.write_npy(out / "text.npy", cache.text)
    resultfiles.write_npy(out / "text_mask.npy", cache.text_mask)
    meta = {"towers": tower_digests(backbones), "frames": list(cache.frames.shape), "text": list(cache.text.shape)}
    resultfiles.write_json(out / META, meta)
    return meta


def stop_gradients(backbones: Backbones, which: str) -> None:
    """No gradient for the frame tower (``which="frame"``) or for both towers (``"both"``)."""
    for tower in (backbones.text, backbones.frame) if which == "both" else (backbones.frame,):
        tower.requires_grad_(False)


def as_cached(backbones: Backbones, batch: dict[str, Tensor], which: str) -> dict[str, Tensor]:
    """A pixel batch as a frozen-tower run's batch carries it (the throughput stage times that step): frames
    replaced by the frame tower's output and, with ``which="both"``, token ids by the text tower's."""
    out = {**batch, "frames": frame_features(backbones.frame, batch["frames"])}
    if which == "both":
        out["input_ids"] = text_features(backbones.text, Tokens(batch["input_ids"], batch["attention_mask"]))
    return out


def freeze_towers(
    backbones: Backbones, frames: Any, tokens: Tokens, folder: str | Path | None, which: str
) -> CachedFeatures:
    """Stop the gradients of the frame tower (``which="frame"``) or of both towers (``"both"``): the optimiser then
    holds none of their weights. Returns the training split's features, read from ``folder`` (the features job's)
    or computed here when None; with ``"frame"`` they carry no caption features (the text tower runs in the step).
    """
    stop_gradients(backbones, which)
    cache = compute_features(backbones, frames, tokens) if folder is None else load_features(folder, backbones, which)
    return cache if which == "both" else CachedFeatures(cache.frames, None, None)
