"""Training throughput: step time, clips/s, peak memory and the loss's share of the step, over frames x batch size.

Why: the CRET paper's Fig. 5(b) shows training time per step growing about linearly in the frames M (42 -> 224 ms
for M = 2 -> 16), and GEES is meant to buy dense-sampling accuracy without encoding more frames. This module measures
that cost on this machine, for every method of the config, through the method interface only (``loss(batch)``,
``encode_videos``, ``encode_texts``), so any registered method (a cross-encoder's B x B pair scoring included) is
measured the same way.

Inputs are random: a random-init method (built by ``vtrbench.train.build``, as in training) on random uint8 frames of
the dataset's resolution and captions of the val split (weights and pixel values do not change the time). With
``train.freeze_towers``, the frozen towers run once per grid point outside the timed calls and the step reads their
outputs, as a frozen-tower run reads its cached features (``vtrbench.features``). Timing
is ``vtrbench.timing``'s: ``warmup`` calls discarded, ``cuda.synchronize()`` before reading the clock,
``time.perf_counter_ns()``, one raw row per call with device, dtype and batch size; medians and p95 are computed at
aggregation (``vtrbench.report.throughput``).

Phases timed per grid point (B, M) and repeat (interleaved, so every ratio is paired):
    step      the trainer's step (``vtrbench.train.logged_step``): LR, loss forward, backward, clipping, AdamW
    bare      the same maths written as a bare loop (forward, sum of the terms, backward, clipping, AdamW step):
              ``overhead = step / bare`` is what the harness costs on top of the model
    forward   ``loss(batch)`` forward only (no grad)
    encode    ``encode_videos`` + ``encode_texts`` forward only (no grad): the per-item encoders
``forward - encode`` is the part of the forward spent outside the per-item encoders (the head and the loss: the B x C
pair scoring of a cross-encoder, GEES/NCE and the CCM score of CRET); ``loss_share = head_ms / forward_ms``.

The loss-level benchmark times the losses a method class declares (``RetrievalMethod.loss_benchmarks``: CRET's
GEES and NCE) alone, forward + backward, on random L2-normalised features text [B, D] and frames [B, M, D], over
the same grid: the cost GEES adds on top of NCE, free of the encoders.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from vtrbench import resultfiles
from vtrbench.data.batches import random_batch
from vtrbench.data.records import load_split
from vtrbench.device import autocast, start, uses_bf16
from vtrbench.features import as_cached, stop_gradients
from vtrbench.methods import resolve
from vtrbench.runs import build, split_tokens
from vtrbench.timing import synchronize, time_once
from vtrbench.train import logged_step, make_optimizer

PHASES = ("step", "bare", "forward", "encode")
RAW_COLUMNS = [
    "method",
    "method_class",
    "kind",
    "loss",
    "frames",
    "batch_size",
    "phase",
    "rep",
    "ms",
    "peak_mem_mb",
    "mem_kind",
    "device",
    "dtype",
    "threads",
    "resolution",
]
LOSS_COLUMNS = ["loss", "frames", "batch_size", "dim", "rep", "ms", "device", "dtype", "threads"]


# ----- memory -----
def _reset_peak(device: torch.device) -> str:
    """Start a new peak-memory window; returns what will be read (``cuda_max_allocated`` or an RSS kind)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_allocated"
    try:  # Linux >= 4.0: writing 5 resets the process's peak RSS (VmHWM), proc(5) /proc/pid/clear_refs
        Path("/proc/self/clear_refs").write_text("5")
        return "rss_hwm"
    except OSError:
        return "rss_maxrss_process"  # not resettable: the process-lifetime peak (monotone over the grid)


def _peak_mb(device: torch.device, kind: str) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if kind == "rss_hwm":
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# ----- method-level benchmark -----
def measure_method(
    config: dict[str, Any],
    method_name: str,
    data_dir: str | Path,
    frames: list[int],
    batch_sizes: list[int],
    warmup: int,
    repeats: int,
    tokens_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Raw rows (``RAW_COLUMNS``): one per (frames, batch size, phase, repeat) for ``method_name``."""
    tcfg = config["train"]
    device = start(tcfg["threads"], tcfg["device"])
    torch.manual_seed(0)
    setup = build(config, method_name, data_dir, tokens_dir)
    method = setup.method.to(device).train()
    tokens = split_tokens(setup, load_split(data_dir, "val"))
    frozen = tcfg["freeze_towers"]  # a frozen-tower run's step reads cached tower outputs: time that step
    if frozen != "none":
        stop_gradients(method.backbones, frozen)
    optimizer = make_optimizer(method, config, 1e-6)
    parameters = [p for p in method.parameters() if p.requires_grad]
    amp = uses_bf16(device, tcfg["amp"])
    resolution = config["dataset"]["resolution"]
    generator = torch.Generator().manual_seed(0)
    constant = {
        "method": method_name,
        "method_class": config["methods"][method_name]["class"],
        "kind": method.kind,
        "loss": method.loss_label(),
        "device": device.type,
        "dtype": "bfloat16" if amp else "float32",
        "resolution": resolution,
    }

    def bare(batch: dict) -> None:  # the same maths as the trainer's step, nothing around it
        loss = sum(v for k, v in method.loss(batch).items() if k.endswith("_loss"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tcfg["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(parameters, tcfg["grad_clip"])
        optimizer.step()

    @torch.no_grad()
    def forward(batch: dict) -> None:
        with autocast(device, amp):
            method.loss(batch)

    @torch.no_grad()
    def encode(batch: dict) -> None:
        with autocast(device, amp):
            method.encode_videos(batch["frames"])
            method.encode_texts(batch["input_ids"], batch["attention_mask"])

    calls = {
        "step": lambda batch: logged_step(method.loss, parameters, optimizer, batch, 1e-6, tcfg, amp),
        "bare": bare if not amp else None,  # the bare loop has no autocast: compared on fp32 runs only
        "forward": forward,
        "encode": encode,
    }
    calls = {phase: call for phase, call in calls.items() if call is not None}
    rows: list[dict[str, Any]] = []
    for M in frames:
        for B in batch_sizes:
            batch = {k: v.to(device) for k, v in random_batch(tokens, B, M, resolution, generator).items()}
            batch = as_cached(method.backbones, batch, frozen) if frozen != "none" else batch
            for _ in range(warmup):  # one batch per grid point: the inputs' values do not change the time
                for call in calls.values():
                    call(batch)
            kind = _reset_peak(device)
            times = [  # phases interleaved per repeat, so step / bare and forward - encode are paired
                (phase, rep, 1000 * time_once(lambda call=call, batch=batch: call(batch), device))
                for rep in range(repeats)
                for phase, call in calls.items()
            ]
            synchronize(device)
            peak = _peak_mb(device, kind)  # the grid point's peak (the step phase's, which holds the autograd graph)
            for phase, rep, ms in times:
                rows.append(
                    {**constant, "frames": M, "batch_size": B, "phase": phase, "rep": rep, "ms": ms}
                    | {"peak_mem_mb": peak, "mem_kind": kind, "threads": torch.get_num_threads()}
                )
    return pd.DataFrame(rows, columns=RAW_COLUMNS)


# ----- loss-level benchmark (losses a method class declares, e.g. GEES vs NCE) -----
def declared_losses(config: dict[str, Any]) -> dict[str, Any]:
    """name -> loss function, over every configured method class's ``loss_benchmarks``."""
    out: dict[str, Any] = {}
    for entry in config["methods"].values():
        out.update(resolve(entry["class"]).loss_benchmarks())
    return out


def measure_losses(
    losses: dict[str, Any],
    frames: list[int],
    batch_sizes: list[int],
    dim: int,
    warmup: int,
    repeats: int,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Raw rows (``LOSS_COLUMNS``): each loss forward + backward on random features, per (M, B, repeat), on the
    threads the caller set (``vtrbench.device.start``)."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    rows: list[dict[str, Any]] = []
    for M in frames:
        for B in batch_sizes:
            text = F.normalize(torch.randn(B, dim, generator=generator), dim=-1).to(device).requires_grad_()
            h = F.normalize(torch.randn(B, M, dim, generator=generator), dim=-1).to(device).requires_grad_()
            scale = torch.tensor(1 / 0.07, device=device, requires_grad=True)
            for name, fn in losses.items():

                def call(fn: Any = fn, args: tuple = (text, h, scale)) -> None:
                    fn(*args).backward()  # gradients accumulate; their values do not matter here

                for _ in range(warmup):
                    call()
                for rep in range(repeats):
                    rows.append(
                        {"loss": name, "frames": M, "batch_size": B, "dim": dim, "rep": rep}
                        | {"ms": 1000 * time_once(call, device), "device": device.type, "dtype": "float32"}
                        | {"threads": torch.get_num_threads()}
                    )
    return pd.DataFrame(rows, columns=LOSS_COLUMNS)


def run_throughput(
    config: dict[str, Any],
    method_name: str,
    data_dir: str | Path,
    out: str | Path,
    tokens_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Measure one method over ``config['throughput']``'s grid; write the raw rows to ``out`` (CSV)."""
    t = config["throughput"]
    grid = (t["frames"], t["batch_sizes"], t["warmup"], t["repeats"])
    raw = measure_method(config, method_name, data_dir, *grid, tokens_dir=tokens_dir)
    resultfiles.write_csv(raw, out)
    return raw


def run_loss_throughput(config: dict[str, Any], out: str | Path) -> pd.DataFrame:
    """The declared losses alone over ``config['throughput']``'s grid; raw rows to ``out`` (CSV)."""
    t = config["throughput"]
    device = start(config["train"]["threads"], config["train"]["device"])
    raw = measure_losses(
        declared_losses(config), t["frames"], t["batch_sizes"], t["loss_dim"], t["warmup"], t["loss_repeats"], device
    )
    resultfiles.write_csv(raw, out)
    return raw
