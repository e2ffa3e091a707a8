"""Single SynthVTT frames paired with descriptions of what that one frame shows: the pretraining set of the shared
towers (``vtrbench/pretrain.py``), as CLIP's image-text pairs are for CLIP4Clip, X-Pool or DRL.

A description names each object the frame shows by size, colour and shape and says where it is ("a big red square
at the top left and the small blue circle at the centre"). It says nothing a single frame cannot show: no action,
no event and no order (none of the caption grammar's verbs or order words; ``STATIC_WORDS`` is its whole
vocabulary), so what a video model learns about motion and time it learns in fine-tuning.

Scenes come from their own random stream (``SPLIT_CODE["frames"]``) and skip every scene, and every frame, whose
set of objects (shape, colour, size) is the object set of a val or test video, any variant: pretraining never sees
an evaluation composition, not even without its actions.
"""

from __future__ import annotations

import numpy as np

from vtrbench.data.synthetic import (
    RGB,
    SPLIT_CODE,
    SyntheticConfig,
    _Draws,
    _Geometry,
    _sample_scene,
    _track,
    evaluation_scenes,
)
from vtrbench.data.synthetic_grammar import ARTICLES, COLOUR, COLOURS, SHAPE, SHAPES, SIDE, SIZE_WORDS

ROWS, COLUMNS = ("top", "", "bottom"), ("left", "", "right")  # thirds of the frame; the middle third unnamed
STATIC_WORDS = tuple(sorted({*ARTICLES, *SIZE_WORDS, *COLOURS, *SHAPES, "at", "and", "centre", *ROWS, *COLUMNS} - {""}))


def object_set(scene: list[list]) -> frozenset:
    """What a scene shows regardless of what its objects do: {(shape, colour, size)}."""
    return frozenset((o[SHAPE], o[COLOUR], o[SIDE]) for o in scene)


def describe(visible: list[tuple[list, int, int]], g: _Geometry, d: _Draws) -> str:
    """``visible``: (object, x, y) of each object the frame shows, top-left corners in px. Objects in a random
    order, each with a random article; its place is the third of the frame its centre is in, each way."""
    clauses = []
    for o, x, y in d.sample(visible, len(visible)):
        half = g.sides[o[SIDE]] / 2
        row, column = ROWS[int(3 * (y + half) // g.S)], COLUMNS[int(3 * (x + half) // g.S)]
        where = " ".join(w for w in (row, column) if w) or "centre"
        words = (ARTICLES[d.below(2)], SIZE_WORDS[o[SIDE]], COLOURS[o[COLOUR]], SHAPES[o[SHAPE]], "at", "the", where)
        clauses.append(" ".join(words))
    return " and ".join(clauses)


def frame_pairs(cfg: SyntheticConfig, n: int, stream: int) -> tuple[np.ndarray, list[str], list[list[list]]]:
    """``n`` (frame, description) pairs: uint8 [n, size, size, 3], their texts and the scene each frame is from,
    drawn from random stream ``stream`` (0: training pairs, 1: the held-out check), each from a fresh scene at a
    random frame that shows at least one object."""
    g, d = _Geometry(cfg), _Draws(cfg.seed, "frames", stream)
    avoid = {object_set(scene) for scene in evaluation_scenes(cfg)}
    noise = np.random.default_rng([cfg.seed, SPLIT_CODE["frames"], stream])
    frames = noise.integers(0, max(cfg.noise, 1), size=(n, cfg.size, cfg.size, 3), dtype=np.uint8)
    texts: list[str] = []
    scenes: list[list[list]] = []
    while len(texts) < n:
        scene = _sample_scene(cfg, g, d)
        if object_set(scene) in avoid:
            continue
        t = d.below(g.T)
        visible = [(o, *xy[t]) for o, (xy, on) in ((o, _track(o, g)) for o in scene) if on[t]]
        if not visible or object_set([o for o, _, _ in visible]) in avoid:  # what the frame shows, too
            continue
        out = frames[len(texts)]  # [S, S, 3] view
        for o, x, y in visible:
            dy, dx = g.pixels[(o[SHAPE], g.sides[o[SIDE]])]
            out[y + dy, x + dx] = RGB[o[COLOUR]]
        texts.append(describe(visible, g, d))
        scenes.append(scene)
    return frames, texts, scenes
