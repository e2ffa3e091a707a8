"""Pretrained checkpoints: which encoder a folder (or hub id) holds, its tokenizer, its image statistics.

The backbones (``vtrbench/backbones.py``) read a tower's class from the checkpoint's saved ``config.json``
(``model_type``) through :func:`checkpoint_type`, so a wrong folder fails with one line naming the key, the path and
what was expected, before any weights are read. A from-scratch text encoder gets a word-level BERT tokenizer over the
prepared dataset's ``vocab.txt`` (:func:`load_tokenizer`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    BertTokenizerFast,
    CLIPConfig,
    CLIPTextModelWithProjection,
    CLIPVisionModelWithProjection,
    PreTrainedTokenizerBase,
)
from transformers.utils.hub import cached_file

TEXT_TYPES = ("bert", "clip", "clip_text_model")  # saved model_type a pretrained text tower can load
FRAME_TYPES = ("vit", "clip", "clip_vision_model")  # ... and a pretrained frame tower
CLIP_TYPES = ("clip", "clip_text_model", "clip_vision_model")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # DeiT/ViT default
# CLIP's own normalisation (openai/CLIP clip.py _transform; transformers OPENAI_CLIP_MEAN / _STD)
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


class CLIPText(CLIPTextModelWithProjection):
    """CLIP's text tower; a whole-``CLIPModel`` checkpoint also holds the vision tower, which it leaves unread."""

    _keys_to_ignore_on_load_unexpected = (r"^vision_model\.", r"^visual_projection\.", r"^logit_scale$")


class CLIPVision(CLIPVisionModelWithProjection):
    """CLIP's vision tower; a whole-``CLIPModel`` checkpoint also holds the text tower, which it leaves unread."""

    _keys_to_ignore_on_load_unexpected = (r"^text_model\.", r"^text_projection\.", r"^logit_scale$")


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt")  # fast (any), CLIP BPE, BERT WordPiece


def load_tokenizer(cfg: Any, vocab_file: str | Path | None) -> PreTrainedTokenizerBase:
    """The pretrained encoder's own tokenizer, or a word-level BERT tokenizer over the dataset's vocab.txt."""
    if cfg.pretrained:
        from transformers import AutoTokenizer

        checkpoint_type(cfg.pretrained, "model.text.pretrained", TEXT_TYPES)  # the same one-line errors as the tower
        # transformers 5 builds an *empty* tokenizer from a folder without tokenizer files: refuse it instead
        if not any(_resolve(cfg.pretrained, name) for name in TOKENIZER_FILES):
            raise FileNotFoundError(
                f"model.text.pretrained={cfg.pretrained!r} has no tokenizer ({', '.join(TOKENIZER_FILES)}): save the "
                "checkpoint's tokenizer to the same folder (tokenizer.save_pretrained)"
            )
        return AutoTokenizer.from_pretrained(cfg.pretrained)
    if vocab_file is None or not Path(vocab_file).is_file():
        raise FileNotFoundError(
            f"vocabulary file {vocab_file} not found: a from-scratch text encoder uses the prepared dataset's vocab.txt"
        )
    return BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)  # transformers 5: `vocab`, not `vocab_file`


_WRONG_TOWER = {  # why a model_type does not fit a tower
    "clip_text_model": "a CLIP text model: it has no vision tower",
    "clip_vision_model": "a CLIP vision model: it has no text tower",
    "bert": "a text encoder",
    "vit": "an image encoder",
}


def checkpoint_type(pretrained: str, key: str, allowed: tuple[str, ...]) -> str:
    """The ``model_type`` of a checkpoint's saved config.json (local folder or hub id), checked against ``allowed``.

    Raises:
        FileNotFoundError: no config.json there (a missing folder, or a hub id neither cached nor reachable).
        ValueError: a model_type this tower cannot load (e.g. a CLIP text model given as the frame tower).
    """
    saved = _saved_json(pretrained, "config.json")
    expected = f"a checkpoint written by save_pretrained with model_type {' / '.join(allowed)}"
    if saved is None:
        where = "has no config.json" if Path(pretrained).is_dir() else "is neither a folder nor an available hub id"
        raise FileNotFoundError(f"{key}={pretrained!r} {where}; expected {expected}")
    model_type = saved.get("model_type")
    if model_type not in allowed:
        why = _WRONG_TOWER.get(model_type, "not an encoder this tower supports")
        raise ValueError(f"{key}={pretrained!r} holds model_type {model_type!r} ({why}); expected {expected}")
    return model_type


def load_clip_tower(cls: type, pretrained: str, model_type: str, tower: str, key: str) -> nn.Module:
    """One CLIP tower with its projection, from a whole CLIPModel or a single-tower checkpoint (fp32 weights)."""
    config = None
    if model_type == "clip":  # the tower's sub-config lacks CLIPConfig's top-level projection_dim: copy it over
        full = CLIPConfig.from_pretrained(pretrained)
        config = full.text_config if tower == "text" else full.vision_config
        config.projection_dim = full.projection_dim
    model, info = cls.from_pretrained(pretrained, config=config, dtype=torch.float32, output_loading_info=True)
    missing = sorted(info["missing_keys"])
    if missing:  # e.g. a CLIPTextModel saved without text_projection: the projection would be random
        raise ValueError(
            f"{key}={pretrained!r} has no weights for {missing[0]} ({len(missing)} missing): expected a CLIPModel or "
            f"CLIP{tower.capitalize()}ModelWithProjection checkpoint"
        )
    return model


def _resolve(pretrained: str, filename: str) -> str | None:
    """Path of ``filename`` in a local folder or a hub repo (downloaded or cached); None when absent."""
    try:
        return cached_file(
            pretrained,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except OSError:  # neither a folder nor a valid repo id (e.g. a missing absolute path), or a gated repo
        return None


def _saved_json(pretrained: str, filename: str) -> dict[str, Any] | None:
    path = _resolve(pretrained, filename)
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-save the checkpoint") from None


def image_stats(pretrained: str, mean: list[float], std: list[float]) -> tuple[list[float], list[float], int | None]:
    """Normalisation stats and input size from the checkpoint's preprocessor_config.json; ``mean``/``std`` when
    absent (ImageNet's for DeiT/ViT, CLIP's for CLIP), size None (= the model config's image_size)."""
    data = _saved_json(pretrained, "preprocessor_config.json") or {}
    size = data.get("crop_size") or data.get("size")
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge")
    return list(data.get("image_mean", mean)), list(data.get("image_std", std)), size
