"""Frame sweep (CRET paper Fig. 5): one option of a method at each number of frames M, at equal steps and cost.

Driven by config, not by a class: ``sweep.method`` names any configured method whose options include
``global_loss``; the sweep trains it with each value of ``sweep.losses`` (CRET: gees, nce) at each frame count
``sweep.frames`` (train and eval alike), on its own dataset stored with ``max(sweep.frames)`` frames (the SynthVTT
generator otherwise unchanged), with the same step budget and seeds for every point. The points are ordinary runs
(``vtrbench.plan``: ``results/{run}/runs/{method}_{loss}_f{frames}/{fp}/seed{seed}``); this module builds their
configs (without importing torch: the workflow plans them); ``vtrbench.report.sweep`` turns their result files
into tables.
"""

from __future__ import annotations

import copy
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
