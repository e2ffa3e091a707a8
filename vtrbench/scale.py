"""Retrieval at gallery scale: real distractor videos through each embedding method, end-task recall against gallery
size with exact search, and approximate indexes' recall against queries per second (``vtrbench.ann``).

A gallery of N videos is the test split followed by the first N - n_test videos of the distractor stream
(``vtrbench.data.synthetic.distractor_frames``: generated SynthVTT groups none of whose compositions is a val or
test video's, so every test caption keeps exactly one matching video). The stream is encoded in shards, one job each
(:func:`encode_distractors`), and only the method's gallery vectors are kept; :func:`run_scale` reads the shards in
order and measures every gallery size of the method. Index parameters are chosen on the val captions' neighbour
recall (no labels needed: the exact top 10 of each val caption in the same gallery) and reported on the test
captions.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from vtrbench import ann, resultfiles
from vtrbench.data.records import load_split
from vtrbench.data.synthetic import SyntheticConfig, distractor_frames, evaluation_keys
from vtrbench.data.video import sample_indices
from vtrbench.device import autocast, start
from vtrbench.encoding import encode_stage
from vtrbench.methods import EmbeddingMethod
from vtrbench.metrics import summarize
from vtrbench.runs import load_trained

SHARD_NAME = re.compile(r"(\d+)-(\d+)\.npy$")  # {start}-{stop}.npy: distractor videos start..stop-1
GALLERY_COLUMNS = [
    "method",
    "seed",
    "gallery_size",  # videos searched: the test split, then distractors
    "distractors",
    "t2v_R@1",
    "t2v_R@5",
    "t2v_R@10",
    "t2v_MdR",
    "bytes_per_video",  # the stored gallery vector (scale.dtype)
    "encode_videos_per_s",  # distractor generation + encoding, per encode job (jobs may share the machine)
    "threads",
]


def _embedding_method(
    config: dict[str, Any], name: str, seed: int, data_dir: str | Path, model: str | Path, tokens_dir: str | Path | None
) -> Any:
    if config["dataset"]["name"] != "synthetic":
        raise ValueError(
            f"scale: dataset.name={config['dataset']['name']!r} has no distractor generator; the gallery-scale "
            "step runs on the synthetic dataset only (set scale.enabled: false)"
        )
    setup = load_trained(config, name, seed, data_dir, model, tokens_dir)
    if not isinstance(setup.method, EmbeddingMethod):
        raise ValueError(f"scale.methods: {name!r} is not an embedding method (it has no gallery vectors to index)")
    return setup


@torch.no_grad()
def encode_distractors(
    config: dict[str, Any],
    name: str,
    seed: int,
    data_dir: str | Path,
    model: str | Path,
    first: int,
    stop: int,
    out: str | Path,
    tokens_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Generate distractor videos ``first:stop`` a block at a time, encode them with method ``name``'s gallery
    encoder (the evaluation frames and batch size) and write their gallery vectors to ``out`` ([n, D] .npy, in
    ``scale.dtype``) and their cost beside it (``.json``)."""
    if not 0 <= first < stop:
        raise ValueError(f"distractor range {first}-{stop}: need 0 <= start < stop")
    device = start(config["train"]["threads"], config["train"]["device"])
    setup = _embedding_method(config, name, seed, data_dir, model, tokens_dir)
    method = setup.method.to(device).eval()
    synthetic = SyntheticConfig.from_dataset(config["dataset"])
    avoid = evaluation_keys(synthetic)
    frames = sample_indices(synthetic.frames, config["eval"]["frames"], "uniform")
    batch, amp = config["eval"]["batch_size"], config["train"]["amp"]
    dtype = np.dtype(config["scale"]["dtype"])
    parts, generate_s, encode_s = [], 0.0, 0.0
    tick = time.perf_counter()
    with tqdm(total=stop - first, desc=f"{name}: distractors {first}-{stop}", unit="video") as bar:
        for block in distractor_frames(synthetic, first, stop, avoid):
            generate_s += time.perf_counter() - tick
            tick = time.perf_counter()
            clips = torch.from_numpy(np.ascontiguousarray(block[:, frames]))
            for lo in range(0, len(clips), batch):
                with autocast(device, amp):
                    features = method.encode_videos(clips[lo : lo + batch].to(device))
                    parts.append(method.gallery_vectors(features).float().cpu().numpy().astype(dtype))
            encode_s += time.perf_counter() - tick
            bar.update(len(clips))
            tick = time.perf_counter()
    vectors = np.concatenate(parts)
    resultfiles.write_npy(out, vectors)
    cost = {
        "method": name,
        "seed": seed,
        "start": first,
        "stop": stop,
        "videos": len(vectors),
        "dim": int(vectors.shape[1]),
        "dtype": str(dtype),
        "generate_s": generate_s,
        "encode_s": encode_s,
        "videos_per_s": len(vectors) / (generate_s + encode_s),
        "threads": torch.get_num_threads(),
    }
    resultfiles.write_json(Path(out).with_suffix(".json"), cost)
    return cost


def read_shards(paths: list[str | Path]) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """The distractor shards in stream order, checked to cover 0..n without a gap, as float32 (FAISS's type)."""
    named = []
    for path in paths:
        match = SHARD_NAME.search(str(path))
        if match is None:
            raise resultfiles.ResultFileError(f"{path}: a distractor shard is named {{start}}-{{stop}}.npy")
        named.append((int(match[1]), int(match[2]), Path(path)))
    shards, costs, expected = [], [], 0
    for first, stop, path in sorted(named):
        if first != expected:
            raise resultfiles.ResultFileError(f"{path}: distractor shards leave a gap at video {expected}")
        vectors = np.load(path)
        if len(vectors) != stop - first:
            raise resultfiles.ResultFileError(f"{path}: holds {len(vectors)} vectors, its name says {stop - first}")
        shards.append(np.ascontiguousarray(vectors, dtype=np.float32))
        costs.append(json.loads(path.with_suffix(".json").read_text()))
        expected = stop
    return shards, costs


def ranks_of_positives(
    gallery: np.ndarray, queries: np.ndarray, positive: np.ndarray, chunk: int = 65536
) -> np.ndarray:
    """[q] rank of each query's matching video: 1 + other gallery videos scoring strictly higher (the suite's tie
    rule, ``vtrbench.metrics``), counted over the gallery a chunk at a time. The matching video itself is never
    counted: its score in a chunk's product may differ from ``target`` in the last bit."""
    target = np.einsum("qd,qd->q", queries, gallery[positive])
    higher = np.zeros(len(queries), dtype=np.int64)
    rows = np.arange(len(queries))
    for lo in range(0, len(gallery), chunk):
        scores = queries @ gallery[lo : lo + chunk].T  # [q, chunk]
        inside = (positive >= lo) & (positive < lo + len(scores[0]))
        scores[rows[inside], positive[inside] - lo] = -np.inf
        higher += (scores > target[:, None]).sum(1)
    return higher + 1


@torch.no_grad()
def run_scale(
    config: dict[str, Any],
    name: str,
    seed: int,
    data_dir: str | Path,
    model: str | Path,
    shards: list[str | Path],
    out_dir: str | Path,
    tokens_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every gallery size of method ``name`` up to ``largest``: exact end-task recall (``gallery.csv``) and the
    index sweep (``ann.csv``) in ``out_dir``."""
    scale, threads = config["scale"], config["latency"]["threads"]
    device = start(threads, config["train"]["device"])
    faiss.omp_set_num_threads(threads)
    setup = _embedding_method(config, name, seed, data_dir, model, tokens_dir)
    test_split = load_split(data_dir, "test")
    test = encode_stage(setup, test_split, device)
    val = encode_stage(setup, load_split(data_dir, "val"), device)
    method = setup.method

    def vectors(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.float().cpu().numpy(), dtype=np.float32)

    test_gallery = vectors(method.gallery_vectors(test.gallery))
    test_queries, val_queries = vectors(method.query_vectors(test.queries)), vectors(method.query_vectors(val.queries))
    positive = np.asarray(test_split.caption_video)
    distractors, costs = read_shards(shards)
    bounds = np.cumsum([len(test_gallery), *(len(d) for d in distractors)])  # each encode job's last row + 1
    pool = np.concatenate([test_gallery, *distractors])
    del distractors  # the pool is the one copy kept (1M x 576 float32 is 2.3 GB); shards are views of it
    speed = sum(c["videos"] for c in costs) / sum(c["generate_s"] + c["encode_s"] for c in costs) if costs else None
    largest = scale["largest"] or max(scale["gallery_sizes"])
    sizes = [int(n) for n in scale["gallery_sizes"] if int(n) <= largest]
    if max(sizes) > len(pool):
        raise ValueError(f"scale: gallery of {max(sizes):,} videos but only {len(pool):,} encoded; re-run the shards")
    gallery_rows, sweeps = [], []
    for size in tqdm(sizes, desc=f"{name}: gallery sizes"):
        gallery = pool[:size]
        pieces = [pool[lo : min(hi, size)] for lo, hi in zip([0, *bounds[:-1]], bounds, strict=True) if lo < size]
        ranks = ranks_of_positives(gallery, test_queries, positive)
        gallery_rows.append(
            {"method": name, "seed": seed, "gallery_size": size, "distractors": size - len(test_gallery)}
            | {f"t2v_{k}": v for k, v in summarize(ranks).items() if k != "MnR"}
            | {"bytes_per_video": np.dtype(scale["dtype"]).itemsize * pool.shape[1]}
            | {"encode_videos_per_s": speed if size > len(test_gallery) else None, "threads": threads}
        )
        sweep = ann.sweep(
            gallery,
            val_queries,
            test_queries,
            positive,
            scale["indexes"],
            scale["target_recall"],
            scale["single_queries"],
            scale["repeats"],
            scale["train_size"],
            seed,
            scale["build_threads"] or os.cpu_count(),
            pieces,  # the test split's vectors, then each encode job's: the exact point searches through them
        )
        sweeps.append(sweep.assign(method=name, seed=seed, gallery_size=size, threads=threads))
    out = Path(out_dir)
    gallery_frame = pd.DataFrame(gallery_rows, columns=GALLERY_COLUMNS)
    ann_frame = pd.concat(sweeps, ignore_index=True)
    lead = ["method", "seed", "gallery_size"]
    ann_frame = ann_frame[lead + [c for c in ann_frame.columns if c not in lead]]
    resultfiles.write_csv(gallery_frame, out / "gallery.csv")
    resultfiles.write_csv(ann_frame, out / "ann.csv")
    return gallery_frame, ann_frame
