"""The prepare step: turn the configured dataset into the record schema of ``records.py``, once.

Synthetic data is generated; real datasets are decoded and cached (``real.py``). Either way the step writes
``vocab.txt`` (for from-scratch text encoders) and, last, ``manifest.json`` (the workflow's output file, so a
killed prepare is never taken as complete).
"""

from __future__ import annotations

import collections
import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from vtrbench import resultfiles
from vtrbench.data import records

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_VOCAB = 30000
_WORD = re.compile(r"\w+|[^\w\s]")


def prepare(config: dict[str, Any], out_root: str | Path, threads: int = 1) -> dict[str, Any]:
    """Prepare ``config["dataset"]`` under ``out_root``; returns the manifest it wrote."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    dataset = config["dataset"]
    if dataset["name"] == "synthetic":
        info, vocab = _prepare_synthetic(dataset, out_root)
    else:
        info, vocab = _prepare_real(dataset, out_root, threads)
    write_vocab(out_root / "vocab.txt", vocab)
    manifest = {
        **{k: v for k, v in info.items() if k != "config"},
        "dataset": dataset["name"],
        "config": dataset,
        "fingerprint": fingerprint(out_root),
    }
    resultfiles.write_json(out_root / "manifest.json", manifest)
    return manifest


def _prepare_synthetic(dataset: dict[str, Any], out_root: Path) -> tuple[dict[str, Any], list[str]]:
    from vtrbench.data.synthetic import SyntheticConfig, generate
    from vtrbench.data.synthetic_grammar import vocabulary

    cfg = SyntheticConfig.from_dataset(dataset)
    features = records.video_features(cfg.frames, cfg.size, cfg.size)
    counts = {}
    for split, (videos, captions) in generate(cfg).items():
        records.write_split(out_root, split, videos, captions, features)
        counts[split] = {"videos": len(videos["video_id"]), "captions": len(captions["text"])}
    return {"counts": counts, "problems": 0, "incomplete": False}, vocabulary()


def _prepare_real(dataset: dict[str, Any], out_root: Path, threads: int) -> tuple[dict[str, Any], list[str]]:
    from vtrbench.data.real import RealDataConfig, prepare_real

    keys = (
        "data_root",
        "video_dir",
        "frames",
        "resolution",
        "on_problem",
        "msrvtt_train",
        "val_size",
        "max_videos",
    )
    cfg = RealDataConfig(name=dataset["name"], **{k: dataset[k] for k in keys})
    info = prepare_real(cfg, out_root, threads=threads)
    vocab_split = "train" if "train" in cfg.splits else cfg.splits[0]  # the vocabulary comes from training text
    return info, words_of(records.load_split(out_root, vocab_split).captions)


def words_of(captions: list[str]) -> list[str]:
    """The most frequent lower-cased words and punctuation marks of the captions (BERT basic tokenisation)."""
    counts = collections.Counter(w for text in captions for w in _WORD.findall(text.lower()))
    return sorted(w for w, _ in counts.most_common(MAX_VOCAB))


def write_vocab(path: Path, words: list[str]) -> None:
    resultfiles.write_text(path, "\n".join(SPECIAL_TOKENS + [w for w in words if w not in SPECIAL_TOKENS]) + "\n")


def fingerprint(root: Path) -> str:
    """SHA-256 over every split's ids, captions and frame bytes: two runs on the same data share it."""
    digest = hashlib.sha256()
    for split in records.SPLITS:
        if not (root / split / "videos").is_dir():
            continue
        data = records.load_split(root, split)
        digest.update("\n".join(data.video_ids).encode())
        digest.update("\n".join(data.captions).encode())
        for start in range(0, data.num_videos, 1024):
            digest.update(np.ascontiguousarray(data.frames[np.arange(start, min(start + 1024, data.num_videos))]))
    return digest.hexdigest()[:16]
