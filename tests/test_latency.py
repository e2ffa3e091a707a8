"""Latency benchmark: FAISS vs torch agreement, the synthetic gallery and the latency.csv schema (no timed asserts)."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd
import pytest
import torch

from vtrbench import latency
from vtrbench.encoding import Encoded
from vtrbench.latency import (
    COLUMNS,
    Recorder,
    Settings,
    benchmark,
    faiss_index,
    synthetic_gallery,
    topk_agreement,
    torch_topk,
)
from vtrbench.methods import PairMethod
from vtrbench.report.tradeoff import ONLINE_COLUMNS, latency_stats, online_latency
from vtrbench.train import train


def test_faiss_and_torch_return_the_same_top10():
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((500, 32)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = rng.standard_normal((20, 32)).astype(np.float32)
    _, ids = faiss_index(gallery).search(queries, 10)
    assert (ids == torch_topk(torch.from_numpy(queries), torch.from_numpy(gallery)).numpy()).all()
    assert topk_agreement(queries, gallery) == 1.0


def test_synthetic_gallery_keeps_the_real_vectors_and_the_moments():
    real = np.random.default_rng(1).standard_normal((300, 8)) * np.arange(1, 9) + 5
    small, synthetic = synthetic_gallery(real, 100)
    assert not synthetic and np.allclose(small, real[:100])
    big, synthetic = synthetic_gallery(real, 5000)
    assert synthetic and big.shape == (5000, 8) and np.allclose(big[:300], real)
    assert np.allclose(big.mean(0), real.mean(0), atol=0.5) and np.allclose(big.std(0), real.std(0), rtol=0.15)


def test_benchmark_writes_the_documented_rows(smoke_config, smoke_data, tmp_path):
    config = smoke_config
    config["train"]["steps"] = 2
    runs = tmp_path / "runs"
    train(config, "dual_mean", 0, smoke_data, runs / "dual_mean" / "seed0")
    config["latency"].update(gallery_sizes=[4, 50], warmup=1, repeats=2, batched_repeats=1, batch_size=4, threads=1)
    faiss.omp_set_num_threads(2)  # what FAISS's pool holds on a 2-core machine before the benchmark
    frame = benchmark(
        config, "dual_mean", 0, smoke_data, [runs / "dual_mean" / "seed0" / "model.pt"], tmp_path / "latency.csv"
    )
    on_disk = pd.read_csv(tmp_path / "latency.csv")
    assert list(on_disk.columns) == COLUMNS and len(on_disk) == len(frame)
    assert set(on_disk.stage) == {"gallery_encode", "query_encode", "search", "memory"}
    search = on_disk[on_disk.stage == "search"]
    assert set(search.backend) == {"faiss", "torch"} and (search.top10_agreement == 1.0).all()
    assert search[search.gallery_size == 50].synthetic_gallery.all()  # beyond the 8 test videos
    assert (on_disk[on_disk.stage != "memory"].seconds > 0).all()
    assert faiss.omp_get_max_threads() == 1 and (on_disk.threads == 1).all()  # FAISS searched on latency.threads
    assert on_disk[on_disk.stage == "memory"].bytes_per_video.iloc[0] == 4 * 16  # dim 16, float32
    stats = latency_stats(on_disk)
    assert {"median_s", "p95_s", "per_item_ms", "throughput_per_s"} <= set(stats.columns)


class OneMatmulPair(PairMethod):
    """A pair scorer of one product per query; it records how many videos each scoring call was given."""

    def __init__(self):
        torch.nn.Module.__init__(self)  # no backbones: nothing to train
        self.scored: list[int] = []

    def score_candidates(self, queries, gallery, candidates):
        self.scored.append(candidates.shape[1])
        return queries["text"] @ gallery["video"][candidates[0]].T


def test_pair_search_beyond_the_time_cap_is_extrapolated_from_the_largest_measured_gallery(monkeypatch):
    """A call costs 1 ms + 1 ms per video (a fake clock). Cap 12 ms: 4 videos (5 ms) and 8 (predicted 10, measured
    9 ms) are timed; 16 is predicted 18 ms > cap, so 16, 64 and 256 are 9 ms * size / 8, never run."""
    method = OneMatmulPair()

    def fake_clock(call, warmup, repeats, device):
        call()
        cost = 1e-3 + 1e-3 * method.scored[-1]
        return [cost * f for f in (0.9, 1.0, 1.1)[:repeats]] if repeats == 3 else [cost] * repeats

    monkeypatch.setattr(latency, "time_calls", fake_clock)
    torch.manual_seed(0)
    stage = Encoded(method, None, {"text": torch.randn(3, 4)}, {"video": torch.randn(8, 4)})
    settings = Settings(1, 10, 1, 4, 0.012, [4, 8, 16, 64, 256], torch.device("cpu"), 0)
    rec = Recorder("cross", 0, 1, torch.device("cpu"))
    latency._pair_rows(rec, stage, settings, gflops=2.5)
    frame = rec.frame()
    assert list(frame.columns) == COLUMNS
    assert method.scored == [8, 4, 8]  # the FLOP count on 8 candidates, then the two timed galleries only
    rows = frame.groupby("gallery_size").agg(
        calls=("seconds", "size"),
        seconds=("seconds", "median"),
        measured=("measured", "all"),
        extrapolated=("extrapolated", "any"),
        synthetic=("synthetic_gallery", "all"),
        flops=("flops_per_query", "first"),
    )
    assert rows.index.tolist() == [4, 8, 16, 64, 256]
    assert rows.calls.tolist() == [3, 3, 1, 1, 1]  # max(3, repeats // 5) timed calls; one predicted row
    assert rows.seconds.tolist() == pytest.approx([0.005, 0.009, 0.018, 0.072, 0.288])
    assert rows.measured.tolist() == [True, True, False, False, False]
    assert rows.extrapolated.tolist() == [False, False, True, True, True]
    assert rows.synthetic.tolist() == [False, False, True, True, True]  # beyond the 8 real videos
    assert rows.flops.tolist() == [4 * 8, 8 * 8, 16 * 8, 64 * 8, 256 * 8]  # [1, 4] x [4, n]: 8 FLOPs per pair
    assert (frame.matmul_gflops == 2.5).all() and (frame.stage == "search").all() and (frame.backend == "pair").all()


def _stats_row(method, stage, backend, median_s, size=0, k=0, batch=1, extrapolated=False, flops=np.nan):
    return {
        "method": method, "stage": stage, "backend": backend, "k": k, "gallery_size": size, "batch_size": batch,
        "measured": not extrapolated, "extrapolated": extrapolated, "synthetic_gallery": False, "median_s": median_s,
        "flops_per_query": flops, "matmul_gflops": 2.0 if backend in ("pair", "rerank") else np.nan,
    }  # fmt: skip


def test_online_latency_is_batch_1_query_encoding_plus_the_first_search_backend_at_the_chosen_depth():
    stats = pd.DataFrame(
        [
            _stats_row("dual", "query_encode", "model", 0.001),
            _stats_row("dual", "query_encode", "model", 0.004, batch=8),  # a batch: not the online cost
            _stats_row("dual", "search", "torch", 0.0005, size=100),  # torch listed first; FAISS is preferred
            _stats_row("dual", "search", "faiss", 0.0002, size=100),
            _stats_row("dual", "search", "faiss", 0.0008, size=100, batch=4),
            _stats_row("rerank", "query_encode", "model", 0.002),
            _stats_row("rerank", "search", "rerank", 0.003, size=100, k=10, flops=1e6),
            _stats_row("rerank", "search", "rerank", 0.006, size=100, k=20, flops=2e6),  # chosen on val
            _stats_row("cross", "query_encode", "model", 0.0005),
            _stats_row("cross", "search", "pair", 0.05, size=100, flops=1e7),
            _stats_row("cross", "search", "pair", 0.5, size=1000, extrapolated=True, flops=1e8),
        ]
    )
    online = online_latency(stats, {"rerank": 20})
    assert list(online.columns) == ONLINE_COLUMNS
    expected = pd.DataFrame(
        [
            ("dual", 100, "faiss", 0, 0.2, 1.2, False, np.nan, np.nan),
            ("rerank", 100, "rerank", 20, 6.0, 8.0, False, 2e6, 2.0),
            ("cross", 100, "pair", 0, 50.0, 50.5, False, 1e7, 2.0),
            ("cross", 1000, "pair", 0, 500.0, 500.5, True, 1e8, 2.0),
        ],
        columns=ONLINE_COLUMNS,
    )
    pd.testing.assert_frame_equal(online, expected, check_dtype=False)


def test_online_latency_at_the_gallery_scale_sizes():
    """Past the latency step's galleries: an embedding method's exact search over real distractors (measured), a
    pair method linear from its largest measured gallery, a re-ranker as its first stage's chosen HNSW point plus
    its own k pair scores (composed); the last two are marked extrapolated."""
    stats = pd.DataFrame(
        [
            _stats_row("dual", "query_encode", "model", 0.001),
            _stats_row("dual", "search", "faiss", 0.0002, size=100),
            _stats_row("rerank", "query_encode", "model", 0.002),
            _stats_row("rerank", "search", "rerank", 0.0032, size=100, k=20),  # 0.2 ms of it: dual's search
            _stats_row("cross", "query_encode", "model", 0.0005),
            _stats_row("cross", "search", "pair", 0.05, size=100),
            _stats_row("cross", "search", "pair", 0.5, size=1000, extrapolated=True),
        ]
    )
    scale = pd.DataFrame(
        [
            {"method": "dual", "gallery_size": n, "family": f, "p50_ms": ms, "chosen": c}
            for n, f, ms, c in (
                (100, "flat", 0.3, True),  # the latency step's own row at 100 stays
                (10_000, "flat", 2.0, True),
                (10_000, "hnsw", 0.5, True),
                (10_000, "hnsw", 0.1, False),  # not chosen on val: not the re-ranker's first stage
            )
        ]
    )
    online = online_latency(stats, {"rerank": 20}, scale, {"rerank": "dual"}).set_index(["method", "gallery_size"])
    assert online.loc[("dual", 100), "search_ms"] == pytest.approx(0.2)
    assert online.loc[("dual", 10_000), ["search_ms", "ms_per_query"]].tolist() == pytest.approx([2.0, 3.0])
    assert not online.loc[("dual", 10_000), "extrapolated"]
    assert online.loc[("cross", 10_000), "search_ms"] == pytest.approx(50.0 * 100)  # from the measured 100
    assert online.loc[("cross", 10_000), "extrapolated"]
    assert online.loc[("rerank", 10_000), ["search_ms", "k"]].tolist() == pytest.approx([0.5 + 3.0, 20])
    assert online.loc[("rerank", 10_000), "ms_per_query"] == pytest.approx(2.0 + 3.5)
    assert online.loc[("rerank", 10_000), "extrapolated"]


def test_recall_latency_carries_each_methods_design_class_from_its_metrics_json(tmp_path):
    """tables/recall_latency.csv (and summary.csv) name each method's design class as its metrics.json records it;
    a metrics.json without one (an older run, a user's own rule) reads as the documented default."""
    from vtrbench import resultfiles
    from vtrbench.report.aggregate import summarize_runs
    from vtrbench.report.tradeoff import tradeoff

    recall = {m: 10.0 for m in ("R@1", "R@5", "R@10", "MdR", "MnR")}
    designs = {"dual": "single vector", "cret": "centres", "pool": "query-conditioned", "mine": None}
    metrics, latency = [], []
    for i, (method, design) in enumerate(designs.items()):
        for seed in (0, 1):
            payload = {"method": method, "seed": seed, "kind": "embedding", "t2v": recall, "v2t": recall}
            payload = payload | ({"design": design} if design else {}) | {"t2v": recall | {"R@1": 10.0 * i + seed}}
            resultfiles.write_json(tmp_path / method / f"seed{seed}" / "metrics.json", payload)
            metrics.append(tmp_path / method / f"seed{seed}" / "metrics.json")
        rows = [
            {"stage": stage, "backend": backend, "gallery_size": size, "seconds": 0.001 * (i + 1), "repeat": r}
            for stage, backend, size in (("query_encode", "model", 0), ("search", "torch", 100))
            for r in range(3)
        ]
        path = tmp_path / method / "latency.csv"
        pd.DataFrame(rows).assign(method=method, batch_size=1, items=1, measured=True).to_csv(path, index=False)
        latency.append(path)
    table = tradeoff(metrics, latency, tmp_path / "tables", reference=100)
    written = pd.read_csv(tmp_path / "tables" / "recall_latency.csv")
    expected = ["single vector", "centres", "query-conditioned", "unspecified"]
    for frame in (table, written):
        assert frame["method"].tolist() == list(designs) and frame["design"].tolist() == expected
        assert frame.columns.tolist()[:3] == ["method", "kind", "design"]
    runs = pd.DataFrame([resultfiles.flatten_metrics(resultfiles.read_metrics(p)) for p in metrics])
    assert summarize_runs(runs).set_index("method")["design"].iloc[:3].tolist() == expected[:3]
