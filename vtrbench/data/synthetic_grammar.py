"""SynthVTT's words: the object layout, the caption grammar (with paraphrases), its vocabulary and canonical form.

Split from ``synthetic.py`` (scenes, rendering, splits) so each reads in one sitting; the generator draws captions
through :func:`caption` and the prepare step builds the word-level vocabulary from :func:`vocabulary`.
"""

from __future__ import annotations

import itertools
import re
from typing import Protocol

SHAPES = ("square", "circle", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple", "cyan")
SIZE_WORDS = ("small", "big")
# Action labels; moves first (index = direction), then static and the two events.
LEFT, RIGHT, UP, DOWN, STATIC, APPEAR, DISAPPEAR = range(7)
PARAPHRASES = (  # index 0 is the canonical wording
    ("moves left", "goes left", "slides to the left"),
    ("moves right", "goes right", "slides to the right"),
    ("moves up", "goes up", "slides upward"),
    ("moves down", "goes down", "slides downward"),
    ("stays still", "does not move", "remains in place"),
    ("appears", "shows up", "comes into view"),
    ("disappears", "vanishes", "goes out of view"),
)
ARTICLES = ("a", "the")
CONNECTORS = ("and", "while")
ORDER_WORDS = ("first", "then", "before", "after")
# An object is a list [shape, colour, side index, label, event time (-1: none), x0, y0]; shape = identity.
SHAPE, COLOUR, SIDE, LABEL, TIME, X, Y = range(7)


class Draws(Protocol):
    """The random draws a caption needs (``synthetic._Draws``: a buffered, seeded stream)."""

    def below(self, n: int) -> int: ...

    def sample(self, items: list, k: int) -> list: ...


def key(objs: list[list], subset: tuple[int, ...]) -> tuple:
    """Canonical description restricted to ``subset``: (sorted non-event clauses, events in time order)."""
    chosen = [objs[i] for i in subset]
    still = sorted((o[SIDE], o[COLOUR], o[SHAPE], o[LABEL]) for o in chosen if o[LABEL] < APPEAR)
    events = sorted((o[TIME], o[SIDE], o[COLOUR], o[SHAPE], o[LABEL]) for o in chosen if o[LABEL] >= APPEAR)
    return tuple(still), tuple(e[1:] for e in events)


def mention_subsets(group: list[list[list]]) -> list[tuple[int, ...]]:
    """Strict non-empty subsets under which the 4 captions stay distinct (hard negatives stay negatives)."""
    n = len(group[0])
    subsets = [s for r in range(1, n) for s in itertools.combinations(range(n), r)]
    return [s for s in subsets if len({key(scene, s) for scene in group}) == 4]


def caption(objs: list[list], subset: tuple[int, ...], d: Draws) -> str:
    """A fresh random paraphrase of the objects in ``subset``."""
    clauses, events = [], []
    for i in subset:
        o = objs[i]
        words = (ARTICLES[d.below(2)], SIZE_WORDS[o[SIDE]], COLOURS[o[COLOUR]], SHAPES[o[SHAPE]])
        clause = " ".join(words) + " " + PARAPHRASES[o[LABEL]][d.below(3)]
        if o[LABEL] >= APPEAR:
            events.append((o[TIME], clause))
        else:
            clauses.append(clause)
    ordered = [c for _, c in sorted(events)]
    if len(ordered) >= 2:
        form = d.below(3)
        if form == 0:
            ordered = ["first " + " then ".join(ordered)]
        elif form == 1:
            ordered = [" before ".join(ordered)]
        else:
            ordered = [" after ".join(reversed(ordered))]
    clauses += ordered
    clauses = d.sample(clauses, len(clauses))  # shuffled
    text = clauses[0]
    for clause in clauses[1:]:
        text += f" {CONNECTORS[d.below(2)]} {clause}"
    return text


def vocabulary() -> list[str]:
    """Every word the caption grammar can produce, lower-case and sorted (no special tokens).

    The grammar is the same for every config, so so is the list; a small config may never use some words
    (e.g. the event-order words when ``frames=2`` leaves room for one event only).
    """
    phrases = [*ARTICLES, *SIZE_WORDS, *COLOURS, *SHAPES, *CONNECTORS, *ORDER_WORDS, *sum(PARAPHRASES, ())]
    return sorted({w for p in phrases for w in p.split()})


_CANONICAL_VERB = {p: forms[0] for forms in PARAPHRASES for p in forms}


def canonical_caption(text: str) -> str:
    """The canonical form of a SynthVTT caption: article "the", first paraphrase, non-event clauses sorted,
    then the events in time order ("first X then Y"), joined by "and". Two captions describe the same
    composition iff their canonical forms are equal.

    >>> canonical_caption("a big red square slides to the left while the small cyan cross comes into view")
    'the big red square moves left and the small cyan cross appears'
    >>> canonical_caption("a small blue circle vanishes after the big green triangle shows up")
    'first the big green triangle appears then the small blue circle disappears'

    Raises:
        ValueError: when the text is not produced by this grammar.
    """
    still, events = [], []
    for unit in re.split(r" (?:and|while) ", text):
        if unit.startswith("first "):
            parts = unit[len("first ") :].split(" then ")
        elif " before " in unit:
            parts = unit.split(" before ")
        else:
            parts = unit.split(" after ")[::-1]
        clauses = [_canonical_clause(p, text) for p in parts]
        if len(clauses) > 1 or clauses[0].endswith("appears"):
            if events or not all(c.endswith("appears") for c in clauses):
                raise ValueError(f"not a SynthVTT caption (events must form one ordered block): {text!r}")
            events = clauses
        else:
            still += clauses
    if len(events) > 1:
        events = ["first " + " then ".join(events)]
    units = sorted(still) + events
    return " and ".join(units)


def _canonical_clause(clause: str, text: str) -> str:
    words = clause.split()
    verb = _CANONICAL_VERB.get(" ".join(words[4:]))
    if len(words) < 5 or words[0] not in ARTICLES or words[3] not in SHAPES or verb is None:
        raise ValueError(f"not a SynthVTT caption (clause {clause!r}): {text!r}")
    return " ".join(["the", *words[1:4], verb])
