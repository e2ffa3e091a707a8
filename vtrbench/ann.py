"""Approximate-nearest-neighbour indexes over a method's gallery, measured the way ann-benchmarks measures them.

Each index family (exact flat, HNSW, IVF-Flat, IVF-PQ) is built once per build parameter and searched at every
search parameter; a row reports recall of the exact top 10 against queries per second, with build time and bytes
per video. Similarity is the inner product (vectors need not be normalised). Parameters are chosen on the val
queries only and reported on the test queries, so the choice never sees what it is scored on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import faiss
import numpy as np
import pandas as pd
import torch

from vtrbench.timing import time_calls

TOP = 10
FAMILIES = ("flat", "hnsw", "ivf_flat", "ivf_pq")

CPU = torch.device("cpu")
MIN_POINTS_PER_CENTROID = 39  # FAISS k-means warns below this many training points per centroid
PQ_CENTROIDS = 256  # one 8-bit sub-quantizer: PQ training needs at least this many points
_LABEL_ORDER = {"M": 0, "nlist": 1, "code_bytes": 2}  # coarse before fine in labels


class Searchable(Protocol):
    """What :func:`measure` times: a FAISS index, or a search built on one (``vtrbench.multivector``)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class BuildPoint:
    """One index to build: its family and its sorted build parameters (() for flat)."""

    family: str
    params: tuple[tuple[str, int], ...]

    def label(self) -> str:
        """Family then parameters, coarse first: "flat", "hnsw M=32", "ivf_pq nlist=1024 code_bytes=16"."""
        return " ".join([self.family, *_param_parts(self)])


def _param_parts(point: BuildPoint) -> list[str]:
    """["nlist=1024", "code_bytes=16"]: the parameters in label order."""
    ordered = sorted(point.params, key=lambda item: _LABEL_ORDER[item[0]])
    return [f"{name}={value}" for name, value in ordered]


def _point(family: str, **params: int) -> BuildPoint:
    """A build point with its parameters sorted, so equal points compare equal."""
    return BuildPoint(family, tuple(sorted(params.items())))


def _as_f32(x: np.ndarray) -> np.ndarray:
    """C-contiguous float32: the only layout FAISS accepts."""
    return np.ascontiguousarray(x, dtype=np.float32)


def build_points(indexes: dict, n: int, dim: int) -> list[BuildPoint]:
    """The build grid of ``indexes`` (config ``scale.indexes``) for n vectors of width dim, flat first.

    Points the gallery cannot support are skipped: nlist > n // 39 (too few training points per centroid),
    code_bytes not dividing dim (each byte codes dim / code_bytes dims), and IVF-PQ under 256 vectors.
    """
    points = [_point("flat")]
    points += [_point("hnsw", M=m) for m in indexes.get("hnsw", {}).get("M", [])]
    max_nlist = n // MIN_POINTS_PER_CENTROID
    ivf_flat = indexes.get("ivf_flat", {})
    points += [_point("ivf_flat", nlist=nl) for nl in ivf_flat.get("nlist", []) if 1 <= nl <= max_nlist]
    ivf_pq = indexes.get("ivf_pq", {})
    if n >= PQ_CENTROIDS:
        points += [
            _point("ivf_pq", nlist=nl, code_bytes=cb)
            for nl in ivf_pq.get("nlist", [])
            for cb in ivf_pq.get("code_bytes", [])
            if 1 <= nl <= max_nlist and cb <= dim and dim % cb == 0
        ]
    return points


def search_values(point: BuildPoint, indexes: dict) -> list[dict[str, int]]:
    """The search-time parameters of a build point ([{}] for flat; nprobe above nlist dropped)."""
    if point.family == "hnsw":
        return [{"ef_search": ef} for ef in indexes["hnsw"]["ef_search"]]
    if point.family in ("ivf_flat", "ivf_pq"):
        nlist = dict(point.params)["nlist"]
        return [{"nprobe": p} for p in indexes[point.family]["nprobe"] if p <= nlist]
    return [{}]


def _empty_index(point: BuildPoint, dim: int, indexes: dict) -> faiss.Index:
    """The untrained index of a build point, inner product everywhere."""
    params = dict(point.params)
    ip = faiss.METRIC_INNER_PRODUCT
    if point.family == "flat":
        return faiss.IndexFlatIP(dim)
    if point.family == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["M"], ip)
        index.hnsw.efConstruction = indexes["hnsw"].get("ef_construction", 40)
        return index
    quantizer = faiss.IndexFlatIP(dim)  # kept alive by the IVF index's Python wrapper
    if point.family == "ivf_flat":
        return faiss.IndexIVFFlat(quantizer, dim, params["nlist"], ip)
    return faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["code_bytes"], 8, ip)


def build(
    point: BuildPoint, vectors: np.ndarray, indexes: dict, train_size: int, seed: int
) -> tuple[faiss.Index, float]:
    """The index with every vector added (ids 0..n-1) and its build seconds (training + adding).

    IVF trains on a seeded sample of at most ``train_size`` vectors, so build time stays bounded at 1M vectors.
    """
    vectors = _as_f32(vectors)
    index = _empty_index(point, vectors.shape[1], indexes)
    sample = None
    if not index.is_trained:
        index.cp.seed = seed
        rows = np.random.default_rng(seed).choice(len(vectors), size=min(train_size, len(vectors)), replace=False)
        sample = vectors[np.sort(rows)]
    tick = time.perf_counter()
    if sample is not None:
        index.train(sample)
    index.add(vectors)
    return index, time.perf_counter() - tick


def configure(index: faiss.Index, point: BuildPoint, search: dict[str, int]) -> None:
    """Set the search-time parameter of ``search`` on an index of ``point``'s family."""
    if point.family == "hnsw":
        index.hnsw.efSearch = search["ef_search"]
    elif point.family in ("ivf_flat", "ivf_pq"):
        index.nprobe = search["nprobe"]


def index_bytes(index: faiss.Index) -> int:
    """Serialized size: what the index costs in memory, links and codes included (a sharded index: its shards')."""
    if isinstance(index, faiss.IndexShards):
        return sum(index_bytes(faiss.downcast_index(index.at(i))) for i in range(index.count()))
    return int(faiss.serialize_index(index).nbytes)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = TOP) -> np.ndarray:
    """[q, k] ids of the exact top k by inner product: the ground truth recall is measured against."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(_as_f32(vectors))
    return index.search(_as_f32(queries), k)[1]


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / k (ann-benchmarks' recall@k); ids of -1 count as misses."""
    hits = (found[:, :, None] == exact[:, None, :]) & (found[:, :, None] >= 0)  # [q, k_found, k]
    return float(hits.any(axis=1).sum(axis=1).mean() / exact.shape[1])


def sharded_flat(shards: list[np.ndarray]) -> faiss.Index:
    """Exact search over a gallery stored as shards (one encode job each), ids global (shard offset + row)."""
    dim = shards[0].shape[1]
    index = faiss.IndexShards(dim, False, True)  # threaded=False, successive_ids=True
    for shard in shards:
        part = faiss.IndexFlatIP(dim)
        part.add(_as_f32(shard))
        index.add_shard(part)  # the Python wrapper keeps a reference to each shard
    return index


def _qps(index: Searchable, queries: np.ndarray, repeats: int) -> float:
    """Queries per second of all queries in one search call, median over ``repeats`` calls after one warm-up."""
    seconds = time_calls(partial(index.search, queries, TOP), 1, repeats, CPU)
    return len(queries) / float(np.median(seconds))


def _single_ms(index: Searchable, queries: np.ndarray) -> np.ndarray:
    """Milliseconds of each query searched alone, one call each: the latency one user sees."""
    calls = [partial(index.search, queries[i : i + 1], TOP) for i in range(len(queries))]
    return np.array([time_calls(call, 0, 1, CPU)[0] for call in calls]) * 1e3


def measure(
    index: Searchable,
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    single_queries: int,
    repeats: int,
    val_index: Searchable | None = None,
) -> dict[str, float]:
    """Recall and speed of the configured index: val (queries, exact), test (queries, exact, positive). ``val_index``:
    the same search over the val captions, where queries are not vectors the one index takes (None: ``index``)."""
    val_queries, val_exact = val
    test_queries, test_exact, test_positive = test
    val_index = index if val_index is None else val_index
    found = index.search(test_queries, TOP)[1]
    single = _single_ms(index, test_queries[:single_queries])
    return {
        "val_recall10": recall_at(val_index.search(val_queries, TOP)[1], val_exact),
        "val_qps": _qps(val_index, val_queries, repeats),
        "test_recall10": recall_at(found, test_exact),
        "test_R@1": 100.0 * float(np.mean(found[:, 0] == test_positive)),
        "p50_ms": float(np.percentile(single, 50)),
        "p99_ms": float(np.percentile(single, 99)),
        "qps": _qps(index, test_queries, repeats),
    }


def choose(frame: pd.DataFrame, target: float) -> pd.Series:
    """Per family, the fastest row on val reaching ``target`` val recall, else the row of highest val recall.

    Reads only val columns (family, val_recall10, val_qps), so the test rows report a choice made without them.
    """
    chosen = pd.Series(False, index=frame.index)
    for _, group in frame.groupby("family", sort=False):
        reaching = group[group["val_recall10"] >= target]
        best = reaching["val_qps"].idxmax() if len(reaching) else group["val_recall10"].idxmax()
        chosen[best] = True
    return chosen


POINT_COLUMNS = [
    "family",
    "build",
    "search",
    "build_s",
    "bytes_per_video",
    "val_recall10",
    "val_qps",
    "test_recall10",
    "test_R@1",
    "p50_ms",
    "p99_ms",
    "qps",
    "chosen",
]  # one row of :func:`sweep` per build point x search value


def sweep(
    vectors: np.ndarray,
    val_queries: np.ndarray,
    test_queries: np.ndarray,
    test_positive: np.ndarray,
    indexes: dict,
    target_recall: float,
    single_queries: int,
    repeats: int,
    train_size: int,
    seed: int,
    build_threads: int | None = None,
    shards: list[np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per build point x search value: recall against speed on val and test, build cost, and the choice.

    ``test_positive`` [q_test] is the gallery row of each test query's matching video, so ``test_R@1`` is the
    end task's t2v R@1 (%) through the index. Builds are offline work: they run on ``build_threads`` FAISS
    threads (None: the current setting), searches on the threads set when the sweep was called. ``shards``: the
    gallery as its encode jobs wrote it (consecutive row blocks of ``vectors``); the exact point is then searched
    through :func:`sharded_flat` over them, as a gallery too large for one machine would be, and its recall of the
    exact top 10 (computed on one index) checks that the two agree.
    """
    search_threads = faiss.omp_get_max_threads()
    vectors, val_queries, test_queries = _as_f32(vectors), _as_f32(val_queries), _as_f32(test_queries)
    val = (val_queries, exact_top(vectors, val_queries))
    test = (test_queries, exact_top(vectors, test_queries), np.asarray(test_positive))
    rows = []
    for point in build_points(indexes, len(vectors), vectors.shape[1]):
        faiss.omp_set_num_threads(build_threads or search_threads)
        if point.family == "flat" and shards is not None:
            tick = time.perf_counter()
            index = sharded_flat(shards)
            build_s = time.perf_counter() - tick
        else:
            index, build_s = build(point, vectors, indexes, train_size, seed)
        faiss.omp_set_num_threads(search_threads)
        per_video = index_bytes(index) / len(vectors)
        for search in search_values(point, indexes):
            configure(index, point, search)
            rows.append(
                {
                    "family": point.family,
                    "build": " ".join(_param_parts(point)),
                    "search": " ".join(f"{name}={value}" for name, value in search.items()),
                    "build_s": build_s,
                    "bytes_per_video": per_video,
                    **measure(index, val, test, single_queries, repeats),
                }
            )
    frame = pd.DataFrame(rows)
    frame["chosen"] = choose(frame, target_recall)
    return frame[POINT_COLUMNS]


def pareto(frame: pd.DataFrame, recall: str = "test_recall10", speed: str = "qps") -> pd.Series:
    """Bool per row: on the ann-benchmarks frontier (no other row at least as good on both, better on one)."""
    r, s = frame[recall].to_numpy(), frame[speed].to_numpy()
    r_row, r_other, s_row, s_other = r[:, None], r[None, :], s[:, None], s[None, :]
    at_least = (r_other >= r_row) & (s_other >= s_row)
    dominates = at_least & ((r_other > r_row) | (s_other > s_row))  # [i, j]: row j dominates row i
    return pd.Series(~dominates.any(axis=1), index=frame.index)
