"""Device check: short AMP trainings, GPU query latency, GEES-vs-NCE step time, and CLIP ViT-B/32 sizing.

Run by ``scripts/gpu_check.sh`` on a machine with one GPU and nothing but the repo (under 6 minutes), or on CPU in
a tiny mode for the test suite::

    python -m vtrbench.gpu_check --out results/gpu_check            # GPU, SynthVTT at a larger size
    python -m vtrbench.gpu_check --out /tmp/gpu_check --tiny        # CPU, seconds

Columns of ``gpu_check.csv`` (also printed as a table):

    method             the method (config name)
    device             cuda device name or "cpu"
    train_steps_per_s  median optimiser steps per second of the short training (bf16 autocast on CUDA), batch B
    val_R@1            t2v R@1 (%) on the val split at the end of the short run (selection metric: R@1)
    query_ms_p50       median latency of one text query (encode + score against the gallery + top-10), ms,
                       timed by ``vtrbench.timing`` (synchronised clock reads); gallery encoded once
    gallery            number of videos in the gallery of the latency measurement (the 1,000-video test split)
    step_ms_M4/M16     CRET rows: median full training step (forward, backward, AdamW) at M = 4 / 16 frames, ms

``clip_sizing.csv``: CLIP ViT-B/32 towers (random init) under ``dual_seq`` at 12 frames of 224 px, bf16 autocast:
``tower_params_M``, ``batch_size``, ``step_ms`` (median training step), ``peak_mem_mb`` (CUDA max allocated).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vtrbench import config as config_lib
from vtrbench import resultfiles
from vtrbench.data.batches import Tokens, random_batch
from vtrbench.data.prepare import prepare
from vtrbench.data.records import load_split
from vtrbench.device import autocast, pick_device, start
from vtrbench.encoding import encode_stage
from vtrbench.report.aggregate import training_speed
from vtrbench.runs import build, load_trained, split_tokens
from vtrbench.timing import time_calls
from vtrbench.train import make_optimizer, train, train_step

METHODS = {
    "dual_mean": {"class": "dual_encoder", "pooling": "mean"},
    "cret": {"class": "cret", "global_loss": "gees"},
    "cret_nce": {"class": "cret", "global_loss": "nce"},
}


def check_config(tiny: bool, device: str) -> dict[str, Any]:
    """SynthVTT at a larger size (GPU) or the smallest one (``tiny``); the same model family as the default."""
    width, layers, heads = (16, 1, 2) if tiny else (256, 4, 4)
    cret_extra = {"num_centres": 2, "ccm_layers": 1, "ccm_heads": 2} if tiny else {"num_centres": 8, "ccm_heads": 4}
    return config_lib.validate(
        {
            "run_name": "gpu-check",
            "seeds": [0],
            "dataset": {
                "name": "synthetic",
                "frames": 8,
                "resolution": 16 if tiny else 32,
                "synthetic": (
                    {"train_groups": 8, "val_groups": 2, "test_groups": 4, "train_captions": 2}
                    if tiny
                    else {"train_groups": 2000, "val_groups": 50, "test_groups": 250}  # 1,000-video test gallery
                ),
            },
            "model": {
                "text": {"hidden": width, "layers": layers, "heads": heads, "max_length": 40},
                "frame": {"hidden": width, "layers": layers, "heads": heads, "patch_size": 8},
                "temporal": {"layers": max(1, layers // 2), "heads": heads},
            },
            "train": {
                "steps": 2 if tiny else 400,
                "batch_size": 8 if tiny else 128,
                "frames": 8,
                "lr": 1e-3,
                "eval_every": 2 if tiny else 200,
                "val_metric": "R@1",
                "device": device,
                "amp": True,
                "workers": 0 if tiny else 4,
                "threads": 2 if tiny else 8,
            },
            "eval": {"frames": 8, "batch_size": 256},
            "methods": {
                name: {**opts, "dim": width, **(cret_extra if opts["class"] == "cret" else {})}
                for name, opts in METHODS.items()
            },
        }
    )


@torch.no_grad()
def query_latency(config: dict, method_name: str, data: Path, model: Path, device: torch.device, n: int) -> float:
    """Median ms of one text query against the test gallery (encoded once, offline): encode, score, top-10."""
    test = load_split(data, "test")
    stage = encode_stage(load_trained(config, method_name, 0, data, model), test, device)
    queries = iter(range(n + 5))

    def one_query() -> None:
        tok = stage.tokens[np.array([next(queries) % len(test.captions)])]
        ids, mask = tok.input_ids.to(device), tok.attention_mask.to(device)
        with autocast(device, config["train"]["amp"]):
            query = {k: v.float() for k, v in stage.method.encode_texts(ids, mask).items()}
        scores = stage.method.score(query, stage.gallery)  # fp32 scores: bf16 would create ties
        scores.topk(min(10, scores.shape[1]), dim=1)

    return 1000 * statistics.median(time_calls(one_query, 5, n, device))


def step_time(config: dict, global_loss: str, frames: int, data: Path, device: torch.device, n: int) -> float:
    """Median ms of one CRET training step (``vtrbench.train.train_step``) on a random batch with ``frames`` frames."""
    cfg = {**config, "methods": {"probe": {**config["methods"]["cret"], "global_loss": global_loss}}}
    torch.manual_seed(0)
    setup = build(cfg, "probe", data)
    method = setup.method.to(device).train()
    optimizer = make_optimizer(method, cfg, 1e-4)
    parameters = [p for p in method.parameters() if p.requires_grad]
    tokens = split_tokens(setup, load_split(data, "val"))
    generator = torch.Generator().manual_seed(0)
    B, res = config["train"]["batch_size"], config["dataset"]["resolution"]
    batch = {k: v.to(device) for k, v in random_batch(tokens, B, frames, res, generator).items()}
    amp = config["train"]["amp"]

    def step() -> None:
        train_step(method.loss, parameters, optimizer, batch, config["train"]["grad_clip"], amp)

    return 1000 * statistics.median(time_calls(step, 3, n, device))


def clip_sizing(out: Path, tiny: bool, device: torch.device, batch_sizes: tuple[int, ...]) -> pd.DataFrame:
    """CLIP ViT-B/32 towers (random init: ``CLIPConfig()`` is the B/32 architecture) under ``dual_seq`` at 12 frames
    of 224 px: parameters, peak memory and median training step per batch size (docs/results.md, "CLIP ViT-B/32
    sizing").

    Weights do not change the time or the memory, so no checkpoint is needed (none can be downloaded).
    ``tiny``: a small CLIP at 32 px, to test the path on CPU.
    """
    from transformers import CLIPConfig, CLIPModel

    from vtrbench.backbones import BackboneConfig, Backbones
    from vtrbench.methods import build_method

    if tiny:
        text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
        vision = {**text, "image_size": 32, "patch_size": 8}
        clip, frames, size, heads = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16), 4, 32, 2
    else:
        clip, frames, size, heads = CLIPConfig(), 12, 224, 8
    folder = out / "clip-random"
    torch.manual_seed(0)
    CLIPModel(clip).save_pretrained(folder)
    model = {"text": {"pretrained": str(folder), "max_length": 32, "pooling": "cls"}}
    model |= {"frame": {"pretrained": str(folder), "pooling": "cls"}, "temporal": {"layers": 4, "heads": heads}}
    backbones = Backbones(BackboneConfig.from_dict(model), vocab_size=0, image_size=size)
    method = build_method(backbones, {"class": "dual_encoder", "pooling": "seq", "dim": clip.projection_dim})
    method = method.to(device).train()
    config = {"train": {"weight_decay": 0.2, "backbone_lr_scale": 0.001}, "model": model}
    optimizer = make_optimizer(method, config, 1e-4)
    parameters = [p for p in method.parameters() if p.requires_grad]
    towers = sum(p.numel() for p in backbones.text.parameters()) + sum(p.numel() for p in backbones.frame.parameters())
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, clip.text_config.vocab_size - 2, (max(batch_sizes), 32), generator=generator)
    captions = Tokens(ids, torch.ones_like(ids))  # 32 content tokens each: the longest caption of the recipe
    rows = []
    for B in batch_sizes:
        batch = {k: v.to(device) for k, v in random_batch(captions, B, frames, size, generator).items()}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def step(batch: dict = batch) -> None:
            train_step(method.loss, parameters, optimizer, batch, 1.0, amp=True)

        ms = 1000 * statistics.median(time_calls(step, 2, 1 if tiny else 10, device))
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        rows.append({"model": "CLIP ViT-B/32" if not tiny else "tiny CLIP", "tower_params_M": towers / 1e6,
                     "frames": frames, "batch_size": B, "step_ms": ms, "peak_mem_mb": peak})  # fmt: skip
        print(f"clip sizing: batch {B} done", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def run(out: Path, tiny: bool, device_name: str) -> pd.DataFrame:
    config = check_config(tiny, pick_device(device_name).type)
    device = start(config["train"]["threads"], config["train"]["device"])
    data = out / "data"
    if not (data / "manifest.json").exists():
        prepare(config, data, threads=4)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = []
    for method_name in config["methods"]:
        run_dir = out / "runs" / method_name
        model = run_dir / "model.pt"
        if not model.exists():
            train(config, method_name, 0, data, run_dir)
        log, val = pd.read_csv(run_dir / "train_log.csv"), pd.read_csv(run_dir / "val_log.csv")
        row = {
            "method": method_name,
            "device": name,
            "train_steps_per_s": 1000.0 / training_speed(log)["step_ms"],
            "val_R@1": float(val["t2v_R@1"].iloc[-1]),
            "query_ms_p50": query_latency(config, method_name, data, model, device, 3 if tiny else 200),
            "gallery": load_split(data, "test").num_videos,
        }
        if config["methods"][method_name]["class"] == "cret":
            loss = config["methods"][method_name]["global_loss"]
            for frames in (4, 16):
                row[f"step_ms_M{frames}"] = step_time(config, loss, frames, data, device, 1 if tiny else 20)
        rows.append(row)
        print(f"done: {method_name}", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    resultfiles.write_csv(table, out / "gpu_check.csv")
    sizing = clip_sizing(out, tiny, device, (2,) if tiny else (16, 32, 64, 128))
    resultfiles.write_csv(sizing, out / "clip_sizing.csv")
    print(sizing.to_string(index=False, float_format=lambda x: f"{x:.1f}", na_rep="-"))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vtrbench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/gpu_check"))
    parser.add_argument("--tiny", action="store_true", help="smallest sizes (CPU test mode)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    table = run(args.out, args.tiny, args.device)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}", na_rep="-"))
    print(f"gpu_check: {time.perf_counter() - tick:.0f} s; table in {args.out / 'gpu_check.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
