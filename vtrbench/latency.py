# ruff: noqa: B023  (every closure is timed within its own loop iteration)
"""Query-latency benchmark: what each method costs offline (gallery) and online (per query), raw rows per call.

For one trained method on the test split, through the method interface only, measured separately:

* ``gallery_encode`` - offline video encoding (batch 1 and batched); ``items`` videos per call;
* ``query_encode`` - online text encoding (batch 1 and batched); ``items`` queries per call;
* ``search`` - one query (or a batch) against a gallery of each ``latency.gallery_sizes``, taking the top 10:
  an embedding method through FAISS (exact ``IndexFlatIP`` over ``gallery_vectors``) and through torch
  (``backend`` faiss / torch; they must agree on the top 10, ``top10_agreement``); a pair method scores every
  video (``backend`` pair) up to ``time_cap_s`` per call, larger galleries are **extrapolated** linearly from the
  largest measured one; a multi-vector pair method (``PairMethod.multi_vectors``) also through its candidate stage
  (``backend`` multivector: per-frame FAISS index, each token's nearest frames, exact scoring of the top ``k``,
  ``vtrbench.multivector``); a re-ranker (``backend`` rerank) = FAISS top k of its first stage + its pair method on
  those k, one row set per depth ``k`` of its options;
* ``memory`` - bytes stored per gallery video (float32), ``seconds`` empty.

Pair and re-ranking rows carry ``flops_per_query`` (the pair scorer's floating-point operations for one query,
counted by ``torch.utils.flop_counter`` on the real features) and ``matmul_gflops`` (this process's fp32 matmul
rate), so the tables can say how far the model-based side is from its compute floor.

Galleries larger than the test split: pair-method features are the real ones repeated (the cost of a joint pass
does not depend on the values); embedding search there is the gallery-scale step's (``vtrbench.scale``: real
distractor videos encoded by the method). Only with ``latency.sampled_galleries: true`` does this step search
embedding vectors sampled from a Gaussian fitted to the real gallery (mean and covariance), rows labelled
``synthetic_gallery``: they say nothing about how an approximate index or the end task behaves.
Timing: ``vtrbench.timing`` (warm-up discarded, one raw row per call).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from vtrbench import resultfiles
from vtrbench.data.batches import Tokens, eval_clips
from vtrbench.data.records import SplitData, load_split
from vtrbench.device import autocast, start, uses_bf16
from vtrbench.encoding import Encoded, encode_stage
from vtrbench.methods import EmbeddingMethod, Features, PairMethod, gallery_floats_per_video
from vtrbench.multivector import FrameIndex, MultiVectors, candidate_search
from vtrbench.registry import kind_of
from vtrbench.rerank import options_of
from vtrbench.runs import load_trained
from vtrbench.timing import matmul_gflops, time_calls

COLUMNS = [
    "method",  # reported method name
    "seed",
    "stage",  # gallery_encode | query_encode | search | memory
    "backend",  # model | faiss | torch | pair | multivector | rerank
    "k",  # re-ranking depth (rerank rows) or videos scored exactly after the candidate stage (multivector rows)
    "gallery_size",  # videos searched (search rows; 0 otherwise)
    "batch_size",  # queries or videos per call
    "repeat",  # index of the timed call
    "seconds",  # wall time of the call (s); empty for memory
    "items",  # queries or videos the call handled (per-item time = seconds / items)
    "bytes_per_video",  # memory rows: stored float32 bytes per gallery video
    "flops_per_query",  # pair / rerank search rows: the pair scorer's FLOPs for one query at this gallery (or k)
    "matmul_gflops",  # pair / rerank search rows: this process's fp32 matmul rate (the FLOP floor's unit)
    "threads",
    "device",
    "dtype",
    "measured",  # True: timed; False: extrapolated
    "extrapolated",
    "synthetic_gallery",  # gallery enlarged beyond the real test split (see module docstring)
    "top10_agreement",  # embedding search rows: FAISS and torch top-10 agree; multivector rows: the candidate
    # path's top 10 equals exact search's (fraction of test captions)
]
TOP = 10
CHUNK = 1 << 20  # sampled gallery vectors drawn per step


def synthetic_gallery(real: np.ndarray, size: int, seed: int = 0) -> tuple[np.ndarray, bool]:
    """``size`` gallery vectors: the real ones first, then draws from a Gaussian fitted to them, built in float32
    (the index's own type: a float64 draw would need twice the memory of the gallery it makes)."""
    n, d = real.shape
    if size <= n:
        return np.ascontiguousarray(real[:size], dtype=np.float32), False
    mean = real.mean(0).astype(np.float32)
    cov = np.cov(real, rowvar=False).reshape(d, d)
    vals, vecs = np.linalg.eigh(cov)
    root = (vecs * np.sqrt(np.clip(vals, 0.0, None))).astype(np.float32)  # cov = root @ root.T (PSD when n < d)
    out = np.empty((size, d), dtype=np.float32)
    out[:n] = real
    rng = np.random.default_rng(seed)
    for first in range(n, size, CHUNK):  # one chunk of draws at a time
        stop = min(first + CHUNK, size)
        out[first:stop] = mean + rng.standard_normal((stop - first, d), dtype=np.float32) @ root.T
    return out, True


def faiss_index(gallery: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(gallery.shape[1])  # exact inner product: the same top 10 as torch's matmul
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    return index


def torch_topk(queries: torch.Tensor, gallery: torch.Tensor, k: int = TOP) -> torch.Tensor:
    return (queries @ gallery.T).topk(min(k, gallery.shape[0]), dim=1).indices


def topk_agreement(queries: np.ndarray, gallery: np.ndarray, k: int = TOP) -> float:
    """Fraction of queries whose FAISS IndexFlatIP top-k equals torch's (as sets; ties may order differently)."""
    _, faiss_ids = faiss_index(gallery).search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(gallery)))
    torch_ids = torch_topk(torch.from_numpy(queries), torch.from_numpy(gallery), k).numpy()
    return float(np.mean([set(a) == set(b) for a, b in zip(faiss_ids, torch_ids, strict=True)]))


def pair_flops(method: PairMethod, query: Features, gallery: Features, candidates: torch.Tensor) -> int:
    """Floating-point operations of scoring ``candidates`` [1, n] for one query (counted, not estimated)."""
    with FlopCounterMode(display=False) as counter:
        method.score_candidates(query, gallery, candidates)
    return int(counter.get_total_flops())


class Recorder:
    """Collects rows with the run's constant columns filled in."""

    def __init__(self, method: str, seed: int, threads: int, device: torch.device, dtype: str = "float32"):
        self.rows: list[dict[str, Any]] = []
        self.base = {"method": method, "seed": seed, "threads": threads, "device": str(device), "dtype": dtype}

    def add(self, seconds: list[float], **cols: Any) -> None:
        for i, s in enumerate(seconds):
            self.rows.append({**self.base, "repeat": i, "seconds": s, **cols})

    def frame(self) -> pd.DataFrame:
        defaults = {"gallery_size": 0, "k": 0, "measured": True, "extrapolated": False, "synthetic_gallery": False}
        frame = pd.DataFrame([{**defaults, **r} for r in self.rows])
        return frame.reindex(columns=COLUMNS)


@dataclass
class Settings:
    warmup: int
    repeats: int
    batched_repeats: int
    batch: int
    time_cap_s: float
    sizes: list[int]  # pair methods: every size; embedding search: up to the test split unless `sampled`
    device: torch.device
    seed: int
    amp: bool = False  # train.amp: the encoders run under the autocast they were evaluated with
    sampled: bool = False  # latency.sampled_galleries: embedding galleries past the test split drawn from a Gaussian

    def embedding_sizes(self, n_real: int) -> list[int]:
        """The gallery sizes an embedding search is timed at here (larger real galleries: ``vtrbench.scale``)."""
        return [n for n in self.sizes if self.sampled or n <= n_real]


def _encode_rows(rec: Recorder, loaded: list[Encoded], data: SplitData, frames: int, s: Settings) -> None:
    """Offline and online encoding of every stage (single item: latency; a batch: throughput), and memory."""
    device = s.device
    one_clip = eval_clips(data, 0, 1, frames).to(device)
    many_clips = eval_clips(data, 0, min(s.batch, data.num_videos), frames).to(device)
    one_q = [stage.tokens[np.arange(1)] for stage in loaded]
    many_q = [stage.tokens[np.arange(min(s.batch, len(data.captions)))] for stage in loaded]

    def encode_v(clips: torch.Tensor) -> Callable[[], None]:
        def call() -> None:
            with autocast(device, s.amp):
                for stage in loaded:
                    stage.method.encode_videos(clips)

        return call

    def encode_t(toks: list[Tokens]) -> Callable[[], None]:
        def call() -> None:
            with autocast(device, s.amp):
                for stage, t in zip(loaded, toks, strict=True):
                    stage.method.encode_texts(t.input_ids.to(device), t.attention_mask.to(device))

        return call

    n_many, n_q = many_clips.shape[0], many_q[0].input_ids.shape[0]
    for stage, call, n, (calls_warmup, calls) in (
        ("gallery_encode", encode_v(one_clip), 1, (s.warmup, s.repeats)),
        ("gallery_encode", encode_v(many_clips), n_many, (1, s.batched_repeats)),
        ("query_encode", encode_t(one_q), 1, (s.warmup, s.repeats)),
        ("query_encode", encode_t(many_q), n_q, (1, s.batched_repeats)),
    ):
        rec.add(time_calls(call, calls_warmup, calls, device), stage=stage, backend="model", batch_size=n, items=n)
    floats = sum(gallery_floats_per_video(stage.gallery) for stage in loaded)
    rec.rows.append(
        {**rec.base, "stage": "memory", "backend": "model", "batch_size": 1, "repeat": 0, "items": 1}
        | {"bytes_per_video": 4 * floats}
    )


def _embedding_rows(rec: Recorder, stage: Encoded, s: Settings) -> None:
    """FAISS and torch top-10 search at each gallery size (single query and a batch)."""
    method = stage.method
    assert isinstance(method, EmbeddingMethod)
    real_g = method.gallery_vectors(stage.gallery).float().cpu().numpy()
    qb = np.ascontiguousarray(method.query_vectors(stage.queries).float().cpu().numpy()[: s.batch])
    for size in s.embedding_sizes(len(real_g)):
        vectors, synthetic = synthetic_gallery(real_g, size, s.seed)
        index, tg = faiss_index(vectors), torch.from_numpy(vectors).to(s.device)
        common = {"stage": "search", "gallery_size": size, "synthetic_gallery": synthetic}
        common["top10_agreement"] = topk_agreement(qb, vectors)
        for backend, single, batched in (
            ("faiss", lambda: index.search(qb[:1], TOP), lambda: index.search(qb, TOP)),
            (
                "torch",
                lambda: torch_topk(torch.from_numpy(qb[:1]).to(s.device), tg),
                lambda: torch_topk(torch.from_numpy(qb).to(s.device), tg),
            ),
        ):
            rec.add(time_calls(single, s.warmup, s.repeats, s.device), backend=backend, batch_size=1, items=1, **common)
            rec.add(
                time_calls(batched, 1, s.batched_repeats, s.device),
                backend=backend,
                batch_size=len(qb),
                items=len(qb),
                **common,
            )


def _pair_rows(rec: Recorder, stage: Encoded, s: Settings, gflops: float) -> None:
    """One query against every video, up to the time cap, then linear extrapolation."""
    method = stage.method
    assert isinstance(method, PairMethod)
    n_real = next(iter(stage.gallery.values())).shape[0]
    one = {k: v[:1] for k, v in stage.queries.items()}
    per_pair = pair_flops(method, one, stage.gallery, torch.arange(min(8, n_real), device=s.device)[None]) / min(
        8, n_real
    )
    measured: tuple[int, float] | None = None
    for size in s.sizes:
        predicted = measured[1] * size / measured[0] if measured else 0.0
        common = {"stage": "search", "backend": "pair", "gallery_size": size, "synthetic_gallery": size > n_real}
        common |= {"flops_per_query": per_pair * size, "matmul_gflops": gflops}
        if measured is None or predicted <= s.time_cap_s:
            idx = torch.arange(size, device=s.device) % n_real
            g = {k: v[idx] for k, v in stage.gallery.items()}
            secs = time_calls(lambda g=g: method.score(one, g), 1, max(3, s.repeats // 5), s.device)
            rec.add(secs, batch_size=1, items=1, **common)
            measured = (size, float(np.median(secs)))
        else:
            rec.add([predicted], batch_size=1, items=1, measured=False, extrapolated=True, **common)


def _multivector_rows(
    rec: Recorder, stage: Encoded, view: MultiVectors, s: Settings, ks: list[int], depth: int
) -> None:
    """A multi-vector method through its candidate stage (``vtrbench.multivector``): one FAISS index over every frame
    vector of each gallery size, each caption token's ``depth`` nearest frames, exact scoring of the top k videos.
    ``top10_agreement``: the share of test captions whose top 10 this way equals exact search's (real gallery)."""
    method = stage.method
    assert isinstance(method, PairMethod)
    n_real = view.frames.shape[0]
    exact = method.score(stage.queries, stage.gallery).topk(min(TOP, n_real), dim=1).indices.cpu().numpy()
    one = {key: v[:1] for key, v in stage.queries.items()}
    tokens, weights = view.tokens[:1].float().cpu().numpy(), view.weights[:1].float().cpu().numpy()
    for k in ks:
        cand, scores = candidate_search(method.score_candidates, stage.queries, stage.gallery, view, depth, k)
        top = torch.gather(cand, 1, scores.topk(min(TOP, cand.shape[1]), dim=1).indices).cpu().numpy()
        agreement = float(np.mean([set(a) == set(b) for a, b in zip(top, exact, strict=True)]))
        for size in s.sizes:
            idx = torch.arange(size, device=s.device) % n_real
            index = FrameIndex(view.frames[idx].float().cpu().numpy())
            g = {key: v[idx] for key, v in stage.gallery.items()}

            def call(index: FrameIndex = index, g: Features = g, k: int = k) -> None:
                candidates = torch.from_numpy(index.candidates(tokens, weights, depth, k)).to(s.device)
                method.score_candidates(one, g, candidates)

            common = {"stage": "search", "backend": "multivector", "k": k, "gallery_size": size}
            common |= {"synthetic_gallery": size > n_real, "top10_agreement": agreement}
            rec.add(time_calls(call, s.warmup, s.repeats, s.device), batch_size=1, items=1, **common)


def _rerank_rows(rec: Recorder, first: Encoded, second: Encoded, ks: list[int], s: Settings, gflops: float) -> None:
    """FAISS top k of the first stage over each gallery size, then the pair method on those k (real features)."""
    assert isinstance(first.method, EmbeddingMethod) and isinstance(second.method, PairMethod)
    pair = second.method
    real_g = first.method.gallery_vectors(first.gallery).float().cpu().numpy()
    q1 = np.ascontiguousarray(first.method.query_vectors(first.queries).float().cpu().numpy()[:1])
    q2 = {key: v[:1] for key, v in second.queries.items()}
    n_real = next(iter(second.gallery.values())).shape[0]
    for size in s.embedding_sizes(len(real_g)):
        vectors, synthetic = synthetic_gallery(real_g, size, s.seed)
        index = faiss_index(vectors)
        for k in ks:

            def call(k: int = k) -> None:
                _, ids = index.search(q1, k)
                cand = torch.from_numpy(ids % n_real).to(s.device)  # [1, k]
                pair.score_candidates(q2, second.gallery, cand)

            flops = pair_flops(pair, q2, second.gallery, torch.arange(min(k, n_real), device=s.device)[None])
            flops *= k / min(k, n_real)
            common = {"stage": "search", "backend": "rerank", "k": k, "gallery_size": size}
            common |= {"synthetic_gallery": synthetic, "flops_per_query": flops, "matmul_gflops": gflops}
            rec.add(time_calls(call, s.warmup, s.repeats, s.device), batch_size=1, items=1, **common)


@torch.no_grad()
def benchmark(
    config: dict[str, Any],
    name: str,
    seed: int,
    data_dir: str | Path,
    models: list[str | Path],
    out: str | Path,
    tokens_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Measure method ``name``; ``models``: its ``model.pt`` (a re-ranker: its first and second stage's). Writes
    ``out`` (CSV, ``COLUMNS``)."""
    lcfg = config["latency"]
    device = start(lcfg["threads"], config["train"]["device"])
    faiss.omp_set_num_threads(lcfg["threads"])  # FAISS's OpenMP pool defaults to every core: same budget as torch
    entry = config["methods"][name]
    two_stage = kind_of(entry["class"]) == "rerank"
    stages = [options_of(entry).first, options_of(entry).second] if two_stage else [name]
    if len(models) != len(stages):
        raise ValueError(
            f"latency of {name!r} needs {len(stages)} model.pt file(s) ({', '.join(stages)}), got {len(models)}"
        )
    data = load_split(data_dir, "test")
    loaded = [
        encode_stage(load_trained(config, m, seed, data_dir, p, tokens_dir), data, device)
        for m, p in zip(stages, models, strict=True)
    ]
    settings = Settings(
        lcfg["warmup"],
        lcfg["repeats"],
        lcfg["batched_repeats"],
        lcfg["batch_size"],
        lcfg["time_cap_s"],
        [int(x) for x in lcfg["gallery_sizes"]],
        device,
        seed,
        config["train"]["amp"],
        lcfg["sampled_galleries"],
    )
    encoders = "bfloat16" if uses_bf16(device, config["train"]["amp"]) else "float32"  # as encode_stage ran
    rec = Recorder(name, seed, lcfg["threads"], device, encoders)
    _encode_rows(rec, loaded, data, config["eval"]["frames"], settings)
    if two_stage:
        gflops = matmul_gflops(device)
        _rerank_rows(rec, loaded[0], loaded[1], [int(k) for k in options_of(entry).k], settings, gflops)
    elif isinstance(loaded[0].method, EmbeddingMethod):
        _embedding_rows(rec, loaded[0], settings)
    else:
        _pair_rows(rec, loaded[0], settings, matmul_gflops(device))
        if (view := loaded[0].method.multi_vectors(loaded[0].queries, loaded[0].gallery)) is not None:
            ks = [int(k) for k in lcfg["multivector_k"]]
            _multivector_rows(rec, loaded[0], view, settings, ks, lcfg["multivector_depth"])
    frame = rec.frame()
    resultfiles.write_csv(frame, out)
    return frame
