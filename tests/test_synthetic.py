"""SynthVTT generator: determinism, layout, the hard-negative construction, captions vs pixels, validation."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from vtrbench.data import synthetic
from vtrbench.data.synthetic import RGB, VARIANTS, SyntheticConfig, generate
from vtrbench.data.synthetic_grammar import COLOURS, SHAPES, canonical_caption, vocabulary

SMALL = {"train_groups": 20, "val_groups": 6, "test_groups": 20}


@pytest.fixture(scope="module")
def data() -> dict:
    return generate(SyntheticConfig(**SMALL, train_captions=3, seed=3))


def _shapes_named(text: str) -> int:
    return sum(word in SHAPES for word in text.split())


def _by_video(captions: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for vid, text in zip(captions["video_id"], captions["text"], strict=True):
        out.setdefault(vid, []).append(text)
    return out


def test_same_seed_same_data_other_seed_differs():
    a, b = generate(SyntheticConfig(**SMALL)), generate(SyntheticConfig(**SMALL))
    c = generate(SyntheticConfig(**SMALL, seed=1))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a[split][0]["frames"], b[split][0]["frames"])
        assert a[split][1] == b[split][1]
        assert a[split][0]["video_id"] == b[split][0]["video_id"]
        assert not np.array_equal(a[split][0]["frames"], c[split][0]["frames"])
        assert a[split][1]["text"] != c[split][1]["text"]


def test_split_sizes_do_not_move_other_splits():
    # Each split has its own random stream and train is sampled last: more train groups leave val/test alone.
    a = generate(SyntheticConfig(**SMALL))
    b = generate(SyntheticConfig(**{**SMALL, "train_groups": 30}))
    for split in ("val", "test"):
        np.testing.assert_array_equal(a[split][0]["frames"], b[split][0]["frames"])
        assert a[split][1] == b[split][1]


def test_layout_shapes_dtypes_and_groups(data):
    cfg = SyntheticConfig(**SMALL)
    for split, (videos, captions) in data.items():
        groups = getattr(cfg, f"{split}_groups")
        n = 4 * groups
        assert set(videos) == {"video_id", "frames", "group_id", "variant"}
        assert set(captions) == {"video_id", "text"}
        assert videos["frames"].shape == (n, 8, 32, 32, 3) and videos["frames"].dtype == np.uint8
        assert videos["group_id"].shape == (n,) and videos["group_id"].dtype == np.int32
        assert len(videos["video_id"]) == len(set(videos["video_id"])) == n
        assert videos["variant"] == list(VARIANTS) * groups  # 4 consecutive, one of each, original first
        gid = videos["group_id"].reshape(groups, 4)
        assert (gid == gid[:, :1]).all() and len(set(gid[:, 0])) == groups


def test_reversal_is_exact_frame_reversal_and_mean_pooling_is_blind(data):
    frames = data["test"][0]["frames"].astype(np.int64)  # [N, T, H, W, 3]
    original, reversal = frames[0::4], frames[3::4]
    np.testing.assert_array_equal(reversal, original[:, ::-1])
    # Any mean over time (of pixels or of per-frame features) is identical: mean pooling cannot separate them.
    np.testing.assert_array_equal(original.mean(axis=1), reversal.mean(axis=1))
    assert not np.array_equal(original, reversal)


def test_colour_swap_keeps_masks_and_changes_colours(data):
    cfg = SyntheticConfig(**SMALL)
    frames = data["test"][0]["frames"]
    original, swap, action = frames[0::4], frames[1::4], frames[2::4]
    mask = lambda x: x.max(axis=-1) >= cfg.noise  # noqa: E731  object pixels; background noise < cfg.noise
    np.testing.assert_array_equal(mask(original), mask(swap))
    assert mask(original).any()
    for g in range(len(original)):
        changed = (original[g] != swap[g]).any(axis=-1)  # [T, H, W]
        assert changed.any() and mask(original[g])[changed].all()  # only object pixels change
        assert not np.array_equal(original[g], action[g])


def _colour_track(video: np.ndarray, colour: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count [T] and centroid [T, 2] (x, y; nan where absent) of one exact object colour."""
    hit = (video == RGB[colour]).all(axis=-1)  # [T, H, W]
    count = hit.sum(axis=(1, 2))
    ys, xs = np.mgrid[0 : hit.shape[1], 0 : hit.shape[2]]
    with np.errstate(invalid="ignore"):
        centre = np.stack([(hit * xs).sum((1, 2)) / count, (hit * ys).sum((1, 2)) / count], axis=1)
    return count, centre


def test_every_full_caption_matches_its_pixels(data):
    """Parse each val/test caption and check each clause against the object of that colour in the video."""
    for split in ("val", "test"):
        videos, captions = data[split]
        by_video = _by_video(captions)
        for vid, video in zip(videos["video_id"], videos["frames"], strict=True):
            (text,) = by_video[vid]
            units = canonical_caption(text).split(" and ")
            events = units.pop()[len("first ") :].split(" then ") if units[-1].startswith("first ") else []
            clauses = units + events
            present = [c for c in range(len(COLOURS)) if (video == RGB[c]).all(-1).any()]
            assert len(present) == len(clauses), text
            event_frames = []
            for clause in clauses:
                _, size, colour, shape, *verb = clause.split()
                count, centre = _colour_track(video, COLOURS.index(colour))
                side = synthetic._sizes(32)[size == "big"]
                assert count.max() == synthetic._shape_mask(SHAPES.index(shape), side).sum(), clause
                on = count > 0
                verb = " ".join(verb)
                if verb == "appears":
                    assert not on[0] and on[-1]
                    event_frames.append(int(np.argmax(on)))
                elif verb == "disappears":
                    assert on[0] and not on[-1]
                    event_frames.append(int(np.argmin(on)))
                else:
                    assert on.all()
                    dx, dy = centre[-1] - centre[0]
                    expected = {"moves left": (-14, 0), "moves right": (14, 0), "moves up": (0, -14)}
                    expected |= {"moves down": (0, 14), "stays still": (0, 0)}
                    np.testing.assert_allclose((dx, dy), expected[verb], err_msg=clause)
            assert event_frames == sorted(event_frames), text  # events are named in time order


def test_caption_counts_vocabulary_and_paraphrases(data):
    vocab = set(vocabulary())
    assert vocabulary() == sorted(vocab)
    assert all(w == w.lower() and w.isalpha() for w in vocab)
    for split, (videos, captions) in data.items():
        per_video = 3 if split == "train" else 1
        counts = Counter(captions["video_id"])
        assert set(counts) == set(videos["video_id"]) and set(counts.values()) == {per_video}
        assert all(set(text.split()) <= vocab for text in captions["text"])
    used = {w for _, captions in data.values() for text in captions["text"] for w in text.split()}
    assert len(used) > 0.8 * len(vocab)
    # Train paraphrases of one video differ in wording but not in meaning (partial_rate = 0).
    by_video = _by_video(data["train"][1])
    assert all(len({canonical_caption(t) for t in texts}) == 1 for texts in by_video.values())
    assert any(len(set(texts)) > 1 for texts in by_video.values())


def test_canonical_captions_distinct_in_group_and_unseen_in_train(data):
    canon = {s: [canonical_caption(t) for t in data[s][1]["text"]] for s in data}
    for split in ("val", "test"):
        groups = np.array(canon[split]).reshape(-1, 4)  # one caption per video, group-major
        assert all(len(set(g)) == 4 for g in groups)  # incl. reversal != original
        assert len(set(canon[split])) == len(canon[split])  # each composition once per eval split
    assert not set(canon["test"]) & set(canon["train"])
    assert not set(canon["val"]) & set(canon["train"])
    assert not set(canon["val"]) & set(canon["test"])
    train = np.array(canon["train"]).reshape(-1, 4, 3)  # [group, variant, caption]
    assert all(len(set(g[:, 0])) == 4 for g in train)


def test_partial_captions_mention_fewer_objects_on_the_same_videos():
    full = generate(SyntheticConfig(**SMALL, seed=5))
    part = generate(SyntheticConfig(**SMALL, seed=5, partial_rate=1.0))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(full[split][0]["frames"], part[split][0]["frames"])  # captions only
        objects = {v: _shapes_named(t) for v, t in zip(*full[split][1].values(), strict=True)}
        for vid, text in zip(*part[split][1].values(), strict=True):
            assert 1 <= _shapes_named(text) < objects[vid], text
    # The group's 4 captions share a mention subset that keeps them distinct: hard negatives stay negatives.
    test = np.array([canonical_caption(t) for t in part["test"][1]["text"]]).reshape(-1, 4)
    assert all(len(set(g)) == 4 for g in test)
    # partial_rate = 0.5: about half the caption slots (one coin per group and slot) are partial.
    mixed = generate(SyntheticConfig(**SMALL, seed=5, partial_rate=0.5))["train"][1]
    objects = {v: _shapes_named(t) for v, t in zip(*full["train"][1].values(), strict=True)}
    fewer = [_shapes_named(t) < objects[v] for v, t in zip(*mixed.values(), strict=True)]
    assert 0.3 < np.mean(fewer) < 0.7


def test_other_geometries():
    cfg = SyntheticConfig(train_groups=4, val_groups=2, test_groups=4, frames=4, size=16, min_objects=3)
    videos, captions = generate(cfg)["test"]
    assert videos["frames"].shape == (16, 4, 16, 16, 3)
    assert all(_shapes_named(t) == 3 for t in captions["text"])
    cfg = SyntheticConfig(train_groups=4, val_groups=2, test_groups=4, frames=2, noise=0, max_objects=4)
    videos, _ = generate(cfg)["test"]
    assert videos["frames"].shape == (16, 2, 32, 32, 3)
    np.testing.assert_array_equal(videos["frames"][3::4], videos["frames"][0::4, ::-1])


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a small red cross goes up", "the small red cross moves up"),
        (
            "the big cyan circle does not move while a small red square slides downward",
            "the big cyan circle stays still and the small red square moves down",
        ),
        (
            "a big red square vanishes after the small blue cross shows up and a big green circle goes left",
            "the big green circle moves left and first the small blue cross appears then the big red square disappears",
        ),
        (
            "the small blue cross comes into view before a big red square goes out of view",
            "first the small blue cross appears then the big red square disappears",
        ),
    ],
)
def test_canonical_caption(text, canonical):
    assert canonical_caption(text) == canonical


@pytest.mark.parametrize("text", ["a red square moves left", "a big red square flies", "the big red square"])
def test_canonical_caption_rejects_foreign_text(text):
    with pytest.raises(ValueError, match="not a SynthVTT caption"):
        canonical_caption(text)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train_groups": 0}, r"train_groups must be >= 1, got 0"),
        ({"val_groups": -1}, r"val_groups must be >= 1, got -1"),
        ({"test_groups": 0}, r"test_groups must be >= 1, got 0"),
        ({"frames": 1}, r"frames must be >= 2, got 1"),
        ({"size": 15}, r"size must be >= 16, got 15"),
        ({"min_objects": 1}, r"min_objects must be in \[2, 4\] .*, got 1"),
        ({"max_objects": 1}, r"max_objects must be in \[2, 4\] .*, got 1"),
        ({"max_objects": 5}, r"max_objects must be in \[2, 4\] .*, got 5"),
        ({"size": 16, "max_objects": 4}, r"max_objects must be in \[2, 3\] .*16px.*, got 4"),
        ({"partial_rate": 1.5}, r"partial_rate must be in \[0, 1\], got 1.5"),
        ({"partial_rate": -0.1}, r"partial_rate must be in \[0, 1\], got -0.1"),
        ({"train_captions": 0}, r"train_captions must be >= 1, got 0"),
        ({"eval_captions": 0}, r"eval_captions must be >= 1, got 0"),
        ({"noise": 200}, r"noise must be in \[0, 128\] .*, got 200"),
        ({"seed": -1}, r"seed must be >= 0, got -1"),
    ],
)
def test_invalid_config_names_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**override)


@pytest.mark.slow
def test_default_config_is_fast_and_complete():
    start = time.perf_counter()
    data = generate(SyntheticConfig())
    elapsed = time.perf_counter() - start
    assert elapsed < 15, f"default generation took {elapsed:.1f}s"  # about 2 s on the 2-core dev box
    assert [len(data[s][0]["video_id"]) for s in ("train", "val", "test")] == [12000, 400, 1000]
    assert len(data["train"][1]["text"]) == 60000
    canon = {s: {canonical_caption(t) for t in data[s][1]["text"]} for s in ("val", "test")}
    assert len(canon["test"]) == 1000 and len(canon["val"]) == 400
    train = {canonical_caption(t) for t in data["train"][1]["text"][::5]}
    assert not train & (canon["test"] | canon["val"])
