# ruff: noqa: B023  (every closure is timed within its own loop iteration)
"""Query-latency benchmark: what each method costs offline (gallery) and online (per query), raw rows per call.

For one trained method (or a re-ranking pipeline) on the test split, measured separately:

* ``gallery_encode`` - offline video encoding (batch 1 and batched); ``items`` videos per call;
* ``query_encode`` - online text encoding (batch 1 and batched); ``items`` queries per call;
* ``search`` - scoring one query (or a batch) against a gallery of each ``latency.gallery_sizes`` and taking the
  top 10: embedding methods through FAISS (exact ``IndexFlatIP`` over ``gallery_vectors``) and through torch
  (``backend`` faiss / torch; the two must agree on the top 10, ``top10_agreement``); a pair method runs its fusion
  over every video (``backend`` pair) up to ``time_cap_s`` per call, larger galleries are **extrapolated**
  linearly from the largest measured one; re-ranking = FAISS top k over the gallery + the pair scorer on k;
* ``memory`` - bytes stored per gallery video (float32), ``seconds`` empty.

Galleries larger than the test split are **synthetic**: embedding vectors are sampled from a Gaussian fitted to the
real gallery vectors (mean and covariance), pair-method token features are the real ones repeated (the fusion's
cost does not depend on their values). Timing recipe (docs/style.md §7.14): ``warmup`` calls discarded,
``time.perf_counter_ns``, ``torch.cuda.synchronize`` on CUDA, one row per timed call; medians and p95 are computed
by the aggregation (``vtrbench.report.tradeoff``), never here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import torch

from vtrbench.methods import EmbeddingMethod, gallery_floats_per_video

COLUMNS = [
    "method",  # reported method name (a re-ranking variant: rerank@10, rerank@10+dual)
    "seed",
    "stage",  # gallery_encode | query_encode | search | memory
    "backend",  # model | faiss | torch | pair | rerank
    "gallery_size",  # videos searched (search rows; 0 otherwise)
    "batch_size",  # queries or videos per call
    "repeat",  # index of the timed call
    "seconds",  # wall time of the call (s); empty for memory
    "items",  # queries or videos the call handled (per-item time = seconds / items)
    "bytes_per_video",  # memory rows: stored float32 bytes per gallery video
    "threads",
    "device",
    "dtype",
    "measured",  # True: timed; False: extrapolated
    "extrapolated",
    "synthetic_gallery",  # gallery enlarged beyond the real test split (see module docstring)
    "top10_agreement",  # search rows of embedding methods: fraction of queries where FAISS and torch top-10 agree
]
TOP = 10


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_calls(fn: Callable[[], Any], warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` discarded calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        tick = time.perf_counter_ns()
        fn()
        _sync(device)
        out.append((time.perf_counter_ns() - tick) / 1e9)
    return out


def synthetic_gallery(real: np.ndarray, size: int, seed: int = 0) -> tuple[np.ndarray, bool]:
    """``size`` gallery vectors: the real ones first, then draws from a Gaussian fitted to them (float32)."""
    n, d = real.shape
    if size <= n:
        return np.ascontiguousarray(real[:size], dtype=np.float32), False
    mean = real.mean(0)
    cov = np.cov(real, rowvar=False).reshape(d, d)
    vals, vecs = np.linalg.eigh(cov)
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))  # cov = root @ root.T (PSD even when n < d)
    z = np.random.default_rng(seed).standard_normal((size - n, d))
    extra = mean + z @ root.T
    return np.ascontiguousarray(np.concatenate([real, extra]), dtype=np.float32), True


def faiss_index(gallery: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(gallery.shape[1])  # exact inner product (anchors.md §5.3)
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    return index


def torch_topk(queries: torch.Tensor, gallery: torch.Tensor, k: int = TOP) -> torch.Tensor:
    return (queries @ gallery.T).topk(min(k, gallery.shape[0]), dim=1).indices


def topk_agreement(queries: np.ndarray, gallery: np.ndarray, k: int = TOP) -> float:
    """Fraction of queries whose FAISS IndexFlatIP top-k equals torch's (as sets; ties may order differently)."""
    _, faiss_ids = faiss_index(gallery).search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(gallery)))
    torch_ids = torch_topk(torch.from_numpy(queries), torch.from_numpy(gallery), k).numpy()
    return float(np.mean([set(a) == set(b) for a, b in zip(faiss_ids, torch_ids, strict=True)]))


class Recorder:
    """Collects rows with the run's constant columns filled in."""

    def __init__(self, method: str, seed: int, threads: int, device: torch.device):
        self.rows: list[dict[str, Any]] = []
        self.base = {"method": method, "seed": seed, "threads": threads, "device": str(device), "dtype": "float32"}

    def add(self, seconds: list[float], **cols: Any) -> None:
        for i, s in enumerate(seconds):
            self.rows.append({**self.base, "repeat": i, "seconds": s, **cols})

    def frame(self) -> pd.DataFrame:
        defaults = {"gallery_size": 0, "measured": True, "extrapolated": False, "synthetic_gallery": False}
        frame = pd.DataFrame([{**defaults, **r} for r in self.rows])
        return frame.reindex(columns=COLUMNS)


def _features(method: Any, fn: str, *args: Any) -> dict[str, torch.Tensor]:
    return getattr(method, fn)(*args)


@torch.no_grad()
def benchmark(
    config: dict[str, Any], name: str, seed: int, data_dir: str | Path, runs_dir: str | Path, out: str | Path
) -> pd.DataFrame:
    """Measure method ``name`` (weights from ``{runs_dir}/{stage}/seed{seed}/model.pt``); writes ``out`` (CSV)."""
    from vtrbench.data.batches import eval_clips
    from vtrbench.data.records import load_split
    from vtrbench.evaluate import encode_gallery, encode_queries
    from vtrbench.runs import load_trained
    from vtrbench.train import pick_device, split_tokens

    lcfg = config["latency"]
    threads = lcfg["threads"]
    torch.set_num_threads(threads)
    device = pick_device(config["train"]["device"])
    runs_dir = Path(runs_dir)
    entry = config["methods"][name]
    if entry["class"] == "rerank":
        from baselines.rerank import RerankOptions, variant_names

        opts = RerankOptions(**{k: v for k, v in entry.items() if k != "class"})
        stages, names = [opts.first, opts.second], variant_names(name, entry)
    else:
        opts, stages, names = None, [name], [name]
    data = load_split(data_dir, "test")
    frames, big = config["eval"]["frames"], lcfg["batch_size"]
    warmup, repeats, batched_repeats = lcfg["warmup"], lcfg["repeats"], lcfg["batched_repeats"]
    loaded = []
    for stage in stages:
        setup = load_trained(config, stage, seed, data_dir, runs_dir / stage / f"seed{seed}" / "model.pt")
        method = setup.method.to(device).eval()
        tokens = split_tokens(setup, data)
        gallery = encode_gallery(method, data, frames, config["eval"]["batch_size"], device)
        queries = encode_queries(method, tokens, config["eval"]["batch_size"], device)
        loaded.append((method, tokens, gallery, queries))

    rec = Recorder(names[0], seed, threads, device)
    one_clip = eval_clips(data, 0, 1, frames).to(device)
    many_clips = eval_clips(data, 0, min(big, data.num_videos), frames).to(device)
    one_q = [t[np.arange(1)] for _, t, _, _ in loaded]
    many_q = [t[np.arange(min(big, len(data.captions)))] for _, t, _, _ in loaded]

    def encode_v(clips: torch.Tensor) -> Callable[[], None]:
        return lambda: [m.encode_videos(clips) for m, *_ in loaded]

    def encode_t(toks: list) -> Callable[[], None]:
        return lambda: [
            m.encode_texts(t.input_ids.to(device), t.attention_mask.to(device))
            for (m, *_), t in zip(loaded, toks, strict=True)
        ]

    n_many, n_q = many_clips.shape[0], many_q[0].input_ids.shape[0]
    for stage, call, n, (calls_warmup, calls) in (  # single item (latency), then a batch (throughput)
        ("gallery_encode", encode_v(one_clip), 1, (warmup, repeats)),
        ("gallery_encode", encode_v(many_clips), n_many, (1, batched_repeats)),
        ("query_encode", encode_t(one_q), 1, (warmup, repeats)),
        ("query_encode", encode_t(many_q), n_q, (1, batched_repeats)),
    ):
        rec.add(time_calls(call, calls_warmup, calls, device), stage=stage, backend="model", batch_size=n, items=n)
    floats = sum(gallery_floats_per_video(g) for _, _, g, _ in loaded)
    rec.rows.append(
        {
            **rec.base,
            "stage": "memory",
            "backend": "model",
            "batch_size": 1,
            "repeat": 0,
            "items": 1,
            "bytes_per_video": 4 * floats,
        }
    )

    first, _, gallery, queries = loaded[0]
    sizes = [int(s) for s in lcfg["gallery_sizes"]]
    if isinstance(first, EmbeddingMethod):
        real_g = first.gallery_vectors(gallery).float().cpu().numpy()
        real_q = first.query_vectors(queries).float().cpu().numpy()
        qb = np.ascontiguousarray(real_q[:big])
        for size in sizes:
            vectors, synthetic = synthetic_gallery(real_g, size, seed)
            index, tg = faiss_index(vectors), torch.from_numpy(vectors).to(device)
            agree = topk_agreement(qb, vectors)
            common = {"stage": "search", "gallery_size": size, "synthetic_gallery": synthetic, "top10_agreement": agree}
            if opts is None:
                for backend, single, batched in (
                    ("faiss", lambda: index.search(qb[:1], TOP), lambda: index.search(qb, TOP)),
                    (
                        "torch",
                        lambda: torch_topk(torch.from_numpy(qb[:1]).to(device), tg),
                        lambda: torch_topk(torch.from_numpy(qb).to(device), tg),
                    ),
                ):
                    rec.add(
                        time_calls(single, warmup, repeats, device), backend=backend, batch_size=1, items=1, **common
                    )
                    rec.add(
                        time_calls(batched, 1, batched_repeats, device),
                        backend=backend,
                        batch_size=len(qb),
                        items=len(qb),
                        **common,
                    )
            else:  # re-ranking: FAISS top k, then the pair scorer on those k (real token features, index mod n)
                pair, _, pg, pq = loaded[1]
                n_real = next(iter(pg.values())).shape[0]
                for k, variant in zip(_repeat_k(opts.k, opts.fuse), names, strict=True):

                    def call(k: int = k) -> None:
                        _, ids = index.search(qb[:1], k)
                        cand = torch.from_numpy(ids[0] % n_real).to(device)
                        pair.score({key: v[:1] for key, v in pq.items()}, {key: v[cand] for key, v in pg.items()})

                    rec.base["method"] = variant
                    rec.add(
                        time_calls(call, warmup, repeats, device), backend="rerank", batch_size=1, items=1, **common
                    )
                rec.base["method"] = names[0]
    else:  # a pair method: one query against every video, up to the time cap, then linear extrapolation
        n_real = next(iter(gallery.values())).shape[0]
        one = {k: v[:1] for k, v in queries.items()}
        measured: tuple[int, float] | None = None
        for size in sizes:
            predicted = measured[1] * size / measured[0] if measured else 0.0
            common = {"stage": "search", "backend": "pair", "gallery_size": size, "synthetic_gallery": size > n_real}
            if measured is None or predicted <= lcfg["time_cap_s"]:
                idx = torch.arange(size, device=device) % n_real
                g = {k: v[idx] for k, v in gallery.items()}
                secs = time_calls(lambda g=g: first.score(one, g), 1, max(3, repeats // 5), device)
                rec.add(secs, batch_size=1, items=1, **common)
                measured = (size, float(np.median(secs)))
            else:
                rec.add([predicted], batch_size=1, items=1, measured=False, extrapolated=True, **common)
    frame = rec.frame()
    if opts is not None:  # every variant shares the encoding and memory rows
        shared = frame[frame.stage != "search"]
        frame = pd.concat([frame] + [shared.assign(method=v) for v in names[1:]], ignore_index=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(out)
    return frame


def _repeat_k(ks: list[int], fusions: list[str]) -> list[int]:
    """The depth of each variant in ``variant_names`` order (k outer, fusion inner)."""
    return [int(k) for k in ks for _ in fusions]
