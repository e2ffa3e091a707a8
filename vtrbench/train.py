"""One trainer for every method: seed, build, resume, then a loop of LR, step, eval, checkpoint, log.

The budget is a number of steps (the same for every method), never wall-clock, so results do not depend on the
machine. Model selection uses the ``val`` split; the test split is never looked at here.

Files written under ``out_dir`` (all atomically)::

    checkpoint/last.pt   everything needed to resume (model, optimizer, step, best val, RNG, config, commit)
    checkpoint/best.pt   weights of the best validation step so far
    train_log.csv        step, lr, loss terms, samples_per_s, train_seconds (cumulative, excluding evaluation)
    val_log.csv          step, train_seconds, validation R@1/5/10, MdR, MnR, rsum, pairwise accuracies
    model.pt             the selected (best-on-val) weights + metadata; written last, it marks the run complete
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from vtrbench import distributed
from vtrbench.backbones import BackboneConfig, Backbones, load_tokenizer
from vtrbench.data.batches import Tokens, TrainBatches, tokenize
from vtrbench.data.records import SplitData, load_split
from vtrbench.evaluate import evaluate
from vtrbench.methods import RetrievalMethod, build_method


def learning_rate(step: int, total: int, warmup_fraction: float, peak: float) -> float:
    """Linear warm-up then cosine decay to zero.

    1. ``step < warmup``: ramp linearly up to ``peak``;
    2. afterwards: cosine from ``peak`` at the end of warm-up to 0 at ``total``.
    """
    warmup = int(warmup_fraction * total)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    assert 0.0 <= progress <= 1.0, progress
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def git_commit() -> str:
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
    selected: dict[str, Any] | None = None  # step and val score of the loaded checkpoint (None: fresh weights)


def build(config: dict[str, Any], method_name: str, data_dir: str | Path) -> Setup:
    """Build the shared backbones and the named method (the same code path for train, evaluate and latency)."""
    if method_name not in config["methods"]:
        raise ValueError(f"unknown method {method_name!r}; the config defines: {', '.join(config['methods'])}")
    backbone_cfg = BackboneConfig.from_dict(config.get("model", {}))
    tokenizer = load_tokenizer(backbone_cfg.text, Path(data_dir) / "vocab.txt")
    backbones = Backbones(backbone_cfg, vocab_size=len(tokenizer), image_size=config["dataset"]["resolution"])
    method = build_method(backbones, config["methods"][method_name])
    return Setup(method=method, tokenizer=tokenizer, config=config, method_name=method_name)


def split_tokens(setup: Setup, split: SplitData) -> Tokens:
    return tokenize(setup.tokenizer, split.captions, setup.config["model"]["text"]["max_length"])


def run_identity(config: dict[str, Any], method_name: str, seed: int) -> dict[str, Any]:
    """What a checkpoint must match to be resumed or evaluated: method, its options, backbones, data, budget."""
    return {
        "method": method_name,
        "method_config": config["methods"][method_name],
        "model": config["model"],
        "dataset": config["dataset"],
        "train": {k: v for k, v in config["train"].items() if k not in ("threads", "device", "gpus", "workers")},
        "seed": seed,
    }


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def write_csv_atomic(rows: list[dict[str, Any]], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    os.replace(tmp, path)


def load_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """Load a checkpoint and refuse one written for another method, config or seed."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file: say which and what to do
        raise RuntimeError(f"cannot read checkpoint {path}: {err}; delete it to start over") from err
    if not isinstance(ckpt, dict) or "identity" not in ckpt:
        raise RuntimeError(f"{path} is not a vtrbench checkpoint; delete it or point --out elsewhere")
    if ckpt["identity"] != identity:
        diff = sorted(k for k in identity if ckpt["identity"].get(k) != identity[k])
        raise RuntimeError(
            f"checkpoint {path} was written for a different {', '.join(diff)} (method "
            f"{ckpt['identity'].get('method')!r}); delete {path.parent} or use another output folder"
        )
    return ckpt


def _param_groups(method: RetrievalMethod, config: dict[str, Any]) -> list[dict[str, Any]]:
    """AdamW groups: decay only matrices; pretrained backbones train at ``backbone_lr_scale`` x lr."""
    train = config["train"]
    model = config["model"]
    pretrained = {"text": bool(model["text"]["pretrained"]), "frame": bool(model["frame"]["pretrained"])}
    own_scales = method.param_lr_scales()  # a method's own multipliers (e.g. warm-started towers) come first
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    for name, param in method.named_parameters():
        if not param.requires_grad:
            continue
        tower = name.split(".")[1] if name.startswith("backbones.") else None
        scale = train["backbone_lr_scale"] if pretrained.get(tower or "", False) else 1.0
        scale = next((v for prefix, v in own_scales.items() if name.startswith(prefix)), scale)
        groups.setdefault((param.ndim >= 2, scale), []).append(param)
    return [
        {"params": params, "weight_decay": train["weight_decay"] if decay else 0.0, "lr_scale": scale}
        for (decay, scale), params in groups.items()
    ]


def _warm_start(method: RetrievalMethod, config: dict[str, Any], name: str, path: str | Path | None) -> None:
    source = config["methods"][name]["init_from"]
    if path is None:
        raise ValueError(f"method {name!r} warm-starts from {source!r}: pass --init-from .../{source}/seed*/model.pt")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    identity = ckpt.get("identity", {}) if isinstance(ckpt, dict) else {}
    if identity.get("method") != source or identity.get("model") != config["model"]:
        raise RuntimeError(
            f"{path} is not a {source!r} checkpoint with this config's backbones (it holds "
            f"{identity.get('method')!r}); retrain {source!r} or fix init_from"
        )
    method.warm_start(ckpt["model"])
    tqdm.write(f"{name}: warm-started from {path} (step {ckpt.get('step')})")


def train(
    config: dict[str, Any],
    method_name: str,
    seed: int,
    data_dir: str | Path,
    out_dir: str | Path,
    init_checkpoint: str | Path | None = None,
) -> Path:
    """Train ``method_name`` with ``seed``; resume from ``out_dir/checkpoint/last.pt`` when present.

    ``init_checkpoint``: the ``model.pt`` of the method named by this method's ``init_from`` option (required
    then); its weights go through ``method.warm_start`` before the first step.
    """
    out_dir = Path(out_dir)
    tcfg = config["train"]
    torch.set_num_threads(tcfg["threads"])
    device = pick_device(tcfg["device"])
    ctx = distributed.init_from_env(device)  # torchrun: this process's rank and GPU; else one process
    device = ctx.device
    torch.manual_seed(seed)
    setup = build(config, method_name, data_dir)
    method = setup.method.to(device)
    tcfg = {**tcfg, **method.train_overrides()}
    last = out_dir / "checkpoint" / "last.pt"
    if setup.config["methods"][method_name].get("init_from") and not last.exists():
        _warm_start(method, config, method_name, init_checkpoint)
    train_split, val_split = load_split(data_dir, "train"), load_split(data_dir, "val")
    batches = TrainBatches(
        train_split,
        split_tokens(setup, train_split),
        tcfg["batch_size"],
        tcfg["frames"],
        seed,
        tcfg["group_batches"],
    )
    val_tokens = split_tokens(setup, val_split)
    optimizer = torch.optim.AdamW(_param_groups(method, config), lr=tcfg["lr"])
    identity = run_identity(config, method_name, seed)

    last, best = out_dir / "checkpoint" / "last.pt", out_dir / "checkpoint" / "best.pt"
    step, best_val, train_rows, val_rows, train_seconds = 0, -math.inf, [], [], 0.0
    if last.exists():
        ckpt = load_checkpoint(last, identity)
        method.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        step, best_val, train_seconds = ckpt["step"], ckpt["best_val"], ckpt["train_seconds"]
        train_rows, val_rows = ckpt["train_rows"], ckpt["val_rows"]
        tqdm.write(f"resuming {method_name} seed {seed} from {last} at step {step}")

    amp = tcfg["amp"] and device.type == "cuda"
    total = tcfg["steps"]
    loss_fn = distributed.loss_fn(method, ctx)  # method.loss, DDP-wrapped when several processes
    shard = functools.partial(distributed.rank_batch, batches, ctx.world_size, ctx.rank, len(batches.units[0]))
    stream = distributed.step_batches(shard, step, total, tcfg.get("workers", 0), pin_memory=device.type == "cuda")
    method.train()
    progress = tqdm(
        total=total,
        initial=step,
        desc=f"train {method_name} s{seed}",
        unit="step",
        mininterval=5,
        disable=not ctx.is_main,  # one progress bar: rank 0's
    )
    while step < total:
        lr = learning_rate(step, total, tcfg["warmup"], tcfg["lr"])
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        tick = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in next(stream).items()}  # this rank's slice
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            terms = loss_fn(batch)
        loss = sum(v for k, v in terms.items() if k.endswith("_loss"))
        if not torch.isfinite(loss):
            if tcfg["on_nonfinite"] == "stop":
                where = f"{last} (step {torch.load(last, weights_only=False)['step']})" if last.exists() else "none"
                progress.close()  # the bar first, so the error is the last line the user sees
                raise FloatingPointError(
                    f"non-finite loss at step {step} ({ {k: float(v.detach()) for k, v in terms.items()} }); "
                    f"last good checkpoint: {where}. Lower train.lr or set train.on_nonfinite: skip"
                )
            optimizer.zero_grad(set_to_none=True)
            tqdm.write(f"step {step}: non-finite loss skipped")
        else:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(method.parameters(), tcfg["grad_clip"])
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - tick
        train_seconds += elapsed
        step += 1
        train_rows.append(
            {
                "step": step,
                "lr": lr,
                "loss": float(loss.detach()),
                **{k: float(v.detach()) for k, v in terms.items()},
                "samples_per_s": tcfg["batch_size"] / elapsed,
                "train_seconds": train_seconds,
            }
        )
        progress.update(1)
        if (step % tcfg["eval_every"] == 0 or step == total) and ctx.is_main:  # rank 0 evaluates and writes
            result = evaluate(
                method,
                val_split,
                val_tokens,
                config["eval"]["frames"],
                config["eval"]["batch_size"],
                device,
                method_name,
                amp=amp,
            ).metrics
            t2v = result["t2v"]
            val = t2v["R@1"] + t2v["R@5"] + t2v["R@10"] if tcfg["val_metric"] == "rsum" else t2v["R@1"]
            pairwise = {f"pairwise_{k}": v["accuracy"] for k, v in result["pairwise"].items()}
            val_rows.append(
                {
                    "step": step,
                    "train_seconds": train_seconds,
                    "val": val,
                    **{f"t2v_{k}": v for k, v in t2v.items()},
                    **pairwise,
                }
            )
            progress.set_postfix(val=f"{val:.1f}", loss=f"{float(loss.detach()):.3f}")
            if val > best_val:
                best_val = val
                save_atomic({"model": method.state_dict(), "step": step, "val": val, "identity": identity}, best)
            save_atomic(
                {
                    "model": method.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "best_val": best_val,
                    "train_seconds": train_seconds,
                    "train_rows": train_rows,
                    "val_rows": val_rows,
                    "torch_rng": torch.get_rng_state(),
                    "identity": identity,
                    "config": config,
                    "commit": git_commit(),
                },
                last,
            )
            write_csv_atomic(train_rows, out_dir / "train_log.csv")
            write_csv_atomic(val_rows, out_dir / "val_log.csv")
    progress.close()
    distributed.barrier()  # the other ranks wait for rank 0's last validation
    if not ctx.is_main:
        distributed.cleanup()
        return out_dir / "model.pt"
    selected = torch.load(best, map_location="cpu", weights_only=False)
    save_atomic({**selected, "config": config, "commit": git_commit(), "best_val": best_val}, out_dir / "model.pt")
    distributed.cleanup()
    return out_dir / "model.pt"
