"""Before any job: every configured method is built on the configured towers and runs one training loss and one
scoring on a random batch, and the memory of a full training step is estimated from that loss.

The schema and the option types catch a wrong key or type; what they cannot see (a size that does not fit another
size, a class whose ``__init__`` or ``loss`` refuses its options, a batch this machine cannot hold) used to fail
inside the first job, after the dataset was prepared. ``vtrbench check-config`` and the workflow's ``onstart``
run :func:`preflight`, so such a config is refused in one line naming the method (or ``model``) before any job.

The memory estimate is measured, not modelled: autograd's saved tensors of the one loss (the activations a backward
pass keeps), scaled from the probe batch to ``train.batch_size``, plus the parameters, their gradients and Adam's
two moments. It is a lower bound (no allocator slack, no data-loader buffers), so the refusal is certain and the
warning is the estimate itself.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from vtrbench.backbones import BackboneConfig, Backbones
from vtrbench.config import ConfigError, check_method_options
from vtrbench.data.batches import Tokens, random_batch
from vtrbench.methods import PairMethod, RetrievalMethod, build_method
from vtrbench.registry import TRAINED_KINDS, kind_of
from vtrbench.runs import effective_train

PROBE_BATCH = 4  # one hard-negative group: the smallest batch every loss accepts
PROBE_VOCAB = 64  # a from-scratch text tower's vocabulary comes from the prepared data; its size changes no shape
REFUSE_SHARE, WARN_SHARE = 0.9, 0.5  # of the memory the training device has


def preflight(config: dict[str, Any]) -> list[str]:
    """Check a validated config by building and probing every trained method; returns warnings (memory estimates
    close to the device's memory). Raises :class:`ConfigError` (one line, naming the key) otherwise."""
    check_method_options(config)
    trained = [m for m, e in config["methods"].items() if kind_of(e["class"]) in TRAINED_KINDS]
    if not trained:
        return []
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as staging:
        model = config["model"]
        if config["pretrain"]["enabled"]:  # the stage's CLIP, randomly initialised: the towers the runs will load
            model = _untrained_clip(config, Path(staging))
        try:
            backbones = Backbones(
                BackboneConfig.from_dict(model), PROBE_VOCAB, image_size=config["dataset"]["resolution"]
            )
        except (ValueError, TypeError, FileNotFoundError, OSError, RuntimeError) as err:
            raise ConfigError(f"config error at model: the towers cannot be built: {_one_line(err)}") from None
    warnings = []
    for name in trained:
        method = _build(backbones, config, name)
        train = effective_train(config, method)
        need = _probe(method, name, train, config["dataset"]["resolution"], config["model"]["text"]["max_length"])
        warning = _check_memory(name, need, train)
        warnings += [warning] if warning else []
    return warnings


def _untrained_clip(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``config['model']`` with both towers loading a randomly initialised CLIP of ``pretrain``'s shape, saved in
    ``folder`` as the pretraining stage saves its checkpoint."""
    from transformers import CLIPModel

    from vtrbench.plan import with_pretrained_towers
    from vtrbench.pretrain import clip_config, synthvtt_tokenizer

    tokenizer = synthvtt_tokenizer()
    max_length, size = config["model"]["text"]["max_length"], config["dataset"]["resolution"]
    CLIPModel(clip_config(tokenizer, config["pretrain"], max_length, size)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return with_pretrained_towers(config, str(folder))["model"]


def _build(backbones: Backbones, config: dict[str, Any], name: str) -> RetrievalMethod:
    try:
        return build_method(backbones, config["methods"][name], config["methods"])
    except Exception as err:  # a user's class may raise anything: name the method, keep the message
        raise ConfigError(f"config error at methods.{name}: the method cannot be built: {_one_line(err)}") from None


def _probe(method: RetrievalMethod, name: str, train: dict[str, Any], resolution: int, max_length: int) -> int:
    """One loss (training mode) and one scoring (eval mode) on a random batch of PROBE_BATCH videos; returns the
    estimated bytes of a training step at ``train.batch_size``."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, PROBE_VOCAB, (PROBE_BATCH, max_length), generator=generator)
    tokens = Tokens(ids, torch.ones_like(ids))
    batch = random_batch(tokens, PROBE_BATCH, train["frames"], resolution, generator)
    saved: dict[int, int] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    try:
        method.train()
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            losses = method.loss(batch)
        if not any(k.endswith("_loss") for k in losses):
            raise ValueError(f"loss() returned {sorted(losses)}: no *_loss term to train on")
        method.eval()
        with torch.no_grad():
            queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
            gallery = method.encode_videos(batch["frames"])
            if isinstance(method, PairMethod):
                candidates = torch.arange(PROBE_BATCH).expand(PROBE_BATCH, PROBE_BATCH)
                method.score_candidates(queries, gallery, candidates)
            else:
                method.score(queries, gallery)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(
            f"config error at methods.{name}: one training step on a random batch fails "
            f"({type(err).__name__}: {_one_line(err)})"
        ) from None
    weights = sum(p.numel() * p.element_size() for p in method.parameters())
    return int(sum(saved.values()) * train["batch_size"] / PROBE_BATCH) + 4 * weights  # + grads, Adam's moments


def _check_memory(name: str, need: int, train: dict[str, Any]) -> str | None:
    """Refuse a step that cannot fit the training device; a warning string when it takes most of it."""
    device = train["device"]
    if device == "cuda" and torch.cuda.is_available():
        have, where = torch.cuda.get_device_properties(0).total_memory, "GPU memory"
    elif device == "cuda":
        return None  # planned on a machine without the GPU: the job's device is not here to compare with
    else:
        have, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "memory"
    estimate = (
        f"a training step of {name} at train.batch_size={train['batch_size']} x train.frames={train['frames']} "
        f"needs at least {need / 1e9:.1f} GB (activations measured on a {PROBE_BATCH}-video batch, scaled; "
        f"weights, gradients, Adam) and this machine has {have / 1e9:.1f} GB of {where}"
    )
    if need > REFUSE_SHARE * have:
        raise ConfigError(f"config error at train.batch_size: {estimate}; lower the batch size, frames or resolution")
    return f"warning: {estimate}" if need > WARN_SHARE * have else None


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
