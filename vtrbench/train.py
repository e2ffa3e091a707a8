"""One trainer for every method: seed, build, resume, then a loop of LR, step, eval, checkpoint, log.

The budget is a number of steps (the same for every method), never wall-clock, so results do not depend on the
machine. Model selection uses the ``val`` split; the test split is never looked at here.

Files written under ``out_dir`` (all atomically, ``vtrbench.resultfiles``)::

    checkpoint/last.pt   everything needed to resume (model, optimizer, step, best val, RNG, config, commit)
    checkpoint/best.pt   weights of the best validation step so far
    train_log.csv        step, lr, loss terms, samples_per_s, train_seconds (cumulative, excluding evaluation)
    val_log.csv          step, train_seconds, validation R@1/5/10, MdR, MnR, rsum, pairwise accuracies
    model.pt             the selected (best-on-val) weights + metadata; written last, it marks the run complete

The logs and ``model.pt`` are written after the loop on every exit, including a resume that finds the run
already at its last step (a job killed between the final checkpoint and ``model.pt``).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from vtrbench import distributed, resultfiles
from vtrbench.data.batches import TrainBatches
from vtrbench.data.records import load_split
from vtrbench.device import autocast, start
from vtrbench.evaluate import evaluate, validation_score
from vtrbench.features import freeze_towers
from vtrbench.methods import RetrievalMethod
from vtrbench.runs import (
    build,
    effective_train,
    git_commit,
    load_checkpoint,
    resolved_config,
    run_identity,
    split_tokens,
    warm_start,
)
from vtrbench.timing import synchronize


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


def param_groups(method: RetrievalMethod, config: dict[str, Any]) -> list[dict[str, Any]]:
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


def make_optimizer(method: RetrievalMethod, config: dict[str, Any], lr: float) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`, with the fused kernel (one call per group instead of a loop over tensors)."""
    return torch.optim.AdamW(param_groups(method, config), lr=lr, fused=True)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]


def train_step(
    loss_fn: Callable[[dict[str, Tensor]], dict[str, Tensor]],
    parameters: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    grad_clip: float,
    amp: bool,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One optimiser step: forward (bf16 autocast on CUDA when ``amp``), the sum of the ``*_loss`` terms, backward,
    gradient clipping, AdamW. A non-finite loss makes no update (the caller decides whether to stop).

    The trainer, the throughput benchmark and the device check all call this, so they time and train the same step.
    """
    with autocast(next(iter(batch.values())).device, amp):
        terms = loss_fn(batch)
    loss = sum(v for k, v in terms.items() if k.endswith("_loss"))
    optimizer.zero_grad(set_to_none=True)
    if torch.isfinite(loss):
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()
    return loss, terms


def logged_step(
    loss_fn: Callable[[dict[str, Tensor]], dict[str, Tensor]],
    parameters: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    lr: float,
    tcfg: dict[str, Any],
    amp: bool,
) -> dict[str, float]:
    """What the trainer does per step given its batch: set the LR, :func:`train_step`, read the loss terms out.

    The throughput benchmark times exactly this against a bare loop of the same maths (its ``overhead``).
    """
    set_learning_rate(optimizer, lr)
    loss, terms = train_step(loss_fn, parameters, optimizer, batch, tcfg["grad_clip"], amp)
    return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}


@dataclass
class TrainState:
    """What a checkpoint restores: the step reached, the best val score, the logs and the clock."""

    step: int = 0
    best_val: float = -math.inf
    train_seconds: float = 0.0
    train_rows: list[dict[str, Any]] = field(default_factory=list)
    val_rows: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False  # ``train.patience`` ended the run before ``steps`` (the val metric stopped improving)

    def plateaued(self, patience: int | None) -> bool:
        """True when the last ``patience`` validations brought no new best (never without a patience)."""
        if not patience or not self.val_rows:
            return False
        vals = [row["val"] for row in self.val_rows]
        return len(vals) - 1 - int(max(range(len(vals)), key=vals.__getitem__)) >= patience


@dataclass
class RunFiles:
    out: Path

    @property
    def last(self) -> Path:
        return self.out / "checkpoint" / "last.pt"

    @property
    def best(self) -> Path:
        return self.out / "checkpoint" / "best.pt"

    @property
    def model(self) -> Path:
        return self.out / "model.pt"


def check_writable(folder: Path) -> None:
    """Fail before any work when the run folder cannot be written (not after the first checkpoint)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{id(folder)}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise OSError(f"cannot write to the run folder {folder} ({err.strerror}); give a writable --out") from err


def train(
    config: dict[str, Any],
    method_name: str,
    seed: int,
    data_dir: str | Path,
    out_dir: str | Path,
    init_checkpoint: str | Path | None = None,
    tokens_dir: str | Path | None = None,
    features_dir: str | Path | None = None,
) -> Path:
    """Train ``method_name`` with ``seed``; resume from ``out_dir/checkpoint/last.pt`` when present.

    ``init_checkpoint``: the ``model.pt`` of the method named by this method's ``init_from`` option (required
    then); its weights go through ``method.warm_start`` before the first step. ``tokens_dir``: the tokenize job's
    folder (None: the captions are tokenised here). ``features_dir``: the features job's folder, read when
    ``train.freeze_towers`` (None: the towers' features are computed here).
    """
    files = RunFiles(Path(out_dir))
    check_writable(files.out)
    device = start(config["train"]["threads"], config["train"]["device"])
    ctx = distributed.init_from_env(device)  # under torchrun: this rank's own device
    torch.manual_seed(seed)
    setup = build(config, method_name, data_dir, tokens_dir)
    method = setup.method.to(ctx.device)
    tcfg = effective_train(config, method)
    if config["methods"][method_name].get("init_from") and not files.last.exists():
        warm_start(method, config, method_name, init_checkpoint)
    train_split, val_split = load_split(data_dir, "train"), load_split(data_dir, "val")
    train_tokens = split_tokens(setup, train_split)
    features = None
    if tcfg["freeze_towers"] != "none":
        features = freeze_towers(
            method.backbones, train_split.frames, train_tokens, features_dir, tcfg["freeze_towers"]
        )
    batches = TrainBatches(
        train_split, train_tokens, tcfg["batch_size"], tcfg["frames"], seed, tcfg["group_batches"], features
    )
    optimizer = make_optimizer(method, config, tcfg["lr"])
    identity = run_identity(config, method_name, seed)
    state = _resume(files.last, identity, method, optimizer, method_name, seed)
    val_tokens = split_tokens(setup, val_split)

    def validate(step: int) -> dict[str, Any]:
        return _validate(method, val_split, val_tokens, resolved_config(config, method), ctx.device, method_name)

    warm = bool(config["methods"][method_name].get("init_from"))  # the warm start itself is a candidate: step 0
    _loop(method, optimizer, batches, tcfg, ctx, state, files, identity, config, validate, validate_start=warm)
    distributed.barrier()  # the other ranks wait for rank 0's last validation
    if ctx.is_main:
        _finish(files, state, resolved_config(config, method))
    distributed.cleanup()
    return files.model


def _resume(
    last: Path,
    identity: dict[str, Any],
    method: RetrievalMethod,
    optimizer: torch.optim.Optimizer,
    name: str,
    seed: int,
) -> TrainState:
    if not last.exists():
        return TrainState()
    ckpt = load_checkpoint(last, identity)
    method.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["torch_rng"])
    tqdm.write(f"resuming {name} seed {seed} from {last} at step {ckpt['step']}")
    rows = ckpt["train_rows"], ckpt["val_rows"]
    return TrainState(ckpt["step"], ckpt["best_val"], ckpt["train_seconds"], *rows, ckpt.get("stopped", False))


def _validate(
    method: RetrievalMethod, split: Any, tokens: Any, config: dict[str, Any], device: torch.device, name: str
) -> dict[str, Any]:
    """Validation metrics of the current weights (``config``: as this method trains) and the selection number."""
    result = evaluate(method, split, tokens, config, device, name, shortlist=True).metrics
    return {"val": validation_score(result, config["train"]["val_metric"]), "metrics": result}


def _loop(
    method: RetrievalMethod,
    optimizer: torch.optim.Optimizer,
    batches: TrainBatches,
    tcfg: dict[str, Any],
    ctx: distributed.Context,
    state: TrainState,
    files: RunFiles,
    identity: dict[str, Any],
    config: dict[str, Any],
    validate: Callable[[int], dict[str, Any]],
    validate_start: bool = False,
) -> None:
    """Steps ``state.step .. total``: LR, step, log; validation and checkpoint every ``eval_every`` steps (and at
    step 0 when ``validate_start``: a warm start that fine-tuning only hurts is then what gets selected)."""
    total, device = tcfg["steps"], ctx.device
    amp = tcfg["amp"]
    loss_fn = distributed.loss_fn(method, ctx)  # method.loss, DDP-wrapped when several processes
    parameters = [p for p in method.parameters() if p.requires_grad]
    shard = functools.partial(distributed.rank_batch, batches, ctx.world_size, ctx.rank, len(batches.units[0]))
    stream = distributed.step_batches(shard, state.step, total, tcfg.get("workers", 0), device.type == "cuda")
    if validate_start and state.step == 0 and not state.val_rows and ctx.is_main:
        _record_validation(state, validate(0), method, files, identity)
    method.train()
    desc = f"train {identity['method']} s{identity['seed']}"
    bar = tqdm(total=total, initial=state.step, desc=desc, unit="step", mininterval=5, disable=not ctx.is_main)
    while state.step < total and not state.stopped:
        lr = learning_rate(state.step, total, tcfg["warmup"], tcfg["lr"])
        tick = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in next(stream).items()}  # this rank's slice
        logged = logged_step(loss_fn, parameters, optimizer, batch, lr, tcfg, amp)
        if not math.isfinite(logged["loss"]):
            _nonfinite(state.step, logged, tcfg["on_nonfinite"], files.last, bar)
        synchronize(device)
        elapsed = time.perf_counter() - tick
        state.train_seconds += elapsed
        state.step += 1
        row = {"step": state.step, "lr": lr, **logged, "samples_per_s": tcfg["batch_size"] / elapsed}
        state.train_rows.append({**row, "train_seconds": state.train_seconds})
        bar.update(1)
        if (state.step % tcfg["eval_every"] == 0 or state.step == total) and ctx.is_main:  # rank 0 evaluates
            val = _record_validation(state, validate(state.step), method, files, identity)
            bar.set_postfix(val=f"{val:.1f}", loss=f"{logged['loss']:.3f}")
            state.stopped = state.plateaued(tcfg.get("patience"))
            if state.stopped:
                tqdm.write(f"step {state.step}: no better val in {tcfg['patience']} validations: stopping (patience)")
            _save_last(files, state, method, optimizer, identity, config)
    bar.close()


def _nonfinite(step: int, logged: dict[str, float], policy: str, last: Path, bar: tqdm) -> None:
    if policy == "stop":
        where = f"{last} (step {torch.load(last, weights_only=False)['step']})" if last.exists() else "none"
        bar.close()  # the bar first, so the error is the last line the user sees
        terms = {k: v for k, v in logged.items() if k != "loss"}
        raise FloatingPointError(
            f"non-finite loss at step {step} ({terms}); "
            f"last good checkpoint: {where}. Lower train.lr or set train.on_nonfinite: skip"
        )
    tqdm.write(f"step {step}: non-finite loss skipped")


def _record_validation(
    state: TrainState, result: dict[str, Any], method: RetrievalMethod, files: RunFiles, identity: dict[str, Any]
) -> float:
    """Log a validation point; keep the weights when it is the best so far (``best.pt``)."""
    t2v, val = result["metrics"]["t2v"], result["val"]
    pairwise = {f"pairwise_{k}": v["accuracy"] for k, v in result["metrics"]["pairwise"].items()}
    row = {"step": state.step, "train_seconds": state.train_seconds, "val": val}
    state.val_rows.append({**row, **{f"t2v_{k}": v for k, v in t2v.items()}, **pairwise})
    if val > state.best_val:
        state.best_val = val
        resultfiles.save_torch(
            {"model": method.state_dict(), "step": state.step, "val": val, "identity": identity}, files.best
        )
    return val


def _save_last(
    files: RunFiles,
    state: TrainState,
    method: RetrievalMethod,
    optimizer: torch.optim.Optimizer,
    identity: dict[str, Any],
    config: dict[str, Any],
) -> None:
    resultfiles.save_torch(
        {
            "model": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": state.step,
            "best_val": state.best_val,
            "train_seconds": state.train_seconds,
            "train_rows": state.train_rows,
            "val_rows": state.val_rows,
            "stopped": state.stopped,
            "torch_rng": torch.get_rng_state(),
            "identity": identity,
            "config": resolved_config(config, method),
            "commit": git_commit(),
        },
        files.last,
    )
    _write_logs(files, state)


def _write_logs(files: RunFiles, state: TrainState) -> None:
    resultfiles.write_csv(state.train_rows, files.out / "train_log.csv")
    resultfiles.write_csv(state.val_rows, files.out / "val_log.csv")


def _finish(files: RunFiles, state: TrainState, config: dict[str, Any]) -> None:
    """Logs, then ``model.pt`` (the selected weights), whatever path led here (a resume at the last step too)."""
    _write_logs(files, state)
    selected = torch.load(files.best, map_location="cpu", weights_only=False)
    meta = {"config": config, "commit": git_commit(), "best_val": state.best_val}
    resultfiles.save_torch({**selected, **meta}, files.model)
