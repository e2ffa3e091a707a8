"""The pretraining stage of the synthetic default: a small CLIP trained on single SynthVTT frames against
descriptions of what each frame shows (``vtrbench/data/synthetic_frames.py``), shared by every method.

Every method in the field starts from pretrained towers (CLIP4Clip, X-Pool, DRL from CLIP; CRET from an ImageNet
CaiT and BERT) and fine-tunes for a few epochs; from-scratch towers spend the whole budget learning to see. This
stage gives SynthVTT the same starting point: it writes a ``CLIPModel`` with its tokenizer through
``save_pretrained``, so the runs load it through ``model.text.pretrained`` / ``model.frame.pretrained``, the very
loading code of ``config/msrvtt-clip.yaml``. The recipe is CLIP's (symmetric InfoNCE with a learned temperature,
AdamW, linear warm-up then cosine decay: Radford et al. 2021, §2.5 and appendix F), at the towers' small size.

Its own check, ``check.json``: frame-to-description R@1 on held-out frames from another random stream (each
description once in the gallery, so chance is 1 / ``check_pairs``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from vtrbench import resultfiles
from vtrbench.data.synthetic import SyntheticConfig
from vtrbench.data.synthetic_frames import STATIC_WORDS, frame_pairs
from vtrbench.data.synthetic_grammar import vocabulary
from vtrbench.device import start
from vtrbench.metrics import retrieval_metrics
from vtrbench.plan import PRETRAINED_CHECKPOINT
from vtrbench.pretrained import CLIP_MEAN, CLIP_STD

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def clip_tokenizer(words: list[str]) -> CLIPTokenizer:
    """A byte-level BPE like CLIP's: every byte (alone and word-final) plus whole-word merges of ``words``.

    Any text tokenizes without an unknown token (bytes are the fallback); each of ``words`` is one token.
    """
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(alphabet + [c + "</w>" for c in alphabet])}
    merges: list[tuple[str, str]] = []
    for word in words:
        pieces = [*word[:-1], word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            if (current, piece) not in merges:
                merges.append((current, piece))
            current += piece
            vocab.setdefault(current, len(vocab))
    vocab[BOS], vocab[EOS] = len(vocab), len(vocab) + 1  # the highest ids, as in CLIP (EOT = argmax of the ids)
    return CLIPTokenizer(vocab=vocab, merges=merges, unk_token=EOS, bos_token=BOS, eos_token=EOS, pad_token=EOS)


def synthvtt_tokenizer() -> CLIPTokenizer:
    """The stage's tokenizer: every word of the caption grammar and of the frame descriptions is one token."""
    return clip_tokenizer(sorted({*vocabulary(), *STATIC_WORDS}))


def clip_config(tokenizer: CLIPTokenizer, section: dict[str, Any], max_length: int, image_size: int) -> CLIPConfig:
    """The CLIP's shape: ``pretrain.text`` / ``pretrain.frame`` widths, ``projection_dim``, the run's caption length
    and frame size (no position interpolation when fine-tuning)."""

    def tower(cfg: dict[str, Any]) -> dict[str, Any]:
        width = cfg["hidden"]
        return {"hidden_size": width, "intermediate_size": 4 * width, "num_hidden_layers": cfg["layers"],
                "num_attention_heads": cfg["heads"]}  # fmt: skip

    text = {
        **tower(section["text"]),
        "vocab_size": len(tokenizer),
        "max_position_embeddings": max_length,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {**tower(section["frame"]), "image_size": image_size, "patch_size": section["frame"]["patch_size"]}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=section["projection_dim"])


def _pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] with CLIP's statistics: what FrameEncoder feeds a CLIP tower."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def _lr(step: int, steps: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


@torch.no_grad()
def frame_to_text_r1(model: CLIPModel, frames: np.ndarray, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """R@1 (%) of each frame's own description among every description (rows: frames)."""
    model.eval()
    image = torch.cat([model.get_image_features(pixel_values=_pixels(frames[i : i + 256])).pooler_output
                       for i in range(0, len(frames), 256)])  # fmt: skip
    text = model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
    scores = torch.nn.functional.normalize(image, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).T
    return retrieval_metrics(scores, np.arange(len(frames)))["t2v"]["R@1"]  # frames as the queries, the suite's ranks


def pretrain(config: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Train the frame-description CLIP of ``config['pretrain']`` on the ``config['dataset']`` generator and write
    ``out_dir/clip`` (model + tokenizer), ``out_dir/train_log.csv`` and ``out_dir/check.json``; returns the check."""
    section, dataset = config["pretrain"], config["dataset"]  # validated: a synthetic dataset (config._check_pretrain)
    start(section["threads"], "cpu")
    torch.manual_seed(section["seed"])
    synthetic = SyntheticConfig.from_dataset(dataset)
    frames, texts, _ = frame_pairs(synthetic, section["pairs"], stream=0)
    check_frames, check_texts = _distinct(*frame_pairs(synthetic, 2 * section["check_pairs"], stream=1)[:2])
    check_frames, check_texts = check_frames[: section["check_pairs"]], check_texts[: section["check_pairs"]]
    tokenizer = synthvtt_tokenizer()
    max_length = config["model"]["text"]["max_length"]

    def encode(batch: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = tokenizer(batch, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    ids, mask = encode(texts)
    check_ids, check_mask = encode(check_texts)
    model = CLIPModel(clip_config(tokenizer, section, max_length, dataset["resolution"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=section["lr"], weight_decay=section["weight_decay"])
    order = np.random.default_rng(section["seed"]).permutation(len(texts))
    log, position = [], 0
    for step in range(section["steps"]):
        if position + section["batch_size"] > len(order):
            order, position = np.random.default_rng([section["seed"], step]).permutation(len(texts)), 0
        idx = order[position : position + section["batch_size"]]
        position += len(idx)
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, section["steps"], section["warmup"], section["lr"])
        model.train()
        out = model(input_ids=ids[idx], attention_mask=mask[idx], pixel_values=_pixels(frames[idx]), return_loss=True)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # CLIP's clip of the temperature
        row = {"step": step + 1, "lr": optimizer.param_groups[0]["lr"], "loss": float(out.loss.detach())}
        if (step + 1) % section["eval_every"] == 0 or step + 1 == section["steps"]:
            row["check_R@1"] = frame_to_text_r1(model, check_frames, check_ids, check_mask)
            print(f"pretrain step {step + 1}/{section['steps']}: loss {row['loss']:.3f}, "
                  f"held-out frame->description R@1 {row['check_R@1']:.1f}", flush=True)  # fmt: skip
        log.append(row)
    check = {
        "frame_to_description_R@1": log[-1]["check_R@1"],
        "chance_R@1": 100 / len(check_texts),
        "check_pairs": len(check_texts),
        "pairs": len(texts),
        "steps": section["steps"],
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".{PRETRAINED_CHECKPOINT}.{os.getpid()}.tmp"  # moved into place whole (atomic)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    resultfiles.replace_dir(staging, out_dir / PRETRAINED_CHECKPOINT)
    resultfiles.write_csv(log, out_dir / "train_log.csv")
    resultfiles.write_json(out_dir / "check.json", check)
    return check


def _distinct(frames: np.ndarray, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """The pairs whose description occurs once (a gallery of distinct descriptions: one right answer each)."""
    counts: dict[str, int] = {}
    for text in texts:
        counts[text] = counts.get(text, 0) + 1
    keep = [i for i, text in enumerate(texts) if counts[text] == 1]
    return frames[keep], [texts[i] for i in keep]
