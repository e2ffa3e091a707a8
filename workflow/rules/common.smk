# Validation, the plan of result folders and helper functions for the workflow. The other .smk files hold only
# rules (as `snakemake --lint` asks), so every function lives here. Result folders come from vtrbench/plan.py:
# results/{run_name}/{section}/{name}/{fingerprint}/, each with the config.json that defines it.
import json
import os
import shlex

from snakemake.utils import validate as snakemake_validate

from vtrbench import config as config_lib
from vtrbench import plan
from vtrbench import sweep as sweep_lib
from vtrbench.methods import resolve
from vtrbench.rerank import options_of

# Before any job: one line naming the bad key or link (our validator), then Snakemake's check of the same schema.
try:
    config_lib.validate_workflow(config)
except config_lib.ConfigError as err:
    raise WorkflowError(str(err)) from None
snakemake_validate(config, "../../config/schema.yaml")

ROOT = f"results/{config['run_name']}"
METHODS = list(config["methods"])
SEEDS = [int(s) for s in config["seeds"]]
LATENCY_SEED = SEEDS[0]
KINDS = {m: resolve(config["methods"][m]["class"]).kind for m in METHODS}
TRAINED = [m for m in METHODS if KINDS[m] in ("embedding", "pair")]  # trained and evaluated here
RERANK = [m for m in METHODS if KINDS[m] == "rerank"]  # two-stage: evaluated from two trained methods
WARM_STARTED_FROM = {config["methods"][m].get("init_from") for m in TRAINED} - {None}  # others start from these
EXTERNAL = [m for m in METHODS if KINDS[m] == "external"]  # result files written by a user's own rule

DATA = plan.dataset_unit(config)
RUNS = {m: plan.run_unit(config, m) for m in METHODS}
SWEEP = config["sweep"]
SWEEP_CONFIGS = dict(sweep_lib.sweep_points(config)) if SWEEP["method"] in config["methods"] else {}
RUNS.update({name: plan.run_unit(cfg, name) for name, cfg in SWEEP_CONFIGS.items()})
PLATEAU = config["plateau"]
LONG = {m: plan.run_unit(plan.longer(config, PLATEAU["factor"]), m) for m in TRAINED}  # the budget test's runs
RUN_DATA = {name: DATA for name in METHODS}  # the prepared dataset each run reads
RUN_DATA.update({name: plan.dataset_unit(cfg) for name, cfg in SWEEP_CONFIGS.items()})
LATENCY = {m: plan.measurement_unit(config, "latency", m) for m in TRAINED + RERANK}
THROUGHPUT = {m: plan.measurement_unit(config, "throughput", m) for m in TRAINED}
LOSSES = plan.loss_level_unit(config)
REPORT = plan.make_unit("report", "report", {k: v for k, v in config.items() if k != "run_name"})
UNITS = {
    (u.section, u.name, u.fp): u
    for u in [DATA, *RUN_DATA.values(), *RUNS.values(), *LONG.values(), *LATENCY.values(), *THROUGHPUT.values()]
    + [LOSSES, REPORT]
}


def folder(unit):
    return unit.folder(ROOT)


def unit_json(wildcards):
    """The config.json of the folder the wildcards name, shell-quoted (written by the write-config job)."""
    unit = UNITS.get((wildcards.section, wildcards.name, wildcards.fp))
    if unit is None:
        raise WorkflowError(f"{ROOT}/{wildcards.section}/{wildcards.name}/{wildcards.fp}: not a unit of this config")
    return shlex.quote(json.dumps(plan.full_config(unit.config, config["run_name"]), sort_keys=True))


def run_unit(wildcards):
    """The run unit the wildcards name (a main run, a budget test's longer run or a sweep point)."""
    unit = UNITS.get(("runs", wildcards.name, wildcards.fp))
    if unit is None:
        raise WorkflowError(f"{ROOT}/runs/{wildcards.name}/{wildcards.fp}: not a run of this config")
    return unit


def train_priority(wildcards):
    """Scheduling order of training jobs (higher first): a method others warm-start from, then a warm-started one,
    then the rest. The chain's long jobs start early and independent methods fill the cores at the end, instead of a
    warm-started run starting last and training alone on one core while the others wait."""
    if wildcards.name in WARM_STARTED_FROM:
        return 2
    return 1 if run_unit(wildcards).config["methods"][wildcards.name].get("init_from") else 0


def run_dir(name, seed, unit=None):
    return f"{folder(unit or RUNS[name])}/seed{seed}"


def stage_dir(wildcards, stage):
    """The same-seed run folder of ``stage`` as the run ``wildcards`` depends on it (its own stage config)."""
    return run_dir(stage, wildcards.seed, plan.run_unit(run_unit(wildcards).config, stage))


def data_manifest(wildcards):
    """The manifest of the prepared dataset the run ``wildcards.name`` reads."""
    return f"{folder(RUN_DATA[wildcards.name])}/manifest.json"


def init_checkpoint(wildcards):
    """The model.pt a warm-started method (option init_from) starts from, for the same seed; [] otherwise."""
    source = run_unit(wildcards).config["methods"][wildcards.name].get("init_from")
    return [f"{stage_dir(wildcards, source)}/model.pt"] if source else []


def stage_models(name, seed):
    """The model.pt files a method's latency run loads: its own, or a re-ranker's first and second stage's."""
    if KINDS[name] == "rerank":
        opts = options_of(config["methods"][name])
        return [f"{run_dir(opts.first, seed)}/model.pt", f"{run_dir(opts.second, seed)}/model.pt"]
    return [f"{run_dir(name, seed)}/model.pt"]


def rerank_stage(which):
    """An input function: the model.pt of a re-ranker's ``first`` or ``second`` stage, same seed."""

    def path(wildcards):
        opts = options_of(config["methods"][wildcards.name])
        return f"{stage_dir(wildcards, getattr(opts, which))}/model.pt"

    return path


def gpu_resources(gpus=None):
    """resources of a GPU rule: gpu=gpus (default train.gpus) when train.device is cuda; none on the CPU path.

    A profile's set-resources (workflow/profiles/slurm, kubernetes) or --set-resources train:gpu=N overrides it.
    """
    train = config.get("train", {})
    return {"gpu": int(gpus or train.get("gpus", 1))} if train.get("device") == "cuda" else {}


def train_launcher(wildcards, resources):
    """One process (python), or one per GPU (torchrun) when the job holds gpu=N > 1 (train.gpus or a profile)."""
    n = int(getattr(resources, "gpu", 0) or 0)
    if n > 1:
        return f"torchrun --standalone --nproc_per_node {n} -m vtrbench.cli"
    return "python -m vtrbench.cli"


def input_dir(name):
    """A params function: the folder of input file ``name`` (derived, not hardcoded, as `snakemake --lint` asks)."""

    def dirname(wildcards, input):
        return os.path.dirname(input[name])

    return dirname


def output_dir(name):
    """A params function: the folder of output file ``name`` (e.g. the run folder of model.pt)."""

    def dirname(wildcards, output):
        return os.path.dirname(output[name])

    return dirname


# ----- what the aggregate steps read -----
def metrics_files():
    """Every metrics.json the tables read: trained, re-ranked and external methods, every seed."""
    return [f"{run_dir(m, s)}/metrics.json" for m in METHODS for s in SEEDS]


def run_logs():
    """The trained runs' training and validation logs (training cost and curves)."""
    return [f"{run_dir(m, s)}/{log}" for m in TRAINED for s in SEEDS for log in ("train_log.csv", "val_log.csv")]


def rerank_sweeps():
    return [f"{run_dir(m, s)}/rerank_sweep.csv" for m in RERANK for s in SEEDS]


def test_runs():
    """(method, run folder) of every run with per-query test ranks (trained and re-ranked; not external)."""
    return [(m, run_dir(m, s)) for m in TRAINED + RERANK for s in SEEDS]


def budget_tests():
    """(method, val folder of the run, val folder of its longer run) per method and plateau seed."""
    return [(m, f"{run_dir(m, s)}/val", f"{run_dir(m, s, LONG[m])}/val") for m in TRAINED for s in PLATEAU["seeds"]]


def latency_files():
    """latency.csv of every method: measured by the latency rule, or written by an external method's rule."""
    measured = [f"{folder(LATENCY[m])}/seed{LATENCY_SEED}/latency.csv" for m in TRAINED + RERANK]
    return measured + [f"{run_dir(m, LATENCY_SEED)}/latency.csv" for m in EXTERNAL]


def throughput_files():
    return [f"{folder(THROUGHPUT[m])}/throughput.csv" for m in TRAINED]


def sweep_run_dirs():
    return [run_dir(name, s) for name in SWEEP_CONFIGS for s in SWEEP["seeds"]]


def get_latency_output():
    return [f"{ROOT}/tables/{t}.csv" for t in ("latency", "latency_vs_gallery", "recall_latency")]


def get_throughput_output():
    return [f"{ROOT}/tables/throughput.csv", f"{ROOT}/tables/loss_throughput.csv"]


def get_sweep_output():
    if not SWEEP_CONFIGS:
        raise WorkflowError(f"sweep.method={SWEEP['method']!r} is not a configured method: nothing to sweep")
    return [f"{ROOT}/tables/frame_sweep.csv", f"{ROOT}/tables/sweep_curves.csv"]


def get_plateau_output():
    return [f"{ROOT}/tables/convergence.csv"]


OPTIONAL_TABLES = {  # config section whose `enabled` puts these tables in the report
    "plateau": get_plateau_output,
    "latency": get_latency_output,
    "throughput": get_throughput_output,
    "sweep": get_sweep_output,
}


def report_tables(wildcards):
    """The tables the report renders: the aggregate's, and each enabled optional step's (nothing else)."""
    tables = [f"{ROOT}/tables/{t}.csv" for t in ("summary", "runs", "curves", "train_curves", "comparisons")]
    tables += [f"{ROOT}/tables/rerank_sweep.csv"] if RERANK else []
    for section, outputs in OPTIONAL_TABLES.items():
        if config[section]["enabled"]:
            tables += outputs()
    return tables


def report_benchmarks(wildcards):
    """Snakemake's benchmark files of this config's jobs (the report's wall time per step)."""
    files = [f"{ROOT}/benchmarks/prepare/{DATA.name}-{DATA.fp}.tsv"]
    for m in TRAINED:
        for s in SEEDS:
            files += [f"{ROOT}/benchmarks/{rule}/{m}-{RUNS[m].fp}-seed{s}.tsv" for rule in ("train", "evaluate")]
    files += [f"{ROOT}/benchmarks/rerank/{m}-{RUNS[m].fp}-seed{s}.tsv" for m in RERANK for s in SEEDS]
    return files


def get_final_output():
    extra = [t for section, outputs in OPTIONAL_TABLES.items() if config[section]["enabled"] for t in outputs()]
    return [f"{ROOT}/report.html", *extra]
