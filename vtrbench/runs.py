"""Building a run and reading or writing its checkpoints: the one place that turns a config into a method.

Train, evaluate, re-ranking, latency, throughput and the device check all build methods through :func:`build`,
so a method is the same object wherever it is measured. A checkpoint carries the *identity* of the run that wrote
it (the run's config, as ``vtrbench.plan`` defines it, and the seed), and nothing is resumed or evaluated from a
checkpoint of another identity.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vtrbench import plan, resultfiles
from vtrbench.backbones import BackboneConfig, Backbones
from vtrbench.data.batches import Tokens, tokenize
from vtrbench.data.records import SplitData, load_split
from vtrbench.features import write_features
from vtrbench.methods import RetrievalMethod, build_method
from vtrbench.pretrained import load_tokenizer


def git_commit() -> str:
    """The commit of the code that runs (recorded in every checkpoint, so results name the code they came from)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclass
class Setup:
    """A method ready to train or evaluate, with the tokenizer and config it was built from."""

    method: RetrievalMethod
    tokenizer: Any
    config: dict[str, Any]
    method_name: str
    data_dir: Path
    selected: dict[str, Any] | None = None  # step and val score of the loaded checkpoint (None: fresh weights)
    tokens_dir: Path | None = None  # the tokenised captions written by `vtrbench tokenize` (None: tokenise here)


def build(
    config: dict[str, Any], method_name: str, data_dir: str | Path, tokens_dir: str | Path | None = None
) -> Setup:
    """Build the shared backbones and the named method (the same code path for every step)."""
    if method_name not in config["methods"]:
        raise ValueError(f"unknown method {method_name!r}; the config defines: {', '.join(config['methods'])}")
    backbones, tokenizer = build_backbones(config, data_dir)
    method = build_method(backbones, config["methods"][method_name], config["methods"])
    tokens = Path(tokens_dir) if tokens_dir is not None else None
    return Setup(method, tokenizer, config, method_name, Path(data_dir), tokens_dir=tokens)


def build_backbones(config: dict[str, Any], data_dir: str | Path) -> tuple[Backbones, Any]:
    """The shared towers of ``config`` (from scratch or their pretrained checkpoints) and the tokenizer."""
    backbone_cfg = BackboneConfig.from_dict(config.get("model", {}))
    tokenizer = load_tokenizer(backbone_cfg.text, Path(data_dir) / "vocab.txt")
    backbones = Backbones(backbone_cfg, vocab_size=len(tokenizer), image_size=config["dataset"]["resolution"])
    return backbones, tokenizer


def write_train_features(
    config: dict[str, Any], data_dir: str | Path, tokens_dir: str | Path | None, out: str | Path
) -> dict[str, Any]:
    """The features job: the frozen towers' outputs on the training split (``vtrbench.features``)."""
    backbones, tokenizer = build_backbones(config, data_dir)
    split = load_split(data_dir, "train")
    tokens = read_tokens(tokenizer, config["model"]["text"]["max_length"], tokens_dir, split)
    return write_features(backbones, split.frames, tokens, out)


def split_tokens(setup: Setup, split: SplitData) -> Tokens:
    """The split's captions tokenised: read from ``setup.tokens_dir`` (the tokenize job's output) when it holds
    them, else tokenised here. Nothing is written: the tokenize job (:func:`write_tokens`) is their one writer.

    A file is found by a key over the tokenizer's class and vocabulary, the length and the captions themselves,
    so it is never used for other text (a stale one is simply not found).
    """
    return read_tokens(setup.tokenizer, setup.config["model"]["text"]["max_length"], setup.tokens_dir, split)


def read_tokens(tokenizer: Any, max_length: int, tokens_dir: str | Path | None, split: SplitData) -> Tokens:
    """:func:`split_tokens` without a built method (the features job)."""
    if tokens_dir is not None:
        path = Path(tokens_dir) / f"{_tokens_key(tokenizer, max_length, split.captions)}.pt"
        if path.is_file():
            try:
                cached = torch.load(path, map_location="cpu", weights_only=True)
                return Tokens(cached["input_ids"], cached["attention_mask"])
            except (OSError, RuntimeError, KeyError):
                pass  # unreadable: tokenise here (the tokenize job rewrites it when it runs again)
    return tokenize(tokenizer, split.captions, max_length)


def write_tokens(config: dict[str, Any], data_dir: str | Path, out: str | Path) -> dict[str, int]:
    """The tokenize job: every split's captions tokenised under ``out`` (one file per split, by key), then
    ``tokens.json`` (key file -> captions) last, which marks the folder complete."""
    tokenizer = load_tokenizer(BackboneConfig.from_dict(config["model"]).text, Path(data_dir) / "vocab.txt")
    max_length = config["model"]["text"]["max_length"]
    files = {}
    for name in ("train", "val", "test"):
        captions = load_split(data_dir, name).captions
        tokens = tokenize(tokenizer, captions, max_length)
        path = Path(out) / f"{_tokens_key(tokenizer, max_length, captions)}.pt"
        resultfiles.save_torch({"input_ids": tokens.input_ids, "attention_mask": tokens.attention_mask}, path)
        files[path.name] = len(captions)
    resultfiles.write_json(Path(out) / "tokens.json", {"files": files})
    return files


def _tokens_key(tokenizer: Any, max_length: int, captions: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(f"{type(tokenizer).__name__}|{max_length}|{tokenizer.all_special_tokens}".encode())
    digest.update(plan.canonical(dict(sorted(tokenizer.get_vocab().items()))).encode())
    digest.update("\n".join(captions).encode())
    return digest.hexdigest()[:16]


def run_identity(config: dict[str, Any], method_name: str, seed: int) -> dict[str, Any]:
    """What a checkpoint must match to be resumed or evaluated: the run's config (``plan.run_config``) and seed."""
    return {"method": method_name, "run": plan.run_config(config, method_name), "seed": seed}


def effective_train(config: dict[str, Any], method: RetrievalMethod) -> dict[str, Any]:
    """``train`` as this method trains: the config's section with the method's own overrides (e.g. its steps),
    its steps times the config's ``budget_factor`` (the budget test's longer runs, ``vtrbench.plan.longer``)."""
    train = {**config["train"], **method.train_overrides()}
    return {**train, "steps": train["steps"] * config.get("budget_factor", 1)}


def resolved_config(config: dict[str, Any], method: RetrievalMethod) -> dict[str, Any]:
    """The config as the run used it (stored in model.pt): the method's overrides and the budget factor applied to
    ``train`` (so applying them again changes nothing)."""
    rest = {k: v for k, v in config.items() if k != "budget_factor"}
    return {**rest, "train": effective_train(config, method)}


def load_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """Load a checkpoint and refuse one written for another method, config or seed."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"checkpoint {path} not found: train this method first") from err
    except Exception as err:  # a truncated or foreign file: say which and what to do
        raise RuntimeError(f"cannot read checkpoint {path}: {err}; delete it to start over") from err
    if not isinstance(ckpt, dict) or "identity" not in ckpt:
        raise RuntimeError(f"{path} is not a vtrbench checkpoint; delete it or point --out elsewhere")
    if ckpt["identity"] != identity:
        theirs = ckpt["identity"]
        raise RuntimeError(
            f"checkpoint {path} was written for a different {', '.join(_identity_diff(theirs, identity)) or 'run'} "
            f"(method {theirs.get('method')!r}); delete {path.parent} or use another output folder"
        )
    return ckpt


def _identity_diff(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """What differs between two identities, in the config's words (method, method_config, stages, train, ...)."""
    diff = [k for k in ("method", "seed") if theirs.get(k) != ours[k]]
    their_run, our_run = theirs.get("run") or {}, ours["run"]
    their_methods, our_methods = dict(their_run.get("methods") or {}), dict(our_run["methods"])
    if their_methods.pop(theirs.get("method"), None) != our_methods.pop(ours["method"]):
        diff.append("method_config")
    if their_methods != our_methods:
        diff.append("stages")  # a warm-start source or a re-ranking stage
    return diff + [k for k in our_run if k != "methods" and their_run.get(k) != our_run[k]]


def load_trained(
    config: dict[str, Any],
    method_name: str,
    seed: int,
    data_dir: str | Path,
    model_path: str | Path,
    tokens_dir: str | Path | None = None,
) -> Setup:
    """Rebuild the method and load its selected weights; refuses a checkpoint of another method or config."""
    ckpt = load_checkpoint(Path(model_path), run_identity(config, method_name, seed))
    setup = build(config, method_name, data_dir, tokens_dir)
    setup.method.load_state_dict(ckpt["model"])
    setup.method.eval()
    setup.selected = {"step": ckpt["step"], "val": ckpt["val"], "commit": ckpt.get("commit", "unknown")}
    return setup


def warm_start(method: RetrievalMethod, config: dict[str, Any], name: str, path: str | Path | None) -> None:
    """Initialise ``name`` from the trained weights of the method its ``init_from`` names (same seed)."""
    source = config["methods"][name]["init_from"]
    if path is None:
        raise ValueError(f"method {name!r} warm-starts from {source!r}: pass --init-from .../{source}/.../model.pt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        raise RuntimeError(f"cannot read the warm-start checkpoint {path}: {err}; retrain {source!r}") from err
    identity = ckpt.get("identity", {}) if isinstance(ckpt, dict) else {}
    expected = plan.run_config(config, source)
    if identity.get("method") != source or identity.get("run") != expected:
        raise RuntimeError(
            f"{path} is not a {source!r} checkpoint of this config (it holds {identity.get('method')!r}); "
            f"retrain {source!r} or fix init_from"
        )
    method.warm_start(ckpt["model"])
    tqdm.write(f"{name}: warm-started from {path} (step {ckpt.get('step')})")
