"""Latency benchmark: FAISS vs torch agreement, the synthetic gallery and the latency.csv schema (no timed asserts)."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd

from vtrbench.latency import COLUMNS, benchmark, faiss_index, synthetic_gallery, topk_agreement, torch_topk
from vtrbench.report.tradeoff import latency_stats
from vtrbench.train import train


def test_faiss_and_torch_return_the_same_top10():
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((500, 32)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = rng.standard_normal((20, 32)).astype(np.float32)
    _, ids = faiss_index(gallery).search(queries, 10)
    import torch

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
