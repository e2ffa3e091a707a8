"""Training batches and evaluation inputs, as pure functions of (seed, step).

The batch at step ``s`` depends only on the seed and ``s`` (epoch permutations and per-step draws come from
``np.random.default_rng([seed, ...])``), so a resumed run sees exactly the batches an uninterrupted one would,
without saving any sampler state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from vtrbench.data.records import NO_GROUP, SplitData
from vtrbench.data.video import sample_indices

GROUP_STREAM, STEP_STREAM = 0, 1  # independent random streams derived from the seed


@dataclass
class Tokens:
    input_ids: Tensor  # [n, L] long
    attention_mask: Tensor  # [n, L] long

    def __getitem__(self, idx: np.ndarray) -> Tokens:
        index = torch.as_tensor(idx, dtype=torch.long)
        ids, mask = self.input_ids[index], self.attention_mask[index]
        width = max(int(mask.sum(1).max()), 1)  # trim the batch to its longest caption
        return Tokens(ids[:, :width], mask[:, :width])


def tokenize(tokenizer: PreTrainedTokenizerBase, captions: list[str], max_length: int) -> Tokens:
    """Tokenise every caption once; a caption with no content token (empty, whitespace, only padding or other
    special tokens such as [CLS]/[SEP]/[PAD]) is rejected with its index. Unknown words ([UNK]) count as content."""
    enc = tokenizer(captions, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    # [UNK] counts as content, unless it is also a structural token (CLIP: unk = eos = pad)
    structural = {tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.cls_token_id}
    ignored = set(tokenizer.all_special_ids) - ({tokenizer.unk_token_id} - structural)
    special = torch.tensor(sorted(i for i in ignored if i is not None), dtype=torch.long)
    content = enc["attention_mask"].bool() & ~torch.isin(enc["input_ids"], special)
    empty = torch.nonzero(content.sum(1) == 0).flatten().tolist()
    if empty:
        raise ValueError(
            f"{len(empty)} caption(s) are empty or only padding/special tokens, e.g. caption #{empty[0]} "
            f"{captions[empty[0]]!r}; fix the annotation file or drop these captions"
        )
    return Tokens(enc["input_ids"], enc["attention_mask"])


class CachedOutputs(Protocol):
    """What a batch reads from a frozen-tower run's cache (``vtrbench.features.CachedFeatures``)."""

    text: np.ndarray | None  # None: the captions go to the text tower as token ids

    def clips(self, videos: np.ndarray, frame_idx: np.ndarray) -> Tensor: ...

    def captions(self, captions: np.ndarray) -> tuple[Tensor, Tensor]: ...


class TrainBatches:
    """Batches of B distinct videos, each with one random caption; whole hard-negative groups when asked.

    With ``features`` (a frozen-tower run, ``vtrbench.features``) a batch carries the towers' cached outputs for the
    same videos, frames and captions in place of pixels (``frames`` [B, M, 1 + N, D]) and, when the text tower is
    frozen too, of token ids (``input_ids`` [B, 1 + W, D] float); the towers read them as their own output.
    """

    def __init__(
        self,
        split: SplitData,
        tokens: Tokens,
        batch_size: int,
        frames: int,
        seed: int,
        group_batches: bool,
        features: CachedOutputs | None = None,
    ):
        self.split, self.tokens, self.batch_size, self.frames, self.seed = split, tokens, batch_size, frames, seed
        self.features = features
        self.captions_of = split.captions_of()
        grouped = group_batches and bool((split.group_id != NO_GROUP).all())
        if grouped:
            order = np.argsort(split.group_id, kind="stable")
            _, starts = np.unique(split.group_id[order], return_index=True)
            self.units = np.split(order, starts[1:])  # one unit = the videos of one group
        else:
            self.units = [np.array([i]) for i in range(split.num_videos)]
        unit_size = len(self.units[0])
        if any(len(u) != unit_size for u in self.units):
            raise ValueError("hard-negative groups must all have the same size for group batches")
        if batch_size % unit_size:
            raise ValueError(f"train.batch_size={batch_size} must be a multiple of the group size {unit_size}")
        self.units_per_batch = batch_size // unit_size
        if self.units_per_batch > len(self.units):
            raise ValueError(
                f"train.batch_size={batch_size} needs {self.units_per_batch} groups/videos but the train split has "
                f"{len(self.units)}"
            )

    def _units_for_step(self, step: int) -> list[int]:
        """Walk epoch permutations of the units; epoch e is permuted with rng(seed, e)."""
        n, per = len(self.units), self.units_per_batch
        chosen: list[int] = []
        position = step * per
        while len(chosen) < per:
            epoch, offset = divmod(position, n)
            perm = np.random.default_rng([self.seed, GROUP_STREAM, epoch]).permutation(n)
            take = min(per - len(chosen), n - offset)
            chosen.extend(perm[offset : offset + take].tolist())
            position += take
        return chosen

    def __call__(self, step: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, STEP_STREAM, step])
        videos = np.concatenate([self.units[u] for u in self._units_for_step(step)])  # [B]
        caption = np.array([rng.choice(self.captions_of[v]) for v in videos])
        available = self.split.frames.shape[1]
        frame_idx = np.stack([sample_indices(available, self.frames, "random", rng) for _ in videos])  # [B, M]
        group_id = torch.from_numpy(self.split.group_id[videos])
        if self.features is not None:
            clips = self.features.clips(videos, frame_idx)  # [B, M, 1 + N, D]
        else:
            clips = torch.from_numpy(
                np.ascontiguousarray(self.split.frames.gather(videos, frame_idx))
            )  # [B, M, H, W, 3]
        if self.features is not None and self.features.text is not None:
            text, mask = self.features.captions(caption)
            return {"frames": clips, "input_ids": text, "attention_mask": mask, "group_id": group_id}
        tok = self.tokens[caption]
        return {"frames": clips, "input_ids": tok.input_ids, "attention_mask": tok.attention_mask, "group_id": group_id}


def eval_clips(split: SplitData, start: int, stop: int, frames: int) -> Tensor:
    """Videos ``start:stop`` with ``frames`` segment-centre frames: uint8 [n, M, H, W, 3]."""
    idx = sample_indices(split.frames.shape[1], frames, "uniform")
    clips = split.frames[np.arange(start, stop)][:, idx]
    return torch.from_numpy(np.ascontiguousarray(clips))


def random_batch(tokens: Tokens, batch_size: int, frames: int, resolution: int, generator: torch.Generator) -> dict:
    """A training batch for timing: random uint8 frames [B, M, H, W, 3], B captions drawn from ``tokens``, hard-
    negative groups of 4 (as SynthVTT). Weights and pixel values do not change a step's time, so the throughput
    benchmark and the device check time steps on these instead of real clips."""
    idx = torch.randint(0, tokens.input_ids.shape[0], (batch_size,), generator=generator).numpy()
    tok = tokens[idx]
    shape = (batch_size, frames, resolution, resolution, 3)
    return {
        "frames": torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator),
        "input_ids": tok.input_ids,
        "attention_mask": tok.attention_mask,
        "group_id": torch.arange(batch_size, dtype=torch.int32) // 4,
    }
