"""Frame sweep (CRET paper Fig. 5): one option of a method at each number of frames M, at equal steps and cost.

Driven by config, not by a class: ``sweep.method`` names any configured method whose options include
``global_loss``; the sweep trains it with each value of ``sweep.losses`` (CRET: gees, nce) at each frame count
``sweep.frames`` (train and eval alike), on its own dataset stored with ``max(sweep.frames)`` frames (the SynthVTT
generator otherwise unchanged), with the same step budget and seeds for every point. The points are ordinary runs
(``vtrbench.plan``: ``results/{run}/runs/{method}_{loss}_f{frames}/{fp}/seed{seed}``); this module builds their
configs (without importing torch: the workflow plans them); ``vtrbench.report.sweep`` turns their result files
into tables.

Which points the sweep compares (:func:`sweep_pairs`, ``tables/sweep_comparisons.csv``): for every two losses
``a``, ``b`` of ``sweep.losses`` (``a`` listed first: gees before nce), ``a@M`` against ``b@M`` at each swept M, and
``a@F`` against ``b@max(sweep.frames)``, F = the main config's ``train.frames`` when it is swept and smaller than the
largest M. CRET's defaults give gees@M - nce@M for M = 2, 4, 8, 16 and gees@4 - nce@16: the paper's claim that GEES
at 4 frames matches NCE at 16 at about a third of the step time.
"""

from __future__ import annotations

import copy
from itertools import combinations
from typing import Any

SWEPT_OPTION = "global_loss"  # the method option the sweep varies (sweep.losses are its values)


def sweep_method_name(config: dict[str, Any], loss: str, frames: int) -> str:
    return f"{config['sweep']['method']}_{loss}_f{frames}"


def sweep_config(config: dict[str, Any], loss: str, frames: int) -> tuple[dict[str, Any], str]:
    """The config of one sweep point and its method name (``{sweep.method}_{loss}_f{frames}``).

    Everything but the frame counts, the step budget, the validation interval and the swept option is the main
    config's: the dataset is stored with ``max(sweep.frames)`` frames, ``train.frames = eval.frames = frames``.

    Whether the method's class takes the swept option is checked with the other method options
    (``vtrbench.config.check_method_options``).

    Raises:
        ValueError: ``sweep.method`` is not a configured method.
    """
    sweep = config["sweep"]
    base = sweep["method"]
    if base not in config["methods"]:
        raise ValueError(
            f"sweep.method={base!r} is not a configured method; the config defines: {', '.join(config['methods'])}"
        )
    entry = {k: v for k, v in config["methods"][base].items() if k != "steps"}  # sweep.steps is the budget
    entry[SWEPT_OPTION] = loss
    out = {k: copy.deepcopy(config[k]) for k in ("run_name", "dataset", "model", "train", "eval") if k in config}
    out["dataset"]["frames"] = max(sweep["frames"])
    out["train"].update(frames=frames, steps=sweep["steps"], eval_every=sweep["eval_every"])
    out["eval"]["frames"] = frames
    name = sweep_method_name(config, loss, frames)
    out["methods"] = {name: entry}
    return out, name


def sweep_points(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(method name, config) of every (loss, frames) point of the sweep."""
    return [
        sweep_config(config, loss, frames)[::-1]
        for loss in config["sweep"]["losses"]
        for frames in config["sweep"]["frames"]
    ]


Point = tuple[str, int]  # (loss, frames)


def point_label(point: Point) -> str:
    """``gees@4``: a sweep point as the comparison table and the CLI name it."""
    return f"{point[0]}@{point[1]}"


def parse_pair(text: str) -> tuple[Point, Point]:
    """``gees@4:nce@16`` -> (("gees", 4), ("nce", 16)).

    Raises:
        ValueError: not two ``loss@frames`` points joined by ``:``.
    """
    try:
        sides = []
        for side in text.split(":"):
            loss, frames = side.split("@")
            sides.append((loss, int(frames)))
        a, b = sides
        return a, b
    except ValueError as err:
        raise ValueError(f"expected a pair of sweep points like gees@4:nce@16, got {text!r}") from err


def format_pair(pair: tuple[Point, Point]) -> str:
    return ":".join(point_label(p) for p in pair)


def pairs_of(losses: list[str], frames: list[int], main_frames: int | None = None) -> list[tuple[Point, Point]]:
    """The compared (A, B) points: for every two losses a before b, ``a@M`` vs ``b@M`` at each M (ascending), then
    ``a@main_frames`` vs ``b@max(frames)`` when ``main_frames`` is swept and below the largest M."""
    frames = sorted(set(frames))
    out: list[tuple[Point, Point]] = []
    for a, b in combinations(list(dict.fromkeys(losses)), 2):
        out += [((a, m), (b, m)) for m in frames]
        if main_frames in frames and main_frames < frames[-1]:
            out.append(((a, main_frames), (b, frames[-1])))
    return out


def sweep_pairs(config: dict[str, Any]) -> list[tuple[Point, Point]]:
    """The sweep's comparisons (module docstring): from ``sweep.losses``, ``sweep.frames`` and ``train.frames``."""
    sweep = config["sweep"]
    return pairs_of(list(sweep["losses"]), [int(f) for f in sweep["frames"]], int(config["train"]["frames"]))
