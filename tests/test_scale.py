"""The gallery-scale step: distractors that never match a test caption, exact ranks, the shard plan, the tables."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import REPO, method_batch, tiny_backbones
from vtrbench import config as config_lib
from vtrbench import plan as plan_lib
from vtrbench.data import synthetic as S
from vtrbench.methods import build_method
from vtrbench.metrics import t2v_ranks
from vtrbench.report.scale import scale_tables
from vtrbench.resultfiles import ResultFileError
from vtrbench.scale import (
    InnerProduct,
    PairScores,
    candidate_sweep,
    exact_pass,
    features_of,
    layout_of,
    read_shards,
    stored_rows,
)

# Two objects per video: few enough compositions that an unfiltered block does hit the evaluation ones.
SMALL = S.SyntheticConfig(val_groups=250, test_groups=250, min_objects=2, max_objects=2, frames=4, size=16)


def _keys(groups: list) -> set:
    full = tuple(range(SMALL.max_objects))
    return {S.key(scene, full[: len(scene)]) for group, _ in groups for scene in group}


def test_distractors_never_take_a_val_or_test_composition():
    evaluation = S.evaluation_keys(SMALL)
    assert len(evaluation) == 4 * (SMALL.val_groups + SMALL.test_groups)
    unfiltered = _keys(S.distractor_groups(SMALL, 0, set()))
    assert unfiltered & evaluation, "the check would pass vacuously: no unfiltered distractor hits an eval key"
    for block in range(3):
        assert not _keys(S.distractor_groups(SMALL, block, evaluation)) & evaluation


def test_a_distractor_range_is_the_same_videos_whichever_range_asks():
    avoid = S.evaluation_keys(SMALL)
    whole = np.concatenate(list(S.distractor_frames(SMALL, 0, 2 * S.DISTRACTOR_BLOCK, avoid)))
    part = np.concatenate(list(S.distractor_frames(SMALL, 1000, 1100, avoid)))  # crosses the first block's end
    assert whole.shape == (2 * S.DISTRACTOR_BLOCK, SMALL.frames, SMALL.size, SMALL.size, 3)
    np.testing.assert_array_equal(part, whole[1000:1100])
    assert not np.array_equal(whole[: S.DISTRACTOR_BLOCK], whole[S.DISTRACTOR_BLOCK :])  # blocks draw their own streams


def test_distractors_leave_the_prepared_splits_unchanged():
    """The distractor stream is new: the three splits are generated from the same streams as before."""
    small = S.SyntheticConfig(train_groups=20, val_groups=5, test_groups=5, frames=4, size=16)
    first, second = S.generate(small), S.generate(small)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(first[split][0]["frames"], second[split][0]["frames"])
    assert not S.evaluation_keys(small) & _keys(S.distractor_groups(small, 0, S.evaluation_keys(small)))


def test_ranks_follow_the_suites_tie_rule_at_every_nested_size():
    rng = np.random.default_rng(0)
    gallery = rng.integers(-2, 3, size=(300, 4)).astype(np.float32)  # small integers: many exact ties
    queries = rng.integers(-2, 3, size=(40, 4)).astype(np.float32)
    positive = rng.integers(0, 100, size=40)
    exact = exact_pass(InnerProduct(queries, gallery), [100, 300, 250], 64, positive, top=5)
    assert list(exact.ranks) == [100, 250, 300] and exact.seconds[100] <= exact.seconds[250] <= exact.seconds[300]
    for size in (100, 250, 300):  # each size is its own gallery: the first `size` rows, ranked by hand
        scores = queries @ gallery[:size].T
        np.testing.assert_array_equal(exact.ranks[size], t2v_ranks(scores, positive).rank)
        top_scores = np.take_along_axis(scores, exact.top[size], 1)  # ties make the ids ambiguous, not the scores
        np.testing.assert_array_equal(top_scores, -np.sort(-scores, axis=1)[:, :5])


def test_the_matching_video_never_outranks_itself():
    """Its score in a chunk's product may differ from the target in the last bit: it must not count as higher."""
    rng = np.random.default_rng(1)
    gallery = rng.standard_normal((500, 64)).astype(np.float32)
    positive = np.arange(50)
    queries = gallery[positive] * 10.0  # each query's own video is far ahead of the rest
    exact = exact_pass(InnerProduct(queries, gallery), [500], 128, positive)
    np.testing.assert_array_equal(exact.ranks[500], np.ones(50))


@pytest.mark.parametrize(
    "entry",
    [
        {"class": "xpool", "dim": 16, "temporal": True},
        {"class": "late_interaction", "dim": 16, "weight_layers": 2},
    ],
)
def test_a_pair_methods_stored_rows_rank_as_its_full_score(entry):
    """A pair method's gallery goes through the shards as flat rows: rebuilt, block-scored and ranked, it gives the
    ranks of the method's own full score matrix, whatever the block size."""
    torch.manual_seed(0)
    method = build_method(tiny_backbones(), {**entry, "pair_chunk": 7}).eval()
    batch = method_batch(24, 4, 12, seed=3, padded={1: 5, 6: 3}, n_text=10)
    with torch.no_grad():
        gallery = method.encode_videos(batch["frames"])
        queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
        rows = stored_rows(method, gallery)
        assert rows.shape == (24, sum(int(np.prod(shape)) for _, shape in layout_of(gallery)))
        rebuilt = features_of(rows, layout_of(gallery))
        assert all(torch.equal(rebuilt[key], gallery[key]) for key in gallery)
        positive = np.arange(0, 20, 2)
        expected = t2v_ranks(method.score(queries, gallery).numpy(), positive).rank
        pairs = PairScores(method, queries, rows.numpy(), layout_of(gallery), torch.device("cpu"))
        ranks = exact_pass(pairs, [24], 5, positive).ranks
    np.testing.assert_array_equal(ranks[24], expected)
    with pytest.raises(ResultFileError, match="from another model"):
        features_of(rows[:, 1:], layout_of(gallery))


def test_the_candidate_search_reaching_every_video_is_exact_search():
    """DRL's two stages over an HNSW index of its frames: with every frame retrieved per token and every video scored
    exactly, the top 10 is exact search's and so is R@1; with a shallow search, recall falls below 1."""
    torch.manual_seed(0)
    method = build_method(tiny_backbones(), {"class": "late_interaction", "dim": 16}).eval()
    with torch.no_grad():
        gallery = method.encode_videos(method_batch(40, 4, 12, seed=4, padded={}, n_text=0)["frames"])
        split = {}
        for name, seed in (("val", 5), ("test", 6)):
            batch = method_batch(40, 4, 12, seed=seed, padded={2: 4}, n_text=12)
            queries = method.encode_texts(batch["input_ids"], batch["attention_mask"])
            exact = exact_pass(
                PairScores(
                    method, queries, stored_rows(method, gallery).numpy(), layout_of(gallery), torch.device("cpu")
                ),
                [40],
                16,
                top=10,
            )
            split[name] = (queries, exact.top[40])
        positive = split["test"][1][:, 0]  # each caption's exact best video: R@1 through the search is 100 when exact
        config = {
            "scale": {"indexes": {"hnsw": {"M": [8], "ef_search": [4, 400]}}, "train_size": 100, "target_recall": 0.9}
            | {"single_queries": 3, "repeats": 1},
            "latency": {"multivector_depth": 160, "multivector_k": [40, 2]},
        }
        frame = candidate_sweep(method, split["val"], (*split["test"], positive), gallery, config, 0, 1)
    assert list(frame.search) == [f"ef_search={ef} depth=160 k={k}" for ef in (4, 400) for k in (40, 2)]
    every = frame[frame.search == "ef_search=400 depth=160 k=40"].iloc[0]
    assert every.test_recall10 == 1.0 and every.val_recall10 == 1.0 and every["test_R@1"] == 100.0
    assert frame.test_recall10.min() < 1.0 and frame.chosen.sum() == 1
    assert frame.bytes_per_video.gt(4 * 4 * 17).all()  # the frame index plus the features scored exactly


def test_read_shards_refuses_a_gap(tmp_path):
    for lo, hi in ((0, 3), (5, 7)):
        np.save(tmp_path / f"{lo}-{hi}.npy", np.zeros((hi - lo, 2), np.float32))
        (tmp_path / f"{lo}-{hi}.json").write_text("{}")
    with pytest.raises(ResultFileError, match="gap at video 3"):
        read_shards([tmp_path / "5-7.npy", tmp_path / "0-3.npy"])
    np.save(tmp_path / "3-5.npy", np.ones((2, 2), np.float32))
    (tmp_path / "3-5.json").write_text("{}")
    shards, _ = read_shards([tmp_path / f for f in ("5-7.npy", "0-3.npy", "3-5.npy")])
    assert [len(s) for s in shards] == [3, 2, 2] and shards[1].sum() == 4


def _default(scale: dict) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scale"] = scale
    return config_lib.validate_workflow(config, classes=False)


def test_the_gallery_cache_follows_the_model_not_the_gallery_sizes():
    config = _default({"enabled": True, "gallery_sizes": [1000, 10000]})
    unit = plan_lib.distractors_unit(config, "dual_seq")
    wider = copy.deepcopy(config)
    wider["model"]["temporal"]["layers"] = 3
    longer = copy.deepcopy(config)
    longer["methods"]["dual_seq"]["steps"] = 8000
    assert plan_lib.distractors_unit(wider, "dual_seq").fp != unit.fp
    assert plan_lib.distractors_unit(longer, "dual_seq").fp != unit.fp
    half = copy.deepcopy(config)
    half["scale"]["dtype"] = "float16"
    assert plan_lib.distractors_unit(half, "dual_seq").fp != unit.fp
    bigger = copy.deepcopy(config)
    bigger["scale"]["gallery_sizes"] = [1000, 100000]
    assert plan_lib.distractors_unit(bigger, "dual_seq").fp == unit.fp


def test_a_pair_methods_scale_job_follows_the_candidate_search_settings():
    config = _default(
        {"enabled": True, "gallery_sizes": [1000, 10000], "methods": {"cret": 10000, "cross_cret": 10000}}
    )
    deeper = copy.deepcopy(config)
    deeper["latency"]["multivector_k"] = [50]
    assert plan_lib.scale_unit(deeper, "cross_cret", 10000).fp != plan_lib.scale_unit(config, "cross_cret", 10000).fp
    assert plan_lib.scale_unit(deeper, "cret", 10000).fp == plan_lib.scale_unit(config, "cret", 10000).fp


def test_the_plan_shards_each_methods_stream():
    assert plan_lib.distractor_ranges(1_000_000, 1000, 100_000)[-1] == (900_000, 999_000)
    assert plan_lib.distractor_ranges(10_000, 1000, 100_000) == [(0, 9000)]
    assert plan_lib.distractor_ranges(1000, 1000, 100_000) == []
    plan = plan_lib.Plan(_default({"enabled": True, "gallery_sizes": [1000, 10000], "methods": {"cret": 250_000}}))
    assert list(plan.scale) == ["cret"]
    assert [s.rsplit("/", 1)[1] for s in plan.distractor_shards("cret", 0)] == [
        "0-100000.npy", "100000-200000.npy", "200000-249000.npy"
    ]  # fmt: skip
    assert {f"{plan.root}/tables/scale.csv", f"{plan.root}/tables/recall_qps.csv"} <= set(plan.final_output())
    off = plan_lib.Plan(_default({"enabled": False}))
    assert not off.scale and f"{off.root}/tables/scale.csv" not in off.final_output()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gallery_sizes": [500, 10000]}, "scale.gallery_sizes: \\[500\\] is smaller than the 1,000-video"),
        ({"methods": {"rerank_cret": 10000}}, "scale.methods: 'rerank_cret' is not an embedding or pair method"),
        ({"methods": {"nope": 10000}}, "scale.methods: 'nope' is not an embedding or pair method"),
        ({"methods": {"cret": 10}}, "scale.methods.cret: 10 is smaller"),
    ],
)
def test_a_bad_scale_config_is_refused_naming_its_key(change, message):
    with pytest.raises(config_lib.ConfigError, match=message):
        _default({"enabled": True, **change})


def test_scale_needs_the_synthetic_dataset():
    config = yaml.safe_load((REPO / "config" / "msrvtt.yaml").read_text())
    config["dataset"]["data_root"] = "/data/msrvtt"  # a real dataset needs one; never read here
    config["scale"] = {"enabled": True}
    with pytest.raises(config_lib.ConfigError, match=r"scale\.enabled: the gallery-scale step generates SynthVTT"):
        config_lib.validate_workflow(config, classes=False)


def test_scale_tables_choose_per_family_and_mark_the_frontier(tmp_path):
    gallery = pd.DataFrame({"method": ["m", "m"], "gallery_size": [1000, 10000], "t2v_R@1": [70.0, 40.0]})
    points = pd.DataFrame(
        {
            "method": "m",
            "gallery_size": 10000,
            "family": ["flat", "hnsw", "hnsw", "hnsw"],
            "build": ["", "M=16", "M=16", "M=32"],
            "search": ["", "ef_search=16", "ef_search=64", "ef_search=16"],
            "test_recall10": [1.0, 0.90, 0.99, 0.95],
            "qps": [100.0, 900.0, 400.0, 300.0],  # M=32 ef 16 is dominated by M=16 ef 64
            "chosen": [True, False, True, False],
        }
    ).assign(**{c: 1.0 for c in ("test_R@1", "p50_ms", "p99_ms", "build_s", "bytes_per_video")})
    gallery.to_csv(tmp_path / "gallery.csv", index=False)
    points.to_csv(tmp_path / "ann.csv", index=False)
    table, marked = scale_tables([tmp_path / "gallery.csv"], [tmp_path / "ann.csv"], tmp_path / "tables")
    assert marked.pareto.tolist() == [True, True, True, False]
    row = table[table.gallery_size == 10000].iloc[0]
    assert row["hnsw_point"] == "M=16 ef_search=64" and row["hnsw_test_recall10"] == 0.99
    assert row["flat_qps"] == 100.0
    assert table[table.gallery_size == 1000]["hnsw_point"].isna().all()
