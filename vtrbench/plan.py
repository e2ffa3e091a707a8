"""Where every result lives: one folder per unit of work, named by the fingerprint of the config that defines it.

A *unit* is a prepared dataset, its tokenised captions, the frozen towers' cached features, a trained method (its
seeds below it), a latency or a throughput measurement, the report.
Its folder is ``results/{run_name}/{section}/{name}/{fingerprint}/`` and holds ``config.json``, the part of the
configuration the unit depends on (and nothing else). The fingerprint is a hash of that JSON, so:

* two configs (smoke, default, ablation) write under their own ``results/{run_name}`` and never share a file;
* a changed value (``train.lr``) gives the affected units new folders: the old runs stay on disk untouched, the
  new ones start fresh, and nothing is ever resumed from, or overwritten by, a run of another configuration;
* a value a unit does not depend on (a new seed, a new method, a latency setting for a training run) changes
  nothing that is already done.

:class:`Plan` is every unit, result file and table of one workflow config, computed without torch (method kinds
come from ``vtrbench.registry``); ``workflow/rules/common.smk`` only maps it to rules, and the CLI builds units
through the same functions.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from vtrbench.config import n_test_videos, scale_methods
from vtrbench.registry import TRAINED_KINDS, kind_of
from vtrbench.sweep import format_pair, sweep_pairs, sweep_points

RUN_SECTIONS = ("dataset", "model", "train", "eval")  # what a trained run depends on, besides its methods
UNTRACKED_TRAIN_KEYS = ("workers",)  # do not change any number a run produces (batches are pure functions of step)
# The opt-in test-time variant (vtrbench/postprocess.py) adds tagged files beside the plain ones and changes nothing
# else, so turning it on re-runs the test evaluations only (the evaluate rules pass it: Plan.postprocess_args)
UNTRACKED_EVAL_KEYS = ("postprocess", "postprocess_temperature")


def fingerprint(payload: dict[str, Any]) -> str:
    """8 hex digits of the SHA-256 of the canonical JSON of ``payload``."""
    return hashlib.sha256(canonical(payload).encode()).hexdigest()[:8]


def canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Unit:
    """One result folder: ``{root}/{section}/{name}/{fp}``, defined by ``config`` (written as config.json)."""

    section: str  # data | tokens | runs | latency | throughput | report
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


PRETRAINED_CHECKPOINT = "clip"  # the folder under a pretrain unit that model.text/frame.pretrained name


def pretrain_unit(config: dict[str, Any]) -> Unit:
    """The pretraining stage of a SynthVTT run (``vtrbench/pretrain.py``): the generator's settings, the caption
    length of the text tower and the stage's own section."""
    text = {"text": {"max_length": config["model"]["text"]["max_length"]}}
    return make_unit(
        "pretrain",
        config["dataset"]["name"],
        {"dataset": config["dataset"], "model": text, "pretrain": config["pretrain"]},
    )


def with_pretrained_towers(config: dict[str, Any], checkpoint: str) -> dict[str, Any]:
    """``config`` with both towers loading ``checkpoint`` (every unit that builds towers then names it, so its
    fingerprint changes with the pretraining's)."""
    out = copy.deepcopy(config)
    for tower in ("text", "frame"):
        out["model"][tower]["pretrained"] = checkpoint
    return out


def dataset_unit(config: dict[str, Any]) -> Unit:
    """The prepared dataset every run of ``config`` reads."""
    return make_unit("data", config["dataset"]["name"], {"dataset": config["dataset"]})


def tokens_unit(config: dict[str, Any]) -> Unit:
    """The tokenised captions of the prepared dataset, for this config's text tower (``vtrbench tokenize``)."""
    return make_unit(
        "tokens", config["dataset"]["name"], {"dataset": config["dataset"], "model": {"text": config["model"]["text"]}}
    )


def features_unit(config: dict[str, Any]) -> Unit:
    """The frozen towers' outputs on the prepared training split (``train.freeze_towers``, ``vtrbench.features``):
    they depend on the dataset and the two towers (their checkpoints' paths name the pretraining's fingerprint)."""
    towers = {tower: config["model"][tower] for tower in ("text", "frame")}
    return make_unit("features", config["dataset"]["name"], {"dataset": config["dataset"], "model": towers})


def run_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """What a trained (or re-ranked, or external) method depends on: the shared sections and its own stages (and
    the budget factor of a budget test's longer run)."""
    out = {key: copy.deepcopy(config[key]) for key in RUN_SECTIONS if key in config}
    if "train" in out:
        out["train"] = {k: v for k, v in out["train"].items() if k not in UNTRACKED_TRAIN_KEYS}
    if "eval" in out:
        out["eval"] = {k: v for k, v in out["eval"].items() if k not in UNTRACKED_EVAL_KEYS}
    out["methods"] = {m: copy.deepcopy(config["methods"][m]) for m in stages(config["methods"], name)}
    if config.get("budget_factor", 1) != 1:
        out["budget_factor"] = config["budget_factor"]
    return out


def run_unit(config: dict[str, Any], name: str) -> Unit:
    return make_unit("runs", name, run_config(config, name))


def longer(config: dict[str, Any], factor: int) -> dict[str, Any]:
    """The config with ``factor`` x every budget (``budget_factor``: ``vtrbench.runs.effective_train`` multiplies
    the steps a method trains, ``train.steps`` or its own ``steps`` option). Same schedule shape."""
    out = copy.deepcopy(config)
    out["budget_factor"] = config.get("budget_factor", 1) * factor
    return out


def measurement_unit(config: dict[str, Any], section: str, name: str) -> Unit:
    """A latency or throughput measurement of method ``name``: its run's config plus the benchmark's settings."""
    key = {"latency": "latency", "throughput": "throughput"}[section]
    return make_unit(section, name, {**run_config(config, name), key: copy.deepcopy(config[key])})


def distractors_unit(config: dict[str, Any], name: str) -> Unit:
    """Method ``name``'s gallery vectors of the distractor stream (``vtrbench.scale.encode_distractors``): its run's
    config (so a changed model gets new vectors) and the stored precision."""
    return make_unit("distractors", name, {**run_config(config, name), "scale": {"dtype": config["scale"]["dtype"]}})


def scale_unit(config: dict[str, Any], name: str, largest: int) -> Unit:
    """Method ``name``'s gallery-scale measurement (``vtrbench.scale.run_scale``) up to ``largest`` videos; a pair
    method's also reads the candidate search's settings (a multi-vector method searches its frames that way)."""
    scale = {k: copy.deepcopy(v) for k, v in config["scale"].items() if k not in ("enabled", "methods", "largest")}
    payload = {**run_config(config, name), "scale": scale | {"largest": largest}}
    latency = {"threads": config["latency"]["threads"]}
    if kind_of(config["methods"][name]["class"]) == "pair":
        latency |= {key: copy.deepcopy(config["latency"][key]) for key in ("multivector_depth", "multivector_k")}
    return make_unit("scale", name, payload | {"latency": latency})


def distractor_ranges(largest: int, n_test: int, shard_size: int) -> list[tuple[int, int]]:
    """The encode jobs' ranges of the distractor stream: the ``largest - n_test`` videos a gallery of ``largest``
    needs beyond the test split, ``shard_size`` per job."""
    needed = max(0, largest - n_test)
    return [(lo, min(lo + shard_size, needed)) for lo in range(0, needed, shard_size)]


def loss_level_unit(config: dict[str, Any]) -> Unit:
    """The losses timed alone: the benchmark grid, the device settings and the configured method classes (each
    class may declare losses to time, ``RetrievalMethod.loss_benchmarks``)."""
    classes = sorted({e["class"] for e in config["methods"].values() if kind_of(e["class"]) in TRAINED_KINDS})
    unit = {key: copy.deepcopy(config[key]) for key in ("throughput", "train")}
    unit["methods"] = {cls: {"class": cls} for cls in classes}
    return make_unit("throughput", "losses", unit)


def full_config(unit_config: dict[str, Any], run_name: str) -> dict[str, Any]:
    """A unit's config.json as the CLI validates it (the run name is the results root, not part of the hash)."""
    return {"run_name": run_name, **copy.deepcopy(unit_config)}


TOWER_SECTIONS = ("tokens", "features", "runs", "latency", "throughput", "distractors", "scale")  # jobs build towers
# Sections whose ``enabled`` adds their tables.
OPTIONAL_SECTIONS = ("pretrain", "plateau", "latency", "throughput", "sweep", "scale")


class Plan:
    """Every unit, file and table of one workflow config (``results/{run_name}``), and which file each job reads.

    Built from a validated config; knows methods by kind only. The workflow's rules are a map of this object,
    and ``tests/test_plan.py`` checks it directly.
    """

    def __init__(self, config: dict[str, Any]):
        self.root = f"results/{config['run_name']}"
        self.report = make_unit("report", "report", {k: v for k, v in config.items() if k != "run_name"})
        self.pretrain = pretrain_unit(config) if config["pretrain"]["enabled"] else None
        if self.pretrain is not None:
            config = with_pretrained_towers(config, f"{self.folder(self.pretrain)}/{PRETRAINED_CHECKPOINT}")
        self.config = config
        self.methods = list(config["methods"])
        self.seeds = [int(s) for s in config["seeds"]]
        self.latency_seed = self.seeds[0]
        self.kinds = {m: kind_of(config["methods"][m]["class"]) for m in self.methods}
        self.trained = [m for m in self.methods if self.kinds[m] in TRAINED_KINDS]
        self.rerank = [m for m in self.methods if self.kinds[m] == "rerank"]
        self.external = [m for m in self.methods if self.kinds[m] == "external"]
        self.warm_started_from = {config["methods"][m].get("init_from") for m in self.trained} - {None}
        self.data = dataset_unit(config)
        self.runs = {m: run_unit(config, m) for m in self.methods}
        sweep = config["sweep"]
        self.sweep_configs = dict(sweep_points(config)) if sweep["method"] in config["methods"] else {}
        self.runs.update({name: run_unit(cfg, name) for name, cfg in self.sweep_configs.items()})
        tested = config["plateau"].get("methods") or self.trained
        self.budget_tested = [m for m in self.trained if m in tested]
        self.long = {m: run_unit(longer(config, config["plateau"]["factor"]), m) for m in self.budget_tested}
        self.run_data = {name: dataset_unit(run.config) for name, run in self.runs.items()}  # a sweep point: its own
        self.run_tokens = {name: tokens_unit(run.config) for name, run in self.runs.items()}
        self.run_features = {
            name: features_unit(run.config)
            for name, run in self.runs.items()
            if run.config.get("train", {}).get("freeze_towers", "none") != "none"
        }
        self.latency = {m: measurement_unit(config, "latency", m) for m in self.trained + self.rerank}
        self.throughput = {m: measurement_unit(config, "throughput", m) for m in self.trained}
        self.losses = loss_level_unit(config)
        self.scale_largest = scale_methods(config) if config["scale"]["enabled"] else {}
        self.distractors = {m: distractors_unit(config, m) for m in self.scale_largest}
        self.scale = {m: scale_unit(config, m, n) for m, n in self.scale_largest.items()}
        every = [self.data, *self.run_data.values(), *self.run_tokens.values(), *self.run_features.values()]
        every += self.runs.values()
        every += [self.pretrain] if self.pretrain is not None else []
        every += self.long.values()
        every += [*self.latency.values(), *self.throughput.values(), self.losses, self.report]
        every += [*self.distractors.values(), *self.scale.values()]
        self.units = {(u.section, u.name, u.fp): u for u in every}

    # ----- folders -----
    def folder(self, unit: Unit) -> str:
        return unit.folder(self.root)

    def unit(self, section: str, name: str, fp: str) -> Unit | None:
        """The unit of folder ``{root}/{section}/{name}/{fp}``, or None when it is not one of this config's."""
        return self.units.get((section, name, fp))

    def run_dir(self, name: str, seed: int | str, unit: Unit | None = None) -> str:
        return f"{self.folder(unit or self.runs[name])}/seed{seed}"

    def stage_dir(self, run: Unit, stage: str, seed: int | str) -> str:
        """The same-seed run folder of ``stage`` as the run ``run`` depends on it (under its own config)."""
        return self.run_dir(stage, seed, run_unit(run.config, stage))

    def tables(self, *names: str) -> list[str]:
        return [f"{self.root}/tables/{name}.csv" for name in names]

    # ----- what a job reads -----
    def pretrained_towers(self, section: str) -> list[str]:
        """The pretraining stage's check.json, for the config.json of every folder whose jobs build the towers
        (tokens, runs, latency, throughput): so no job reads the checkpoint before the stage wrote it."""
        if self.pretrain is None or section not in TOWER_SECTIONS:
            return []
        return [f"{self.folder(self.pretrain)}/check.json"]

    def data_manifest(self, name: str) -> str:
        """The manifest of the prepared dataset that run ``name`` (a method or a sweep point) reads."""
        return f"{self.folder(self.run_data[name])}/manifest.json"

    def tokens(self, name: str) -> str:
        """The tokenize job's marker of the captions that run ``name`` (a method or a sweep point) reads."""
        return f"{self.folder(self.run_tokens[name])}/tokens.json"

    def features(self, name: str) -> list[str]:
        """The features job's marker of the cached tower outputs that run ``name`` trains on ([] unless its
        ``train.freeze_towers``)."""
        unit = self.run_features.get(name)
        return [f"{self.folder(unit)}/features.json"] if unit is not None else []

    def tokens_data(self, unit: Unit) -> str:
        """The manifest of the prepared dataset a tokens (or features) unit reads."""
        return f"{self.folder(dataset_unit(unit.config))}/manifest.json"

    def features_tokens(self, unit: Unit) -> str:
        """The tokenize job's marker of the captions a features unit encodes."""
        return f"{self.folder(tokens_unit(unit.config))}/tokens.json"

    def init_checkpoint(self, run: Unit, seed: int | str) -> list[str]:
        """The model.pt a warm-started method (``init_from``) starts from, same seed; [] otherwise."""
        source = run.config["methods"][run.name].get("init_from")
        return [f"{self.stage_dir(run, source, seed)}/model.pt"] if source else []

    def stage_models(self, run: Unit, seed: int | str) -> list[str]:
        """The model.pt files a method's evaluation loads: its own, or a re-ranker's first and second stage's."""
        if self.kinds.get(run.name) == "rerank":
            entry = run.config["methods"][run.name]
            return [f"{self.stage_dir(run, entry[which], seed)}/model.pt" for which in ("first", "second")]
        return [f"{self.run_dir(run.name, seed, run)}/model.pt"]

    def train_priority(self, run: Unit, seed: int | str) -> int:
        """Scheduling order of training jobs (higher first): a method others warm-start from, then a warm-started
        one, then the rest, so a warm-started chain does not start last and train alone on one core; within each,
        the latency seed first, so the jobs that read its model (latency, distractor encoding, scale) overlap the
        remaining training instead of waiting for its last run."""
        if run.name in self.warm_started_from:
            level = 2
        else:
            level = 1 if run.config["methods"][run.name].get("init_from") else 0
        return 2 * level + (int(seed) == self.latency_seed)

    # ----- what the aggregate steps read -----
    def metrics_files(self) -> list[str]:
        """Every metrics.json the tables read: trained, re-ranked and external methods, every seed."""
        return [f"{self.run_dir(m, s)}/metrics.json" for m in self.methods for s in self.seeds]

    def run_logs(self) -> list[str]:
        """The trained runs' training and validation logs (training cost and curves)."""
        logs = ("train_log.csv", "val_log.csv")
        return [f"{self.run_dir(m, s)}/{log}" for m in self.trained for s in self.seeds for log in logs]

    def rerank_sweeps(self) -> list[str]:
        return [f"{self.run_dir(m, s)}/rerank_sweep.csv" for m in self.rerank for s in self.seeds]

    def test_runs(self) -> list[tuple[str, str]]:
        """(method, run folder) of every run with per-query test ranks: trained, re-ranked and external (whose
        scores the evaluate_external rule ranks)."""
        return [(m, self.run_dir(m, s)) for m in self.trained + self.rerank + self.external for s in self.seeds]

    def postprocess_tag(self) -> str | None:
        """The test-time post-processing variant's tag (``eval.postprocess``, vtrbench/postprocess.py); None: off."""
        tag = self.config.get("eval", {}).get("postprocess", "none")
        return None if tag == "none" else tag

    def postprocess_args(self) -> str:
        """The evaluate rules' ``--set`` options of the variant (not in a run's config.json: UNTRACKED_EVAL_KEYS)."""
        if self.postprocess_tag() is None:
            return ""
        chosen = {k: v for k, v in self.config["eval"].items() if k in UNTRACKED_EVAL_KEYS}
        return " ".join(f"--set eval.{k}={v}" for k, v in sorted(chosen.items()))

    def postprocess_runs(self) -> list[tuple[str, str]]:
        """(method, run folder) of every test run the variant adds its tagged files to: trained and external
        methods (a re-ranker's fused matrix is not rescored); [] when the variant is off."""
        runs = [(m, d) for m, d in self.test_runs() if m not in self.rerank]
        return runs if self.postprocess_tag() else []

    def budget_tests(self) -> list[tuple[str, str, str]]:
        """(method, val folder of the run, val folder of its longer run) per method and plateau seed."""
        seeds = self.config["plateau"]["seeds"]
        return [
            (m, f"{self.run_dir(m, s)}/val", f"{self.run_dir(m, s, self.long[m])}/val")
            for m in self.budget_tested
            for s in seeds
        ]

    def latency_files(self) -> list[str]:
        """latency.csv of every method: measured by the latency rule, or written by an external method's rule."""
        seed = self.latency_seed
        measured = [f"{self.folder(self.latency[m])}/seed{seed}/latency.csv" for m in self.trained + self.rerank]
        return measured + [f"{self.run_dir(m, seed)}/latency.csv" for m in self.external]

    def throughput_files(self) -> list[str]:
        return [f"{self.folder(self.throughput[m])}/throughput.csv" for m in self.trained]

    def distractor_shards(self, name: str, seed: int | str) -> list[str]:
        """The encode jobs' gallery-vector files of method ``name`` (``{start}-{stop}.npy``), in stream order."""
        shard_size = self.config["scale"]["shard_size"]
        shards = distractor_ranges(self.scale_largest[name], n_test_videos(self.config), shard_size)
        return [f"{self.folder(self.distractors[name])}/seed{seed}/{lo}-{hi}.npy" for lo, hi in shards]

    def scale_files(self, stem: str) -> list[str]:
        """``gallery`` or ``ann``: every scaled method's measurement file (first seed)."""
        return [f"{self.folder(unit)}/seed{self.latency_seed}/{stem}.csv" for unit in self.scale.values()]

    def sweep_run_dirs(self) -> list[str]:
        return [self.run_dir(name, s) for name in self.sweep_configs for s in self.config["sweep"]["seeds"]]

    def sweep_pairs(self) -> list[str]:
        """The sweep's compared points as ``gees@4:nce@16`` (``vtrbench.sweep.sweep_pairs``; sweep_comparisons.csv)."""
        return [format_pair(pair) for pair in sweep_pairs(self.config)]

    def section_tables(self, section: str) -> list[str]:
        """The tables an optional section adds (its outputs in the report and the default target)."""
        if section == "sweep" and not self.sweep_configs:
            raise ValueError(
                f"sweep.method={self.config['sweep']['method']!r} is not a configured method: nothing to sweep"
            )
        return self.tables(
            *{
                "pretrain": ["pretraining"],
                "plateau": ["convergence"],
                "latency": ["latency", "latency_vs_gallery", "recall_latency"],
                "throughput": ["throughput", "loss_throughput"],
                "sweep": ["frame_sweep", "sweep_curves", "sweep_comparisons"],
                "scale": ["scale", "recall_qps"],
            }[section]
        )

    def enabled_tables(self) -> list[str]:
        return [t for s in OPTIONAL_SECTIONS if self.config[s]["enabled"] for t in self.section_tables(s)]

    def report_tables(self) -> list[str]:
        """The tables the report renders: the aggregate's, and each enabled optional step's (nothing else)."""
        tables = self.tables("summary", "runs", "curves", "train_curves", "comparisons")
        tables += self.tables("rerank_sweep") if self.rerank else []
        tables += self.tables("postprocess") if self.postprocess_runs() else []
        return tables + self.enabled_tables()

    def report_benchmarks(self) -> list[str]:
        """Snakemake's benchmark files of this config's jobs (the report's wall time per step)."""
        bench = f"{self.root}/benchmarks"
        files = [f"{bench}/prepare/{self.data.name}-{self.data.fp}.tsv"]
        for m in self.trained:
            for s in self.seeds:
                files += [f"{bench}/{rule}/{m}-{self.runs[m].fp}-seed{s}.tsv" for rule in ("train", "evaluate")]
        files += [f"{bench}/rerank/{m}-{self.runs[m].fp}-seed{s}.tsv" for m in self.rerank for s in self.seeds]
        return files

    def final_output(self) -> list[str]:
        return [f"{self.root}/report.html", "results/report.html", *self.enabled_tables()]
