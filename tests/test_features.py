"""Frozen towers (train.freeze_towers, vtrbench/features.py): the cache holds what a fresh forward of the towers
gives, a training step on it is the step on pixels with the towers' weights untouched, a cache is read only by the
towers that wrote it, and its folder's fingerprint moves with the towers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import REPO

from vtrbench import config as config_lib
from vtrbench.data.batches import TrainBatches
from vtrbench.data.records import load_split
from vtrbench.features import (
    compute_features,
    frame_features,
    freeze_towers,
    load_features,
    text_features,
    tower_digests,
    write_features,
)
from vtrbench.methods import build_method
from vtrbench.plan import Plan, features_unit
from vtrbench.runs import build_backbones, read_tokens
from vtrbench.train import make_optimizer, train_step


@pytest.fixture(scope="module")
def towers_and_split(smoke_data):
    cfg = config_lib.load(REPO / "config" / "smoke.yaml")
    torch.manual_seed(0)
    backbones, tokenizer = build_backbones(cfg, smoke_data)
    split = load_split(smoke_data, "train")
    tokens = read_tokens(tokenizer, cfg["model"]["text"]["max_length"], None, split)
    return cfg, backbones, split, tokens


def test_a_cached_feature_equals_a_fresh_forward_of_the_towers(towers_and_split):
    _, backbones, split, tokens = towers_and_split
    cache = compute_features(backbones, split.frames, tokens)
    assert cache.frames.shape[:2] == (split.num_videos, split.frames.shape[1])
    for video in (0, split.num_videos - 1):  # alone, not in the job's chunk: another batch, the same numbers
        fresh = frame_features(backbones.frame, torch.from_numpy(split.frames[np.array([video])]))
        np.testing.assert_allclose(cache.frames[video], fresh[0].numpy(), rtol=1e-5, atol=1e-5)
    for caption in (0, len(split.captions) - 1):
        fresh = text_features(backbones.text, tokens[np.array([caption])])[0].numpy()  # trimmed to its own length
        np.testing.assert_allclose(cache.text[caption, : fresh.shape[0]], fresh, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "which"), [("dual_seq", "both"), ("cret", "both"), ("cross_encoder", "both"), ("cret", "frame")]
)
def test_a_step_on_cached_features_is_the_step_on_pixels_and_leaves_the_towers_alone(towers_and_split, name, which):
    cfg, backbones, split, tokens = towers_and_split
    backbones = copy.deepcopy(backbones)
    torch.manual_seed(1)
    method = build_method(backbones, cfg["methods"][name], cfg["methods"]).eval()
    towers_before, text_before = tower_digests(backbones), copy.deepcopy(backbones.text.state_dict())
    cache = freeze_towers(backbones, split.frames, tokens, None, which)
    pixels = TrainBatches(split, tokens, 8, 4, seed=0, group_batches=True)(3)
    cached = TrainBatches(split, tokens, 8, 4, seed=0, group_batches=True, features=cache)(3)
    assert cached["frames"].shape[:2] == pixels["frames"].shape[:2] and cached["frames"].ndim == 4
    assert torch.equal(cached["attention_mask"], pixels["attention_mask"])
    assert cached["input_ids"].is_floating_point() == (which == "both")  # "frame": the text tower reads token ids
    on_cache, on_pixels = method.loss(cached), method.loss(pixels)
    for term, value in on_pixels.items():
        torch.testing.assert_close(on_cache[term], value, rtol=1e-4, atol=1e-5)
    optimizer = make_optimizer(method, {**cfg, "train": {**cfg["train"], "weight_decay": 0.1}}, 1e-2)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in backbones.frame.parameters()}
    assert bool(in_optimizer & {id(p) for p in backbones.text.parameters()}) == (which == "frame")
    train_step(method.loss, [p for p in method.parameters() if p.requires_grad], optimizer, cached, 1.0, False)
    text_moved = any(not torch.equal(v, backbones.text.state_dict()[k]) for k, v in text_before.items())
    assert text_moved == (which == "frame")
    if which == "both":
        assert tower_digests(backbones) == towers_before


def test_a_cache_is_read_only_by_the_towers_that_wrote_it(towers_and_split, tmp_path):
    _, backbones, split, tokens = towers_and_split
    meta = write_features(backbones, split.frames, tokens, tmp_path / "features")
    assert meta["towers"] == tower_digests(backbones)
    loaded = load_features(tmp_path / "features", backbones)
    np.testing.assert_array_equal(loaded.frames, compute_features(backbones, split.frames, tokens).frames)
    other = copy.deepcopy(backbones)
    with torch.no_grad():
        next(other.frame.parameters()).add_(1e-3)
    assert tower_digests(other)["frame"] != tower_digests(backbones)["frame"]
    for which in ("frame", "both"):
        with pytest.raises(RuntimeError, match="other frame tower weights"):
            load_features(tmp_path / "features", other, which)
    # a method warm-started from a first stage that fine-tuned the text tower (freeze_towers: frame) reads the
    # frame features, not the text ones
    tuned_text = copy.deepcopy(backbones)
    with torch.no_grad():
        next(tuned_text.text.parameters()).add_(1e-3)
    assert load_features(tmp_path / "features", tuned_text, "frame").frames.shape == loaded.frames.shape
    with pytest.raises(RuntimeError, match="other text tower weights"):
        load_features(tmp_path / "features", tuned_text, "both")
    with pytest.raises(FileNotFoundError, match="run the features job first"):
        load_features(tmp_path / "nothing", backbones)


def _frozen(smoke_config: dict) -> dict:
    config = copy.deepcopy(smoke_config)
    config["pretrain"] = {**config["pretrain"], "enabled": True}
    config["train"] = {**config["train"], "freeze_towers": "both"}
    return config


def test_the_cache_folder_moves_with_the_towers_and_every_run_waits_for_it(smoke_config):
    plan = Plan(_frozen(smoke_config))
    fps = {plan.run_features[m].fp for m in plan.trained}  # one cache for every method (a sweep's dataset: its own)
    assert len(fps) == 1 and all(plan.features(m) for m in plan.trained)
    base = features_unit(plan.config).fp
    for change in (
        {"model": {"frame": {"pretrained": "/another/checkpoint"}}},
        {"model": {"text": {"max_length": 20}}},
        {"dataset": {"resolution": 32}},
    ):
        assert features_unit(config_lib.deep_update(copy.deepcopy(plan.config), change)).fp != base, change
    assert features_unit(config_lib.deep_update(copy.deepcopy(plan.config), {"train": {"lr": 1.0}})).fp == base
    pretrain_changed = _frozen(smoke_config)
    pretrain_changed["pretrain"]["steps"] = 7  # another pretraining: another checkpoint folder, another cache
    assert Plan(pretrain_changed).run_features["dual_seq"].fp not in fps
    assert Plan(smoke_config).run_features == {} and Plan(smoke_config).features("dual_seq") == []


def test_frozen_random_towers_are_refused_naming_the_key(smoke_config):
    config = copy.deepcopy(smoke_config)
    config["train"] = {**config["train"], "freeze_towers": "both"}
    with pytest.raises(config_lib.ConfigError, match=r"train.freeze_towers: frozen towers must be pretrained"):
        config_lib.validate(config)
    config_lib.validate(_frozen(smoke_config))


def test_the_throughput_stage_times_the_step_a_frozen_run_trains(smoke_data, smoke_config, monkeypatch):
    """With frozen towers the timed step reads the towers' outputs and updates none of their weights."""
    from vtrbench import throughput

    seen: dict = {}

    def recording_optimizer(method, config, lr):
        optimizer = make_optimizer(method, config, lr)
        seen["optimised"] = {id(p) for group in optimizer.param_groups for p in group["params"]}
        seen["frame"] = {id(p) for p in method.backbones.frame.parameters()}
        seen["text"] = {id(p) for p in method.backbones.text.parameters()}
        loss = method.loss

        def recording_loss(batch):
            seen.setdefault("inputs", (batch["frames"].ndim, batch["input_ids"].dtype))
            return loss(batch)

        method.loss = recording_loss
        return optimizer

    monkeypatch.setattr(throughput, "make_optimizer", recording_optimizer)
    config = copy.deepcopy(smoke_config)
    config["train"] = {**config["train"], "freeze_towers": "both"}
    rows = throughput.measure_method(config, "cret", smoke_data, [4], [8], warmup=1, repeats=2)
    assert set(rows.phase) == {"step", "bare", "forward", "encode"} and (rows.ms > 0).all()
    assert not seen["optimised"] & (seen["frame"] | seen["text"])
    assert seen["inputs"] == (4, torch.float32)  # [B, M, 1 + N, D] frame outputs, float caption features


def test_a_unit_that_builds_no_tower_validates_with_frozen_towers(smoke_config):
    """The loss-level throughput unit (losses on random features: no model section) is not refused."""
    from vtrbench.plan import loss_level_unit

    unit = loss_level_unit(config_lib.validate(_frozen(smoke_config)))
    assert "model" not in unit.config
    config_lib.validate({"run_name": "x", **unit.config})
