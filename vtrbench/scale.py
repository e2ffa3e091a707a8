"""Retrieval at gallery scale: real distractor videos through each method, end-task recall against gallery size with
exact search, and (embedding methods) approximate indexes' recall against queries per second (``vtrbench.ann``).

A gallery of N videos is the test split followed by the first N - n_test videos of the distractor stream
(``vtrbench.data.synthetic.distractor_frames``: generated SynthVTT groups none of whose compositions is a val or
test video's, so every test caption keeps exactly one matching video). The stream is encoded in shards, one job each
(:func:`encode_distractors`), and only what the method's gallery holds is kept; :func:`run_scale` reads the shards in
order and measures every gallery size of the method. Index parameters are chosen on the val captions' neighbour
recall (no labels needed: the exact top 10 of each val caption in the same gallery) and reported on the test
captions.

An embedding method stores one vector per video (``gallery_vectors``), which FAISS indexes. A pair method (X-Pool's
caption-conditioned pooling, DRL's late interaction, a cross-encoder) stores its gallery features (its
``encode_videos`` output, each tensor flattened into one row per video, :func:`stored_rows`), and its exact search
scores every (caption, video) pair through ``score_candidates``: the cost that grows with the gallery, measured.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
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
from vtrbench.device import autocast, cpu_threads, start
from vtrbench.encoding import encode_stage
from vtrbench.methods import EmbeddingMethod, Features, PairMethod, RetrievalMethod
from vtrbench.metrics import summarize
from vtrbench.multivector import CandidateIndex, FrameIndex
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
    "bytes_per_video",  # what the gallery stores per video (scale.dtype): a vector, or a pair method's features
    "encode_videos_per_s",  # distractor generation + encoding, per encode job (jobs may share the machine)
    "threads",
    "queries",  # the test captions searched
    "exact_s",  # the exact search of every test caption against the whole gallery, batched
    "exact_threads",  # its threads: scale.build_threads (offline work), not latency.threads
]
Layout = list[tuple[str, tuple[int, ...]]]  # a pair method's gallery features: (name, shape per video), in row order


def _scaled_method(
    config: dict[str, Any], name: str, seed: int, data_dir: str | Path, model: str | Path, tokens_dir: str | Path | None
) -> Any:
    if config["dataset"]["name"] != "synthetic":
        raise ValueError(
            f"scale: dataset.name={config['dataset']['name']!r} has no distractor generator; the gallery-scale "
            "step runs on the synthetic dataset only (set scale.enabled: false)"
        )
    setup = load_trained(config, name, seed, data_dir, model, tokens_dir)
    if not isinstance(setup.method, EmbeddingMethod | PairMethod):
        raise ValueError(f"scale.methods: {name!r} is neither an embedding nor a pair method (it has no gallery)")
    return setup


def layout_of(gallery: Features) -> Layout:
    """The row layout of a pair method's gallery features: each tensor's name and shape per video, by name."""
    return [(key, tuple(gallery[key].shape[1:])) for key in sorted(gallery)]


def stored_rows(method: RetrievalMethod, gallery: Features) -> torch.Tensor:
    """[n, F] what the scale step keeps per video: an embedding method's gallery vector, or a pair method's gallery
    features flattened in :func:`layout_of` order."""
    if isinstance(method, EmbeddingMethod):
        return method.gallery_vectors(gallery)
    for key, value in gallery.items():
        if not value.is_floating_point():
            raise ValueError(
                f"{type(method).__name__}.encode_videos: gallery feature {key!r} is {value.dtype}; the scale step "
                "stores a pair method's gallery as float rows, so it takes floating-point features only"
            )
    return torch.cat([gallery[key].flatten(1).to(torch.float32) for key, _ in layout_of(gallery)], dim=1)


def features_of(rows: torch.Tensor, layout: Layout) -> Features:
    """The inverse of :func:`stored_rows` for a pair method: [n, F] rows -> its gallery features."""
    widths = [int(np.prod(shape)) for _, shape in layout]
    if rows.shape[1] != sum(widths):
        raise resultfiles.ResultFileError(
            f"distractor rows are {rows.shape[1]} wide; the method's gallery features {dict(layout)} need "
            f"{sum(widths)}: the shards come from another model, re-run them"
        )
    parts = rows.split(widths, dim=1)
    return {key: part.reshape(len(rows), *shape) for (key, shape), part in zip(layout, parts, strict=True)}


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
    encoder (the evaluation frames and batch size) and write what its gallery keeps (:func:`stored_rows`) to ``out``
    ([n, F] .npy, in ``scale.dtype``) and their cost beside it (``.json``)."""
    if not 0 <= first < stop:
        raise ValueError(f"distractor range {first}-{stop}: need 0 <= start < stop")
    device = start(config["train"]["threads"], config["train"]["device"])
    setup = _scaled_method(config, name, seed, data_dir, model, tokens_dir)
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
                    parts.append(stored_rows(method, features).float().cpu().numpy().astype(dtype))
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


EXACT_CHUNK = {True: 65536, False: 8192}  # gallery rows per exact-score block: embedding, pair (bounds its memory)


def _f32(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.float().cpu().numpy(), dtype=np.float32)


class InnerProduct:
    """Exact scores of an embedding method: query vectors against gallery rows."""

    def __init__(self, queries: np.ndarray, pool: np.ndarray):
        self.queries, self.pool = torch.from_numpy(queries), pool
        self.n_queries = len(queries)

    def block(self, lo: int, hi: int) -> np.ndarray:
        """[q, hi - lo] every query against gallery rows lo..hi-1."""
        return (self.queries @ torch.from_numpy(self.pool[lo:hi]).T).numpy()

    def own(self, videos: np.ndarray) -> np.ndarray:
        """[q] query i against gallery row ``videos[i]``."""
        return (self.queries * torch.from_numpy(self.pool[videos])).sum(1).numpy()


class PairScores:
    """Exact scores of a pair method: ``score_candidates`` on every (caption, video) pair of a block, its gallery
    features rebuilt from the stored rows (:func:`features_of`)."""

    def __init__(self, method: PairMethod, queries: Features, pool: np.ndarray, layout: Layout, device: torch.device):
        self.method, self.queries, self.pool, self.layout, self.device = method, queries, pool, layout, device
        self.n_queries = len(next(iter(queries.values())))

    def _gallery(self, rows: np.ndarray) -> Features:
        return features_of(torch.from_numpy(np.ascontiguousarray(rows)).to(self.device), self.layout)

    def block(self, lo: int, hi: int) -> np.ndarray:
        every = torch.arange(hi - lo, device=self.device).expand(self.n_queries, hi - lo)
        return self.method.score_candidates(self.queries, self._gallery(self.pool[lo:hi]), every).float().cpu().numpy()

    def own(self, videos: np.ndarray) -> np.ndarray:
        mine = torch.arange(self.n_queries, device=self.device)[:, None]  # query i's candidate: row i of its positives
        return self.method.score_candidates(self.queries, self._gallery(self.pool[videos]), mine)[:, 0].cpu().numpy()


@dataclass
class Exact:
    """Exact search of nested galleries (each the first ``size`` rows), per size: each caption's rank of its
    matching video (with ``positive``), its top ids (with ``top``), and the seconds a gallery that size takes."""

    ranks: dict[int, np.ndarray] = field(default_factory=dict)  # [q]
    top: dict[int, np.ndarray] = field(default_factory=dict)  # [q, top], best first
    seconds: dict[int, float] = field(default_factory=dict)


def exact_pass(
    scores: InnerProduct | PairScores,
    sizes: list[int],
    chunk: int,
    positive: np.ndarray | None = None,
    top: int = 0,
    desc: str = "exact search",
) -> Exact:
    """One pass over the largest gallery a chunk at a time, read off at every size. A rank is 1 + the other videos
    scoring strictly higher (the suite's tie rule, ``vtrbench.metrics``); the matching video itself is never
    counted (its score in a block may differ from ``own`` in the last bit)."""
    tick = time.perf_counter()
    target = scores.own(positive) if positive is not None else None
    higher = np.zeros(scores.n_queries, dtype=np.int64)
    best_s = np.full((scores.n_queries, top), -np.inf, dtype=np.float32)
    best_i = np.full((scores.n_queries, top), -1, dtype=np.int64)
    rows, out, done = np.arange(scores.n_queries), Exact(), 0
    with tqdm(total=max(sizes), desc=desc, unit="video") as bar:
        for size in sorted(sizes):
            for lo in range(done, size, chunk):  # the rows this size adds to the last one
                hi = min(lo + chunk, size)
                block = scores.block(lo, hi)  # [q, hi - lo]
                if top:
                    merged_s = np.concatenate([best_s, block], axis=1)
                    merged_i = np.concatenate([best_i, np.broadcast_to(np.arange(lo, hi), block.shape)], axis=1)
                    keep = np.argpartition(-merged_s, top - 1, axis=1)[:, :top]
                    best_s, best_i = np.take_along_axis(merged_s, keep, 1), np.take_along_axis(merged_i, keep, 1)
                if target is not None:
                    inside = (positive >= lo) & (positive < hi)
                    block[rows[inside], positive[inside] - lo] = -np.inf
                    higher += (block > target[:, None]).sum(1)
                bar.update(hi - lo)
            done = size
            out.seconds[size] = time.perf_counter() - tick
            if target is not None:
                out.ranks[size] = higher + 1
            if top:
                out.top[size] = np.take_along_axis(best_i, np.argsort(-best_s, axis=1, kind="stable"), 1)
    return out


def candidate_sweep(
    method: PairMethod,
    val: tuple[Features, np.ndarray],
    test: tuple[Features, np.ndarray, np.ndarray],
    gallery: Features,
    config: dict[str, Any],
    seed: int,
    offline: int,
) -> pd.DataFrame:
    """A multi-vector method's two-stage search (``vtrbench.multivector``) with every frame vector in an HNSW index
    (each ``scale.indexes.hnsw`` point), each caption token's ``latency.multivector_depth`` nearest frames, and the
    method's exact score on each ``latency.multivector_k`` candidates: rows like ``vtrbench.ann.sweep``'s (val:
    (queries, exact top 10); test: (queries, exact top 10, matching video)), one family ``multivector_hnsw``,
    chosen on val."""
    scale, latency = config["scale"], config["latency"]
    hnsw, depth, rows = scale["indexes"].get("hnsw"), latency["multivector_depth"], []
    if not hnsw:
        return pd.DataFrame(columns=ann.POINT_COLUMNS)
    (val_queries, val_exact), (test_queries, test_exact, positive) = val, test
    test_rows, val_rows = np.arange(len(test_exact))[:, None], np.arange(len(val_exact))[:, None]  # caption numbers
    test_view = method.multi_vectors(test_queries, gallery)
    val_view = method.multi_vectors(val_queries, gallery)
    frames = test_view.frames.float().cpu().numpy()  # [n, M, D]
    flat = np.ascontiguousarray(frames.reshape(-1, frames.shape[-1]))
    stored = sum(int(np.prod(v.shape[1:])) for v in gallery.values()) * 4  # float32 features scored exactly
    search_threads = faiss.omp_get_max_threads()
    for m in hnsw["M"]:
        point = ann.BuildPoint("hnsw", (("M", int(m)),))
        faiss.omp_set_num_threads(offline)
        index, build_s = ann.build(point, flat, scale["indexes"], scale["train_size"], seed)
        faiss.omp_set_num_threads(search_threads)
        frame_index = FrameIndex(frames, index)
        per_video = (ann.index_bytes(index) + stored * len(frames)) / len(frames)
        for ef in hnsw["ef_search"]:
            ann.configure(index, point, {"ef_search": ef})
            for k in latency["multivector_k"]:
                searches = [
                    CandidateIndex(method.score_candidates, q, gallery, view, frame_index, depth, k)
                    for q, view in ((test_queries, test_view), (val_queries, val_view))
                ]
                measured = ann.measure(
                    searches[0],
                    (val_rows, val_exact),
                    (test_rows, test_exact, positive),
                    scale["single_queries"],
                    scale["repeats"],
                    val_index=searches[1],
                )
                rows.append(
                    {"family": "multivector_hnsw", "build": f"M={m}", "search": f"ef_search={ef} depth={depth} k={k}"}
                    | {"build_s": build_s, "bytes_per_video": per_video, **measured}
                )
    frame = pd.DataFrame(rows)
    frame["chosen"] = ann.choose(frame, scale["target_recall"])
    return frame[ann.POINT_COLUMNS]


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
    """Every gallery size of method ``name`` up to ``largest``: exact end-task recall (``gallery.csv``) and the index
    sweep (``ann.csv``): an embedding method's FAISS indexes, a multi-vector method's candidate search over an HNSW
    index of its frames; no rows for another pair method (no index holds its gallery). Written to ``out_dir``."""
    scale, threads = config["scale"], config["latency"]["threads"]
    offline = scale["build_threads"] or os.cpu_count() or 1  # exact ranks and index builds: offline work
    device = start(threads, config["train"]["device"])
    faiss.omp_set_num_threads(threads)
    setup = _scaled_method(config, name, seed, data_dir, model, tokens_dir)
    test_split = load_split(data_dir, "test")
    test = encode_stage(setup, test_split, device)
    method = setup.method
    test_gallery = np.ascontiguousarray(stored_rows(method, test.gallery).float().cpu().numpy())
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
    embedding = isinstance(method, EmbeddingMethod)
    multi = not embedding and method.multi_vectors(test.queries, test.gallery) is not None
    if embedding:
        test_queries = _f32(method.query_vectors(test.queries))
        scores: InnerProduct | PairScores = InnerProduct(test_queries, pool)
    else:
        layout = layout_of(test.gallery)
        scores = PairScores(method, test.queries, pool, layout, device)
    with cpu_threads(offline):
        exact = exact_pass(scores, sizes, EXACT_CHUNK[embedding], positive, ann.TOP * multi, f"{name}: exact search")
        val = encode_stage(setup, load_split(data_dir, "val"), device) if embedding or multi else None
        if multi:  # the val captions' exact top 10: what the candidate search's parameters are chosen on
            val_scores = PairScores(method, val.queries, pool, layout, device)
            val_top = exact_pass(val_scores, sizes, EXACT_CHUNK[False], None, ann.TOP, f"{name}: exact search, val").top
    gallery_frame = pd.DataFrame(
        [
            {"method": name, "seed": seed, "gallery_size": size, "distractors": size - len(test_gallery)}
            | {f"t2v_{k}": v for k, v in summarize(exact.ranks[size]).items() if k != "MnR"}
            | {"bytes_per_video": np.dtype(scale["dtype"]).itemsize * pool.shape[1]}
            | {"encode_videos_per_s": speed if size > len(test_gallery) else None, "threads": threads}
            | {"queries": len(positive), "exact_s": exact.seconds[size], "exact_threads": offline}
            for size in sizes
        ],
        columns=GALLERY_COLUMNS,
    )
    sweeps = [pd.DataFrame(columns=ann.POINT_COLUMNS)]  # none for a pair method that is not multi-vector
    for size in tqdm(sizes if embedding or multi else [], desc=f"{name}: index sweeps"):
        if embedding:
            pieces = [pool[lo : min(hi, size)] for lo, hi in zip([0, *bounds[:-1]], bounds, strict=True) if lo < size]
            sweep = ann.sweep(
                pool[:size],
                _f32(method.query_vectors(val.queries)),
                test_queries,
                positive,
                scale["indexes"],
                scale["target_recall"],
                scale["single_queries"],
                scale["repeats"],
                scale["train_size"],
                seed,
                offline,
                pieces,  # the test split's vectors, then each encode job's: the exact point searches through them
            )
        else:
            gallery = features_of(torch.from_numpy(pool[:size]).to(device), layout)
            val_pair = (val.queries, val_top[size])
            sweep = candidate_sweep(
                method, val_pair, (test.queries, exact.top[size], positive), gallery, config, seed, offline
            )
        sweeps.append(sweep.assign(method=name, seed=seed, gallery_size=size))
    lead = ["method", "seed", "gallery_size"]
    ann_frame = pd.concat(sweeps, ignore_index=True).reindex(columns=[*lead, *ann.POINT_COLUMNS, "threads"])
    ann_frame["threads"] = threads
    out = Path(out_dir)
    resultfiles.write_csv(gallery_frame, out / "gallery.csv")
    resultfiles.write_csv(ann_frame, out / "ann.csv")
    return gallery_frame, ann_frame
