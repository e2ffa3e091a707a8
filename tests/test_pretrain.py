"""The pretraining stage (vtrbench/pretrain.py, vtrbench/data/synthetic_frames.py): its data never shows an
evaluation composition and never says what a single frame cannot show; its checkpoint learns and is loaded as both
towers by the fine-tuning code; the plan makes every tower-building folder depend on it."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from vtrbench import config as config_lib
from vtrbench.backbones import BackboneConfig, Backbones
from vtrbench.data.synthetic import SyntheticConfig, _Draws, _Geometry, evaluation_scenes, generate
from vtrbench.data.synthetic_frames import STATIC_WORDS, describe, frame_pairs, object_set
from vtrbench.data.synthetic_grammar import (
    COLOURS,
    CONNECTORS,
    ORDER_WORDS,
    PARAPHRASES,
    SHAPES,
    SIZE_WORDS,
    key,
)
from vtrbench.plan import PRETRAINED_CHECKPOINT, Plan

SMALL = SyntheticConfig(train_groups=4, val_groups=30, test_groups=30, frames=8, size=32)
TINY_PRETRAIN = {
    "enabled": True,
    "pairs": 3000,
    "check_pairs": 100,
    "steps": 150,
    "batch_size": 128,
    "lr": 2e-3,
    "warmup": 10,
    "eval_every": 150,
    "threads": 1,
    "projection_dim": 32,
    "text": {"hidden": 32, "layers": 1, "heads": 2},
    "frame": {"hidden": 32, "layers": 1, "heads": 2, "patch_size": 8},
}


def _object_sets_of_captions(texts: list[str]) -> set[frozenset]:
    """(shape, colour, size) of every object a full SynthVTT caption names."""
    pattern = rf"({'|'.join(SIZE_WORDS)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})"
    return {
        frozenset((SHAPES.index(sh), COLOURS.index(c), SIZE_WORDS.index(sz)) for sz, c, sh in re.findall(pattern, t))
        for t in texts
    }


def test_evaluation_scenes_are_the_generated_val_and_test_videos():
    generated = generate(SMALL)
    captions = [t for split in ("val", "test") for t in generated[split][1]["text"]]
    assert {object_set(s) for s in evaluation_scenes(SMALL)} == _object_sets_of_captions(captions)


def test_no_val_or_test_composition_occurs_in_the_pretraining_frames():
    evaluation = evaluation_scenes(SMALL)
    _, texts, scenes = frame_pairs(SMALL, 2000, stream=0)
    shown = {object_set(s) for s in scenes} | _object_sets_of_captions(texts)
    assert not shown & {object_set(s) for s in evaluation}  # not even the objects without their actions
    full = lambda s: key(s, tuple(range(len(s))))  # noqa: E731
    assert not {full(s) for s in scenes} & {full(s) for s in evaluation}
    assert len({object_set(s) for s in scenes}) > 500  # and the set is not trivially small


def test_descriptions_say_nothing_a_single_frame_cannot_show():
    """Only STATIC_WORDS; no verb, event, direction-of-motion, connector or order word of the caption grammar
    ("left"/"right" name a place in the frame there, never a movement)."""
    _, texts, _ = frame_pairs(SMALL, 1000, stream=1)
    words = {w for t in texts for w in t.split()}
    assert words <= set(STATIC_WORDS)
    motion = {w for phrase in sum(PARAPHRASES, ()) for w in phrase.split()} - {"left", "right", "the", "to"}
    assert motion >= {"moves", "appears", "vanishes", "up", "down", "still", "view"}  # the list is not empty
    assert not words & (motion | set(ORDER_WORDS) | {"while"})
    assert set(CONNECTORS) & words == {"and"}


@pytest.mark.parametrize(
    ("x", "y", "side", "where"),
    [(0, 0, 1, "top left"), (23, 0, 1, "top right"), (12, 12, 0, "centre"), (12, 26, 0, "bottom"), (0, 13, 1, "left")],
)
def test_a_description_names_the_third_of_the_frame_an_object_is_in(x, y, side, where):
    g = _Geometry(SMALL)  # 32 px: sides 6 (small) and 9 (big); thirds split at 10.67 and 21.33 px
    obj = [1, 2, side, 0, -1, x, y]  # circle, blue
    text = describe([(obj, x, y)], g, _Draws(0, "frames", 9))
    assert text.endswith(f"{SIZE_WORDS[side]} blue circle at the {where}"), text


def test_the_pairs_are_reproducible_and_streams_differ():
    a, ta, _ = frame_pairs(SMALL, 50, stream=0)
    b, tb, _ = frame_pairs(SMALL, 50, stream=0)
    _, tc, _ = frame_pairs(SMALL, 50, stream=1)
    assert np.array_equal(a, b) and ta == tb and ta != tc


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from vtrbench.pretrain import pretrain

    config = config_lib.validate({"dataset": {"name": "synthetic", "synthetic": {"val_groups": 30, "test_groups": 30}},
                                  "pretrain": TINY_PRETRAIN})  # fmt: skip
    out = tmp_path_factory.mktemp("pretrain")
    return config, out, pretrain(config, out)


def test_a_short_pretraining_beats_chance_on_held_out_frames(pretrained):
    _, out, check = pretrained
    assert check["check_pairs"] == 100 and check["chance_R@1"] == 1.0
    assert check["frame_to_description_R@1"] >= 10 * check["chance_R@1"], check
    assert (out / "check.json").is_file() and (out / "train_log.csv").is_file()


def test_the_checkpoint_is_both_towers_with_the_features_pretraining_trained(pretrained):
    """Loaded through model.*.pretrained (the fine-tuning path), the frame tower's pooled feature of a uint8 frame is
    the pretrained CLIP's image embedding of the same frame, and the text tower's is its text embedding."""
    from transformers import AutoTokenizer, CLIPModel

    from vtrbench.pretrain import _pixels

    _, out, _ = pretrained
    folder = str(out / PRETRAINED_CHECKPOINT)
    cfg = BackboneConfig.from_dict({"text": {"pretrained": folder}, "frame": {"pretrained": folder}})
    towers = Backbones(cfg, vocab_size=0, image_size=32).eval()
    clip = CLIPModel.from_pretrained(folder).eval()
    frames, texts, _ = frame_pairs(SMALL, 3, stream=1)
    enc = AutoTokenizer.from_pretrained(folder)(texts, padding="max_length", max_length=40, return_tensors="pt")
    with torch.no_grad():
        pooled = towers.frame(torch.from_numpy(frames)[:, None]).pooled[:, 0]  # [3, P]
        text = towers.text(enc["input_ids"], enc["attention_mask"]).pooled
        torch.testing.assert_close(pooled, clip.get_image_features(pixel_values=_pixels(frames)).pooler_output)
        expected = clip.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        torch.testing.assert_close(text, expected.pooler_output)
    assert len(enc.tokens(0)) == 40 and "<|endoftext|>" in enc.tokens(0)


def _pretrained_smoke(smoke_config: dict) -> dict:
    config = copy.deepcopy(smoke_config)
    config["pretrain"] = {**config["pretrain"], "enabled": True}
    return config


def test_every_folder_that_builds_towers_names_the_checkpoint_and_waits_for_it(smoke_config):
    plan = Plan(_pretrained_smoke(smoke_config))
    checkpoint = f"{plan.folder(plan.pretrain)}/{PRETRAINED_CHECKPOINT}"
    sections = ("tokens", "runs", "latency", "throughput")
    builders = [u for u in plan.units.values() if u.section in sections and "model" in u.config]
    towers = [t for u in builders for t in u.config["model"].values() if "pretrained" in t]  # tokens: text only
    assert len(towers) > len(builders) and all(t["pretrained"] == checkpoint for t in towers)
    assert plan.pretrained_towers("runs") == [f"{plan.folder(plan.pretrain)}/check.json"]
    assert plan.pretrained_towers("data") == [] and plan.pretrained_towers("pretrain") == []
    assert f"{plan.root}/tables/pretraining.csv" in plan.report_tables()
    plain = Plan(smoke_config)
    assert plain.pretrain is None and plain.pretrained_towers("runs") == []
    assert {u.fp for u in builders}.isdisjoint(u.fp for u in plain.units.values())  # nothing shared with scratch


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"dataset": {"name": "msvd", "data_root": "/x"}}, r"pretrain.enabled: the pretraining stage generates"),
        ({"model": {"text": {"pretrained": "/x"}}}, r"model.text.pretrained: pretrain.enabled gives both towers"),
        ({"pretrain": {"frame": {"patch_size": 5}}}, r"pretrain.frame.patch_size: 5 must divide dataset.resolution"),
        ({"pretrain": {"text": {"hidden": 30, "heads": 4}}}, r"pretrain.text.heads: 4 must divide"),
    ],
)
def test_a_config_the_stage_cannot_serve_is_refused_naming_the_key(smoke_config, override, message):
    config = config_lib.deep_update(_pretrained_smoke(smoke_config), override)
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config)


def test_the_up_front_check_probes_the_towers_the_stage_will_give(smoke_config, monkeypatch):
    """preflight builds a random CLIP of pretrain's shape and probes every method on it (not from-scratch towers)."""
    from vtrbench import preflight as preflight_lib

    built = []
    monkeypatch.setattr(preflight_lib, "Backbones", lambda cfg, *a, **k: built.append(cfg) or Backbones(cfg, *a, **k))
    config = _pretrained_smoke(smoke_config)
    config["pretrain"] = {**config["pretrain"], **{k: TINY_PRETRAIN[k] for k in ("projection_dim", "text", "frame")}}
    assert preflight_lib.preflight(config) == []
    assert built[0].text.pretrained and built[0].text.pretrained == built[0].frame.pretrained


def test_a_frozen_frame_run_and_a_method_warm_started_from_it_train_on_one_cache(pretrained, smoke_data, tmp_path):
    """freeze_towers: frame end to end on the stage's checkpoint: the features job's cache, a first stage that
    fine-tunes the text tower, then a cross-encoder warm-started from it (its text tower is no longer the cache's;
    its frame tower still is) trains on the same cache."""
    from vtrbench.runs import write_train_features
    from vtrbench.train import train

    folder = str(pretrained[1] / PRETRAINED_CHECKPOINT)
    config = config_lib.load(REPO / "config" / "smoke.yaml")
    config["model"]["text"]["pretrained"] = config["model"]["frame"]["pretrained"] = folder
    config["train"] = {**config["train"], "freeze_towers": "frame", "steps": 2, "eval_every": 2}
    config["methods"] = {k: config["methods"][k] for k in ("dual_seq", "cross_encoder")}
    config = config_lib.validate(config)
    write_train_features(config, smoke_data, None, tmp_path / "features")
    first = train(config, "dual_seq", 0, smoke_data, tmp_path / "dual_seq", features_dir=tmp_path / "features")
    second = train(
        config, "cross_encoder", 0, smoke_data, tmp_path / "cross", first, features_dir=tmp_path / "features"
    )
    assert first.is_file() and second.is_file()
