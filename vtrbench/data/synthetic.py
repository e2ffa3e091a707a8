"""SynthVTT: a procedural text-video benchmark with built-in hard negatives (numpy only, seeded).

A video is ``frames`` x ``size`` x ``size`` RGB: a black background with uniform noise and 2-3 objects of distinct
shapes and colours, each doing exactly one action (move left/right/up/down, stay still, appear or disappear at an
inner frame). Captions come from a small grammar with paraphrases (``synthetic_grammar.py``), so a word-level
tokenizer suffices; partial captions (naming only some of the objects, ``partial_rate``) are an option. The prepare
step writes the splits with ``vtrbench.data.records.write_split`` (atomically: a temporary folder moved into place).

What it measures: every video comes in a group of 4 whose members differ in one controlled way.

* ``colour_swap``: two objects exchange colours; the trajectories (pixel masks) are identical and the caption
  has the same bag of words. Only binding colour to shape/action tells it from the original.
* ``action_swap``: two objects with different actions exchange them; same objects, same set of actions, same
  bag of words. Again only binding separates them.
* ``reversal``: the original played backwards, frame for frame and noise included; its caption flips the
  directions, swaps appear/disappear and reverses the event order. Only temporal order separates them.

Why mean pooling is exactly at chance on reversal: a reversal is a permutation of the same frames, and the
mean of per-frame features is permutation invariant, so a mean-pooled (or max-pooled) video embedding is
*identical* for a video and its reversal. Every caption then scores both equally; each pairwise comparison
is a tie, which counts 1/2, i.e. exactly 50%. Reversal accuracy above 50% needs order-aware modelling.

Canonical captions (fixed article and paraphrase, sorted clauses, events in time order; see
``synthetic_grammar.canonical_caption``) name a composition. A group is rejected unless its 4 canonical captions are
distinct; val and test compositions never occur in train, and each val/test composition occurs once in
val+test, so a full caption has exactly one matching video in its gallery.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vtrbench.data.synthetic_grammar import (
    APPEAR,
    COLOUR,
    COLOURS,
    DISAPPEAR,
    DOWN,
    LABEL,
    LEFT,
    RIGHT,
    SHAPE,
    SHAPES,
    SIDE,
    STATIC,
    TIME,
    UP,
    X,
    Y,
    caption,
    key,
    mention_subsets,
)

RGB = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [170, 0, 255], [0, 255, 255]], np.uint8)
VARIANTS = ("original", "colour_swap", "action_swap", "reversal")
DIRECTION = {LEFT: (-1, 0), RIGHT: (1, 0), UP: (0, -1), DOWN: (0, 1)}
# The same action seen backwards in time.
REVERSED = {
    LEFT: RIGHT,
    RIGHT: LEFT,
    UP: DOWN,
    DOWN: UP,
    STATIC: STATIC,
    APPEAR: DISAPPEAR,
    DISAPPEAR: APPEAR,
}
P_MOVE, P_STATIC = 0.5, 0.15  # action probabilities; events (appear / disappear) take the remaining 0.35
SPLIT_CODE = {"train": 0, "val": 1, "test": 2, "frames": 3, "distractors": 4}  # one random stream per split: sizes
# do not leak across ("frames": the single-frame pretraining pairs of synthetic_frames.py; "distractors": the
# gallery-scale videos of distractor_frames)
_MAX_TRIES = 200  # placement attempts before a scene (or a group's action swap) is re-sampled
_NOISE_CHUNK = 256  # groups of background noise drawn at once (fixed: part of the random stream)


@dataclass
class SyntheticConfig:
    """Generator parameters; the defaults are the benchmark of ``config/config.yaml`` (2-3 objects, full captions)."""

    train_groups: int = 3000  # groups of 4 videos (original + 3 hard negatives) in train
    val_groups: int = 100  # groups of 4 in val
    test_groups: int = 250  # groups of 4 in test (a 1,000-video gallery)
    frames: int = 8  # frames per video, T
    size: int = 32  # frame height = width, pixels; object sizes and travel scale with it
    min_objects: int = 2  # objects per video, lower bound (two are needed for swaps and 2 distinct actions)
    max_objects: int = 3  # objects per video, upper bound (at most 4 distinct shapes)
    partial_rate: float = 0.0  # P(a caption mentions only a random non-empty strict subset of the objects)
    train_captions: int = 5  # captions per training video, each a fresh paraphrase (and mention subset)
    eval_captions: int = 1  # captions per val/test video, fixed by the seed
    noise: int = 24  # background noise is uniform in [0, noise), uint8; objects stay brighter
    seed: int = 0  # seeds every random stream (scenes, captions, noise)

    @classmethod
    def from_dataset(cls, dataset: dict) -> SyntheticConfig:
        """The generator of a config's ``dataset`` section (``frames``, ``resolution``, ``synthetic``)."""
        return cls(frames=dataset["frames"], size=dataset["resolution"], **dataset.get("synthetic", {}))

    def __post_init__(self):
        for name in ("train_groups", "val_groups", "test_groups", "train_captions", "eval_captions"):
            _check(name, getattr(self, name), 1, None)
        _check("frames", self.frames, 2, None)
        _check("size", self.size, 16, None)
        _check("min_objects", self.min_objects, 2, len(SHAPES), "two objects with different actions")
        fit = 3 * self.size**2 // (4 * (_sizes(self.size)[1] + 1) ** 2)  # rejection sampling stays fast
        why = f"at most {len(SHAPES)} shapes; big objects may fill <= 3/4 of a {self.size}px frame"
        _check("max_objects", self.max_objects, self.min_objects, min(len(SHAPES), fit), why)
        if not 0.0 <= self.partial_rate <= 1.0:
            raise ValueError(f"partial_rate must be in [0, 1], got {self.partial_rate}")
        _check("noise", self.noise, 0, 128, "objects must stay brighter than the background")
        _check("seed", self.seed, 0, None)


def _check(name: str, value: int, lo: int, hi: int | None, why: str = "") -> None:
    if not lo <= value <= (value if hi is None else hi):
        allowed = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {allowed}{f' ({why})' if why else ''}, got {value}")


def _sizes(size: int) -> tuple[int, int]:
    """Small/big object side in px: 6 and 9 at size 32; >= 5 and 2 px apart so shapes stay distinct."""
    small = max(5, int(6 * size / 32 + 0.5))
    return small, max(small + 2, int(9 * size / 32 + 0.5))


class _Geometry:
    """Everything derived from (frames, size): object sides, travel per frame, event times, shape pixels."""

    def __init__(self, cfg: SyntheticConfig):
        T, S = cfg.frames, cfg.size
        self.T, self.S = T, S
        self.sides = _sizes(S)
        travel = int(14 * S / 32 + 0.5)  # total travel 14/32 of the frame: 2 px/frame at T=8, size 32
        self.travel = travel
        self.offset = [int(f * travel / (T - 1) + 0.5) for f in range(T)]  # [T] px moved by frame f
        margin = max(1, T // 4)
        self.event_times = list(range(margin, T - margin + 1))  # {2..6} at T=8; symmetric under t -> T - t
        self.pixels = {(k, s): np.nonzero(_shape_mask(k, s)) for k in range(len(SHAPES)) for s in self.sides}


def _shape_mask(shape: int, side: int) -> np.ndarray:
    """[side, side] bool mask of a filled square / circle / apex-up triangle / plus-sign cross."""
    y, x = np.mgrid[0:side, 0:side]
    c = (side - 1) / 2
    if shape == 0:
        return np.ones((side, side), bool)
    if shape == 1:
        return (x - c) ** 2 + (y - c) ** 2 <= (side / 2 - 0.25) ** 2
    if shape == 2:
        return np.abs(x - c) <= (y + 1) / 2
    return (np.abs(x - c) <= side / 6) | (np.abs(y - c) <= side / 6)


class _Draws:
    """Uniform draws served from a buffered numpy Generator (a scalar Generator call costs microseconds)."""

    def __init__(self, seed: int, split: str, stream: int):
        self._rng = np.random.default_rng([seed, SPLIT_CODE[split], stream])
        self._buf: list[float] = []
        self._i = 0

    def uniform(self) -> float:
        if self._i == len(self._buf):
            self._buf, self._i = self._rng.random(4096).tolist(), 0
        self._i += 1
        return self._buf[self._i - 1]

    def below(self, n: int) -> int:
        return int(self.uniform() * n)

    def sample(self, items: list, k: int) -> list:
        items = list(items)
        for i in range(k):  # partial Fisher-Yates
            j = i + self.below(len(items) - i)
            items[i], items[j] = items[j], items[i]
        return items[:k]


def _track(o: list, g: _Geometry) -> tuple[list[tuple[int, int]], list[bool]]:
    """Top-left corner per frame [T] (events do not move) and whether the object is present [T]."""
    dx, dy = DIRECTION.get(o[LABEL], (0, 0))
    xy = [(o[X] + dx * off, o[Y] + dy * off) for off in g.offset]
    if o[LABEL] == APPEAR:
        return xy, [f >= o[TIME] for f in range(g.T)]  # absent before t
    if o[LABEL] == DISAPPEAR:
        return xy, [f < o[TIME] for f in range(g.T)]  # absent from t on
    return xy, [True] * g.T


def _valid(objs: list[list], g: _Geometry) -> bool:
    """Whole trajectory in frame, and no two present objects' boxes closer than 1 px of background."""
    tracks = [_track(o, g) for o in objs]
    for o, (xy, _) in zip(objs, tracks, strict=True):
        hi = g.S - g.sides[o[SIDE]]
        if not all(0 <= x <= hi and 0 <= y <= hi for x, y in (xy[0], xy[-1])):  # motion is monotone
            return False
    for a, b in itertools.combinations(range(len(objs)), 2):
        sa, sb = g.sides[objs[a][SIDE]], g.sides[objs[b][SIDE]]
        (xya, ona), (xyb, onb) = tracks[a], tracks[b]
        for (xa, ya), (xb, yb), both in zip(xya, xyb, map(bool.__and__, ona, onb), strict=True):
            if both and xa < xb + sb + 1 and xb < xa + sa + 1 and ya < yb + sb + 1 and yb < ya + sa + 1:
                return False
    return True


def _place(objs: list[list], which: tuple[int, ...], g: _Geometry, d: _Draws) -> bool:
    """Re-sample the start positions of objects ``which`` (in frame by construction) until ``_valid``."""
    for _ in range(_MAX_TRIES):
        for i in which:
            o = objs[i]
            hi = g.S - g.sides[o[SIDE]]
            dx, dy = DIRECTION.get(o[LABEL], (0, 0))
            lo_x, hi_x = (g.travel if dx < 0 else 0), hi - (g.travel if dx > 0 else 0)
            lo_y, hi_y = (g.travel if dy < 0 else 0), hi - (g.travel if dy > 0 else 0)
            o[X] = lo_x + d.below(hi_x - lo_x + 1)
            o[Y] = lo_y + d.below(hi_y - lo_y + 1)
        if _valid(objs, g):
            return True
    return False


def _sample_scene(cfg: SyntheticConfig, g: _Geometry, d: _Draws) -> list[list]:
    """One original video: 2-3 objects, >= 2 distinct actions, distinct event times, no overlaps."""
    while True:
        n = cfg.min_objects + d.below(cfg.max_objects - cfg.min_objects + 1)
        shapes, colours = d.sample(range(len(SHAPES)), n), d.sample(range(len(COLOURS)), n)
        free, objs = list(g.event_times), []
        for shape, colour in zip(shapes, colours, strict=True):
            u, t = d.uniform(), -1
            if u < P_MOVE:
                label = d.below(4)
            elif u < P_MOVE + P_STATIC:
                label = STATIC
            else:
                label = APPEAR + d.below(2)
                t = free.pop(d.below(len(free))) if free else -2
            objs.append([shape, colour, d.below(2), label, t, 0, 0])
        if -2 in (o[TIME] for o in objs) or len({o[LABEL] for o in objs}) < 2:
            continue
        if _place(objs, tuple(range(n)), g, d):
            return objs


def _make_group(orig: list[list], g: _Geometry, d: _Draws) -> list[list[list]] | None:
    """[original, colour_swap, action_swap, reversal] scenes, or None if the action swap cannot be placed."""
    n = len(orig)
    i, j = d.sample(range(n), 2)
    colour = [list(o) for o in orig]
    colour[i][COLOUR], colour[j][COLOUR] = orig[j][COLOUR], orig[i][COLOUR]  # same trajectories
    pairs = [(a, b) for a, b in itertools.combinations(range(n), 2) if orig[a][LABEL] != orig[b][LABEL]]
    a, b = pairs[d.below(len(pairs))]
    action = [list(o) for o in orig]
    for k in (LABEL, TIME):  # an event keeps its time when it moves to the other object
        action[a][k], action[b][k] = orig[b][k], orig[a][k]
    if not _valid(action, g) and not _place(action, (a, b), g, d):
        return None
    reverse = []
    for o in orig:  # caption-side description of frames[::-1]: start where the original ends
        x, y = _track(o, g)[0][-1]
        t = g.T - o[TIME] if o[LABEL] >= APPEAR else -1  # appear at t (present f >= t) -> disappear at T - t
        reverse.append([o[SHAPE], o[COLOUR], o[SIDE], REVERSED[o[LABEL]], t, x, y])
    return [orig, colour, action, reverse]


def _sample_groups(cfg: SyntheticConfig, g: _Geometry, split: str, n_groups: int, seen: set, stream: int = 0) -> list:
    """Rejection-sample ``n_groups`` groups avoiding ``seen``; val/test keys are added to it (train and the
    distractors must avoid them)."""
    d, groups = _Draws(cfg.seed, split, stream), []
    full = tuple(range(cfg.max_objects))
    for _ in range(1000 * n_groups + 10_000):
        group = _make_group(_sample_scene(cfg, g, d), g, d)
        if group is None:
            continue
        keys = {key(scene, full[: len(scene)]) for scene in group}
        if len(keys) < 4 or keys & seen:
            continue
        subsets = mention_subsets(group)  # always required, so videos do not depend on partial_rate
        if not subsets:
            continue
        if split in ("val", "test"):
            seen |= keys
        groups.append((group, subsets))
        if len(groups) == n_groups:
            return groups
    raise RuntimeError(f"{split}: could not sample {n_groups} distinct groups; lower the group count")


def _render(groups: list, cfg: SyntheticConfig, g: _Geometry, split: str, stream: int = 2) -> np.ndarray:
    """uint8 [4 * n_groups, T, S, S, 3]; variants share the group's noise, the reversal is frames[::-1]."""
    G, T, S = len(groups), g.T, g.S
    frames = np.empty((4 * G, T, S, S, 3), np.uint8)
    rng = np.random.default_rng([cfg.seed, SPLIT_CODE[split], stream])
    for start in range(0, G, _NOISE_CHUNK):
        stop = min(G, start + _NOISE_CHUNK)
        shape = (stop - start, T, S, S, 3)
        noise = rng.integers(0, max(cfg.noise, 1), size=shape, dtype=np.uint8)  # [G', T, S, S, 3]
        for v in range(3):
            frames[4 * start + v : 4 * stop : 4] = noise
    for n, (group, _) in enumerate(groups):
        for v in range(3):
            out = frames[4 * n + v]  # [T, S, S, 3] view
            for o in group[v]:
                xy, on = _track(o, g)
                present = [f for f in range(T) if on[f]]
                xy = np.array([xy[f] for f in present])  # [F, 2]
                dy, dx = g.pixels[(o[SHAPE], g.sides[o[SIDE]])]  # [P]
                out[np.array(present)[:, None], xy[:, 1:] + dy, xy[:, :1] + dx] = RGB[o[COLOUR]]
    frames[3::4] = frames[0::4, ::-1]  # exact time reversal, noise included
    return frames


def _captions(groups: list, cfg: SyntheticConfig, split: str, per_video: int) -> list[list[str]]:
    """[4 * n_groups][per_video] caption texts; each slot draws one mention subset shared by the group."""
    d, out = _Draws(cfg.seed, split, 1), []
    for group, subsets in groups:
        texts: list[list[str]] = [[], [], [], []]
        for _ in range(per_video):
            subset = tuple(range(len(group[0])))
            if d.uniform() < cfg.partial_rate:
                sizes = sorted({len(s) for s in subsets})
                r = sizes[d.below(len(sizes))]  # uniform over mention counts, then over subsets of that count
                of_size = [s for s in subsets if len(s) == r]
                subset = of_size[d.below(len(of_size))]
            for v, scene in enumerate(group):
                texts[v].append(caption(scene, subset, d))
        out += texts
    return out


def evaluation_scenes(cfg: SyntheticConfig) -> list[list[list]]:
    """Every val and test video's scene (all 4 variants of each group), sampled exactly as :func:`generate`
    samples them, without rendering: what a pretraining set must stay clear of."""
    g, seen, scenes = _Geometry(cfg), set(), []
    for split in ("test", "val"):  # generate()'s order: val avoids test's compositions
        for group, _ in _sample_groups(cfg, g, split, getattr(cfg, f"{split}_groups"), seen):
            scenes += group
    return scenes


def evaluation_keys(cfg: SyntheticConfig) -> set:
    """The compositions (full canonical keys) of every val and test video: what a distractor must not be."""
    full = tuple(range(cfg.max_objects))
    return {key(scene, full[: len(scene)]) for scene in evaluation_scenes(cfg)}


DISTRACTOR_BLOCK = 4 * _NOISE_CHUNK  # videos per generated block (1,024): the unit a distractor range is cut from


def distractor_groups(cfg: SyntheticConfig, block: int, avoid: set) -> list:
    """Block ``block`` of the distractor stream: ``DISTRACTOR_BLOCK // 4`` groups of 4, none of whose videos has a
    composition in ``avoid`` (:func:`evaluation_keys`), so every val and test caption keeps exactly one matching
    video in a gallery enlarged with them. Each block has its own random streams: block b is the same whichever
    range of the stream asks for it."""
    return _sample_groups(cfg, _Geometry(cfg), "distractors", DISTRACTOR_BLOCK // 4, set(avoid), stream=2 * block)


def distractor_frames(cfg: SyntheticConfig, start: int, stop: int, avoid: set) -> Iterator[np.ndarray]:
    """Videos ``start:stop`` of the distractor stream, uint8 [n, T, S, S, 3], one block's share at a time (never more
    than a block of frames in memory)."""
    g = _Geometry(cfg)
    for block in range(start // DISTRACTOR_BLOCK, -(-stop // DISTRACTOR_BLOCK)):
        first = block * DISTRACTOR_BLOCK
        groups = distractor_groups(cfg, block, avoid)
        frames = _render(groups, cfg, g, "distractors", stream=2 * block + 1)
        yield frames[max(start, first) - first : min(stop, first + DISTRACTOR_BLOCK) - first]


def generate(cfg: SyntheticConfig) -> dict[str, tuple[dict, dict]]:
    """Generate all three splits.

    Args:
        cfg: the generator parameters.

    Returns:
        ``{split: (videos, captions)}`` for "train", "val", "test". ``videos`` has ``video_id`` [N] str,
        ``frames`` uint8 [N, T, size, size, 3], ``group_id`` int32 [N] and ``variant`` [N] str, with
        N = 4 * groups and each group's 4 variants consecutive in :data:`VARIANTS` order. ``captions`` has
        ``video_id`` and ``text``, ``train_captions`` (train) or ``eval_captions`` (val/test) rows per video,
        in video order. Videos do not depend on ``partial_rate`` or the caption counts.

    Raises:
        RuntimeError: when rejection sampling cannot find enough distinct groups.
    """
    g = _Geometry(cfg)
    seen: set = set()
    out = {}
    for split in ("test", "val", "train"):  # eval first: train must avoid their compositions
        n_groups = getattr(cfg, f"{split}_groups")
        groups = _sample_groups(cfg, g, split, n_groups, seen)
        per_video = cfg.train_captions if split == "train" else cfg.eval_captions
        ids = [f"synth_{split}_{n:05d}_{v}" for n in range(n_groups) for v in VARIANTS]
        videos = {
            "video_id": ids,
            "frames": _render(groups, cfg, g, split),
            "group_id": np.repeat(np.arange(n_groups, dtype=np.int32), 4),
            "variant": list(VARIANTS) * n_groups,
        }
        texts = _captions(groups, cfg, split, per_video)
        captions = {
            "video_id": [i for i in ids for _ in range(per_video)],
            "text": [text for video in texts for text in video],
        }
        out[split] = (videos, captions)
    return {split: out[split] for split in ("train", "val", "test")}
