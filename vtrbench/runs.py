"""Load a trained run back and evaluate it: the bridge between ``model.pt`` and the result files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vtrbench.data.records import load_split
from vtrbench.evaluate import evaluate, write_results
from vtrbench.train import Setup, build, load_checkpoint, pick_device, run_identity, split_tokens


def load_trained(
    config: dict[str, Any], method_name: str, seed: int, data_dir: str | Path, model_path: str | Path
) -> Setup:
    """Rebuild the method and load its selected weights; refuses a checkpoint of another method or config."""
    ckpt = load_checkpoint(Path(model_path), run_identity(config, method_name, seed))
    setup = build(config, method_name, data_dir)
    setup.method.load_state_dict(ckpt["model"])
    setup.method.eval()
    setup.selected = {"step": ckpt["step"], "val": ckpt["val"]}
    return setup


def evaluate_checkpoint(
    config: dict[str, Any],
    method_name: str,
    seed: int,
    data_dir: str | Path,
    model_path: str | Path,
    out_dir: str | Path,
    split: str = "test",
) -> dict[str, Any]:
    """Evaluate ``model.pt`` on ``split``; writes ``metrics.json`` and ``ranks.parquet`` under ``out_dir``."""
    torch.set_num_threads(config["train"]["threads"])
    device = pick_device(config["train"]["device"])
    setup = load_trained(config, method_name, seed, data_dir, model_path)
    setup.method.to(device)
    data = load_split(data_dir, split)
    result = evaluate(
        setup.method,
        data,
        split_tokens(setup, data),
        config["eval"]["frames"],
        config["eval"]["batch_size"],
        device,
        method_name,
        amp=config["train"]["amp"],
    )
    extra = {
        "method": method_name,
        "method_class": config["methods"][method_name]["class"],
        "kind": setup.method.kind,
        "seed": seed,
        "dataset": config["dataset"]["name"],
        "split": split,
        "selected_step": setup.selected["step"],
        "val_score": setup.selected["val"],
        "train_steps": config["train"]["steps"],
        "parameters": sum(p.numel() for p in setup.method.parameters()),
    }
    write_results(result, data, Path(out_dir), extra)
    return {**extra, **result.metrics}
