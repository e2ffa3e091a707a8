"""ANN indexes: sharded exact search against one flat index, recall, the build grid, the val-only choice and the
Pareto frontier, on small seeded Gaussian mixtures (clustered, so IVF partitions mean something)."""

from __future__ import annotations

import itertools

import faiss
import numpy as np
import pandas as pd
import pytest

from vtrbench.ann import (
    FAMILIES,
    TOP,
    BuildPoint,
    build,
    build_points,
    choose,
    configure,
    exact_top,
    pareto,
    recall_at,
    search_values,
    sharded_flat,
    sweep,
)

DIM = 16
INDEXES = {
    "hnsw": {"M": [16], "ef_construction": 40, "ef_search": [16, 256]},
    "ivf_flat": {"nlist": [32], "nprobe": [1, 2, 4, 8, 16, 32, 64]},
    "ivf_pq": {"nlist": [32], "code_bytes": [8], "nprobe": [4, 32]},
}


def _mixture(n: int, dim: int = DIM, seed: int = 0, clusters: int = 24) -> np.ndarray:
    """float32 [n, dim] Gaussian mixture with well-separated centres and uneven norms."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 3.0
    return (centres[rng.integers(clusters, size=n)] + rng.normal(size=(n, dim))).astype(np.float32)


def _queries(gallery: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of random gallery rows and those rows (each query's matching video)."""
    rng = np.random.default_rng(seed)
    positive = rng.choice(len(gallery), size=count, replace=False)
    noisy = gallery[positive] + 0.3 * rng.normal(size=(count, gallery.shape[1]))
    return noisy.astype(np.float32), positive


@pytest.fixture(scope="module")
def gallery() -> np.ndarray:
    return _mixture(3000)


@pytest.fixture(scope="module")
def swept(gallery: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    val, _ = _queries(gallery, 150, seed=1)
    test, positive = _queries(gallery, 150, seed=2)
    frame = sweep(gallery, val, test, positive, INDEXES, 0.9, single_queries=5, repeats=1, train_size=2000, seed=0)
    return frame, test, positive


def _recalls(point: BuildPoint, gallery: np.ndarray, queries: np.ndarray) -> list[float]:
    """Recall@10 of ``point`` at each of its search values."""
    index, _ = build(point, gallery, INDEXES, train_size=2000, seed=0)
    exact = exact_top(gallery, queries)
    out = []
    for search in search_values(point, INDEXES):
        configure(index, point, search)
        out.append(recall_at(index.search(queries, TOP)[1], exact))
    return out


def test_sharded_flat_equals_one_flat_index() -> None:
    shards = [_mixture(n, seed=s) for s, n in enumerate([700, 50, 1251])]
    queries = _mixture(40, seed=9)
    whole = faiss.IndexFlatIP(DIM)
    whole.add(np.concatenate(shards))
    scores, ids = whole.search(queries, TOP)
    sharded = sharded_flat(shards)
    assert sharded.ntotal == 2001
    got_scores, got_ids = sharded.search(queries, TOP)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_allclose(got_scores, scores, rtol=1e-5)


def test_the_exact_point_searched_through_the_shards_matches_one_index(gallery: np.ndarray) -> None:
    """As the scale step calls it: the gallery as its encode jobs' consecutive blocks, the flat point through them."""
    val, _ = _queries(gallery, 50, seed=3)
    test, positive = _queries(gallery, 50, seed=4)
    shards = [gallery[:700], gallery[700:2500], gallery[2500:]]
    kwargs = {"single_queries": 2, "repeats": 1, "train_size": 2000, "seed": 0}
    one = sweep(gallery, val, test, positive, {}, 0.9, **kwargs)
    sharded = sweep(gallery, val, test, positive, {}, 0.9, shards=shards, **kwargs)
    assert len(sharded) == 1 and sharded.family.tolist() == ["flat"]
    assert sharded.val_recall10.item() == 1.0 and sharded.test_recall10.item() == 1.0
    assert sharded["test_R@1"].item() == one["test_R@1"].item()


def test_recall_by_hand() -> None:
    found = np.array([[1, 2, 3], [4, 5, -1]])
    exact = np.array([[1, 2, 9], [4, 5, 6]])
    assert recall_at(found, exact) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert recall_at(np.full((1, 3), -1), np.array([[0, 1, 2]])) == 0.0


def test_flat_sweep_is_exact(swept: tuple[pd.DataFrame, np.ndarray, np.ndarray], gallery: np.ndarray) -> None:
    frame, test, positive = swept
    flat = frame[frame["family"] == "flat"].iloc[0]
    assert flat["val_recall10"] == 1.0 and flat["test_recall10"] == 1.0
    brute_r1 = 100.0 * float(np.mean(np.argmax(test @ gallery.T, axis=1) == positive))
    assert flat["test_R@1"] == pytest.approx(brute_r1)
    assert flat["bytes_per_video"] >= 4 * DIM and flat["build"] == "" and flat["search"] == ""
    assert list(frame.columns) == [
        "family", "build", "search", "build_s", "bytes_per_video", "val_recall10", "val_qps",
        "test_recall10", "test_R@1", "p50_ms", "p99_ms", "qps", "chosen",
    ]  # fmt: skip


def test_sweep_rows_and_choice(swept: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    frame, _, _ = swept
    assert tuple(frame["family"].unique()) == FAMILIES
    assert (frame.groupby("family")["chosen"].sum() == 1).all()
    pq = frame[frame["family"] == "ivf_pq"]
    assert list(pq["build"]) == ["nlist=32 code_bytes=8"] * 2 and list(pq["search"]) == ["nprobe=4", "nprobe=32"]
    assert pq["bytes_per_video"].iloc[0] < frame.loc[frame["family"] == "flat", "bytes_per_video"].iloc[0]
    assert len(frame[frame["family"] == "ivf_flat"]) == 6  # nprobe 64 > nlist 32 dropped
    for _, group in frame.groupby("family"):
        if (group["val_recall10"] >= 0.9).any():
            assert group.loc[group["chosen"], "val_recall10"].iloc[0] >= 0.9


def test_hnsw_reaches_high_recall(gallery: np.ndarray) -> None:
    queries, _ = _queries(gallery, 200, seed=3)
    assert _recalls(BuildPoint("hnsw", (("M", 16),)), gallery, queries)[-1] >= 0.99


def test_ivf_recall_grows_with_nprobe(gallery: np.ndarray) -> None:
    queries, _ = _queries(gallery, 200, seed=3)
    recalls = _recalls(BuildPoint("ivf_flat", (("nlist", 32),)), gallery, queries)
    assert len(recalls) == 6
    assert all(a <= b for a, b in itertools.pairwise(recalls))
    assert recalls[0] < 1.0 and recalls[-1] == 1.0


def test_build_points_skips_what_the_gallery_cannot_support() -> None:
    indexes = {
        "hnsw": {"M": [8, 32], "ef_search": [16]},
        "ivf_flat": {"nlist": [16, 1024], "nprobe": [1]},
        "ivf_pq": {"nlist": [16, 1024], "code_bytes": [4, 5, 64], "nprobe": [1]},
    }
    labels = [p.label() for p in build_points(indexes, n=1000, dim=32)]  # 1000 // 39 = 25 centroids at most
    assert labels == ["flat", "hnsw M=8", "hnsw M=32", "ivf_flat nlist=16", "ivf_pq nlist=16 code_bytes=4"]
    assert build_points({"ivf_flat": {"nlist": [4], "nprobe": [1]}}, n=100, dim=32)[0] == BuildPoint("flat", ())
    assert [p.family for p in build_points(indexes, n=200, dim=32)] == ["flat", "hnsw", "hnsw"]  # PQ needs 256
    point = build_points(indexes, n=1000, dim=32)[-1]
    assert point.params == (("code_bytes", 4), ("nlist", 16))


def test_choice_reads_val_only() -> None:
    frame = pd.DataFrame(
        {
            "family": ["flat", "hnsw", "hnsw", "hnsw", "ivf_flat", "ivf_flat"],
            "val_recall10": [1.0, 0.95, 0.92, 0.80, 0.50, 0.70],
            "val_qps": [10.0, 100.0, 500.0, 1000.0, 900.0, 300.0],
        }
    )
    # No test column: the choice cannot read one. On test, row 1 would win (its test recall is the only one >= 0.9).
    assert list(choose(frame, 0.9)) == [True, False, True, False, False, True]
    assert list(choose(frame, 0.99)) == [True, True, False, False, False, True]  # none reaches: best val recall


def test_pareto_frontier() -> None:
    frame = pd.DataFrame(
        {
            "test_recall10": [0.5, 0.7, 0.9, 0.6, 0.9, 1.0, 0.7],
            "qps": [1000.0, 800.0, 300.0, 700.0, 200.0, 100.0, 800.0],
        },
        index=list("abcdefg"),
    )
    front = pareto(frame)
    assert list(front.index) == list("abcdefg")
    assert list(front) == [True, True, True, False, False, True, True]  # b and g tie: neither strictly better
