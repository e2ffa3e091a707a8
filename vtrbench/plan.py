"""Where every result lives: one folder per unit of work, named by the fingerprint of the config that defines it.

A *unit* is a prepared dataset, a trained method (its seeds below it), a latency or a throughput measurement.
Its folder is ``results/{run_name}/{section}/{name}/{fingerprint}/`` and holds ``config.json``, the part of the
configuration the unit depends on (and nothing else). The fingerprint is a hash of that JSON, so:

* two configs (smoke, default, ablation) write under their own ``results/{run_name}`` and never share a file;
* a changed value (``train.lr``) gives the affected units new folders: the old runs stay on disk untouched, the
  new ones start fresh, and nothing is ever resumed from, or overwritten by, a run of another configuration;
* a value a unit does not depend on (a new seed, a new method, a latency setting for a training run) changes
  nothing that is already done.

The workflow (``workflow/rules/common.smk``) and the CLI both build units through these functions.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

RUN_SECTIONS = ("dataset", "model", "train", "eval")  # what a trained run depends on, besides its methods
UNTRACKED_TRAIN_KEYS = ("workers",)  # do not change any number a run produces (batches are pure functions of step)


def fingerprint(payload: dict[str, Any]) -> str:
    """8 hex digits of the SHA-256 of the canonical JSON of ``payload``."""
    return hashlib.sha256(canonical(payload).encode()).hexdigest()[:8]


def canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Unit:
    """One result folder: ``{root}/{section}/{name}/{fp}``, defined by ``config`` (written as config.json)."""

    section: str  # data | runs | latency | throughput
    name: str  # dataset name, method name, or a sweep point's name
    config: dict[str, Any] = field(compare=False, hash=False)
    fp: str = ""

    def folder(self, root: str) -> str:
        return f"{root}/{self.section}/{self.name}/{self.fp}"


def make_unit(section: str, name: str, config: dict[str, Any]) -> Unit:
    return Unit(section, name, config, fingerprint(config))


def stages(methods: dict[str, Any], name: str) -> list[str]:
    """``name`` and every configured method it depends on (warm start ``init_from``, re-ranking stages)."""
    entry = methods[name]
    direct = [entry[k] for k in ("init_from", "first", "second") if entry.get(k)]
    out = [name]
    for dep in direct:
        out += [m for m in stages(methods, dep) if m not in out]
    return out


def dataset_unit(config: dict[str, Any]) -> Unit:
    """The prepared dataset every run of ``config`` reads."""
    return make_unit("data", config["dataset"]["name"], {"dataset": config["dataset"]})


def run_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """What a trained (or re-ranked, or external) method depends on: the shared sections and its own stages."""
    out = {key: copy.deepcopy(config[key]) for key in RUN_SECTIONS if key in config}
    if "train" in out:
        out["train"] = {k: v for k, v in out["train"].items() if k not in UNTRACKED_TRAIN_KEYS}
    out["methods"] = {m: copy.deepcopy(config["methods"][m]) for m in stages(config["methods"], name)}
    return out


def run_unit(config: dict[str, Any], name: str) -> Unit:
    return make_unit("runs", name, run_config(config, name))


def longer(config: dict[str, Any], factor: int) -> dict[str, Any]:
    """The config with ``factor`` x every budget: ``train.steps`` and each method's own ``steps`` option (the
    convention for a method whose options set its own budget, e.g. a warm-started cross-encoder; its default
    counts when the config leaves it out). Same schedule shape."""
    from vtrbench.methods import resolve  # here, not at the top: the rest of plan needs no torch

    out = copy.deepcopy(config)
    out["train"]["steps"] *= factor
    for entry in out["methods"].values():
        options = {f.name: f for f in fields(resolve(entry["class"]).options_class)}
        if "steps" in options:
            steps = entry.get("steps", options["steps"].default)
            if isinstance(steps, int):
                entry["steps"] = steps * factor
    return out


def measurement_unit(config: dict[str, Any], section: str, name: str) -> Unit:
    """A latency or throughput measurement of method ``name``: its run's config plus the benchmark's settings."""
    key = {"latency": "latency", "throughput": "throughput"}[section]
    return make_unit(section, name, {**run_config(config, name), key: copy.deepcopy(config[key])})


def loss_level_unit(config: dict[str, Any]) -> Unit:
    """The losses timed alone: the benchmark grid, the device settings and the configured method classes (each
    class may declare losses to time, ``RetrievalMethod.loss_benchmarks``)."""
    from vtrbench.methods import resolve

    classes = sorted({e["class"] for e in config["methods"].values() if resolve(e["class"]).loss_benchmarks()})
    unit = {key: copy.deepcopy(config[key]) for key in ("throughput", "train")}
    unit["methods"] = {cls: {"class": cls} for cls in classes}
    return make_unit("throughput", "losses", unit)


def full_config(unit_config: dict[str, Any], run_name: str) -> dict[str, Any]:
    """A unit's config.json as the CLI validates it (the run name is the results root, not part of the hash)."""
    return {"run_name": run_name, **copy.deepcopy(unit_config)}
