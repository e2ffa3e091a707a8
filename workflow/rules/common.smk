# Validation, constants and helper functions for the workflow. The other .smk files hold only rules (as
# `snakemake --lint` asks), so every function lives here.
import json
import os
import shlex

from snakemake.utils import validate as snakemake_validate

from vtrbench import config as config_lib
from vtrbench import sweep as sweep_lib

# One line naming the bad key (our validator), then Snakemake's own check against the same schema.
config_lib.validate(config)
snakemake_validate(config, "../../config/schema.yaml")

DATASET = config["dataset"]["name"]
DATA_DIR = f"results/data/{DATASET}"
RUN_DIR = "results/runs/{dataset}/{method}/seed{seed}"
METHODS = list(config["methods"])
SEEDS = [int(s) for s in config["seeds"]]
CLASSES = {m: config["methods"][m]["class"] for m in METHODS}
TRAINED = [m for m in METHODS if CLASSES[m] not in ("rerank", "external")]  # trained and evaluated here
RERANK = [m for m in METHODS if CLASSES[m] == "rerank"]  # evaluated from two trained methods (latency.smk)
EXTERNAL = [m for m in METHODS if CLASSES[m] == "external"]  # result files written by a user's own rule


def config_json(sections, methods=None, seed=None):
    """The part of the config a rule depends on, shell-quoted (a change in it re-runs that rule only).

    ``methods``: the names the rule needs (default all); ``seeds`` holds only the rule's own seed when it has one,
    so adding a seed or a method to the config re-runs nothing already done.
    """
    sub = {key: config[key] for key in sections if key in config}
    sub["seeds"] = [int(seed)] if seed is not None else SEEDS
    sub["methods"] = {m: config["methods"][m] for m in (methods or METHODS)}
    return shlex.quote(json.dumps(sub, sort_keys=True))


def input_dir(name):
    """A params function: the folder of input file ``name`` (derived, not hardcoded, as `snakemake --lint` asks)."""

    def folder(wildcards, input):
        return os.path.dirname(input[name])

    return folder


def runs_root(name):
    """A params function: results/runs/{dataset}, derived from input ``name`` (a run's model.pt, or a list of them)."""

    def folder(wildcards, input):
        path = input[name] if isinstance(input[name], str) else input[name][0]
        return os.path.dirname(os.path.dirname(os.path.dirname(path)))

    return folder


def output_dir(name):
    """A params function: the folder of output file ``name`` (e.g. the run folder of model.pt)."""

    def folder(wildcards, output):
        return os.path.dirname(output[name])

    return folder


def prepare_config(wildcards):
    return config_json(["dataset"], methods=METHODS[:1], seed=0)


def run_config(wildcards):
    return config_json(["dataset", "model", "train", "eval"], methods=[wildcards.method], seed=wildcards.seed)


def init_checkpoint(wildcards):
    """The model.pt a warm-started method (option init_from) starts from, for the same seed; [] otherwise."""
    source = config["methods"][wildcards.method].get("init_from")
    return [f"results/runs/{wildcards.dataset}/{source}/seed{wildcards.seed}/model.pt"] if source else []


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


def report_config(wildcards):
    return config_json(["run_name", "dataset", "model", "train", "eval"])


def all_metrics_files():
    """Every metrics.json the aggregate reads: trained and external methods, and each re-ranking variant."""
    from baselines.rerank import variant_names

    names = [m for m in METHODS if m not in RERANK]
    names += [v for m in RERANK for v in variant_names(m, {k: x for k, x in config["methods"][m].items() if k != "class"})]
    return expand(f"results/runs/{DATASET}/{{method}}/seed{{seed}}/metrics.json", method=names, seed=SEEDS)


def get_final_output():
    # throughput.smk / sweep.smk define their outputs; they are part of `all` when enabled in the config
    extra = get_throughput_output() if config["throughput"]["enabled"] else []
    extra += get_sweep_output() if config["sweep"]["enabled"] else []
    extra += get_latency_output() if config["latency"]["enabled"] else []
    return ["results/report.html", *extra]


# ----- latency.smk: re-ranking, query latency, recall-vs-latency -----
LATENCY_SEED = SEEDS[0]


def stages_of(name):
    entry = config["methods"][name]
    return [name, entry["first"], entry["second"]] if entry["class"] == "rerank" else [name]


def stage_models(wildcards):
    """The model.pt files a method's latency run loads (its own, or both stages of a re-ranking)."""
    return [f"results/runs/{wildcards.dataset}/{m}/seed{wildcards.seed}/model.pt" for m in stages_of(wildcards.method)[-2:]]


def latency_config(wildcards):
    return config_json(["dataset", "model", "train", "eval", "latency"], stages_of(wildcards.method), wildcards.seed)


def latency_files():
    return [f"results/runs/{DATASET}/{m}/seed{LATENCY_SEED}/latency.csv" for m in METHODS]


def get_latency_output():
    return ["results/tables/latency.csv", "results/tables/recall_latency.csv", "results/plots/recall_vs_latency.png"]


# ----- report.smk -----
OPTIONAL_TABLES = {  # table -> the config section whose `enabled` puts it in the report
    "results/tables/latency.csv": "latency",
    "results/tables/recall_latency.csv": "latency",
    "results/tables/throughput.csv": "throughput",
    "results/tables/frame_sweep.csv": "sweep",
}


def report_tables(wildcards):
    """Optional tables that a rule produces and the config enables (opt-in targets such as the sweep excluded)."""
    produced = {str(f) for r in workflow.rules for f in r.output}
    return [t for t, section in OPTIONAL_TABLES.items() if t in produced and config[section]["enabled"]]


def report_logs(wildcards):
    """The runs' training and validation logs (training curves)."""
    runs = expand(RUN_DIR, dataset=DATASET, method=TRAINED, seed=SEEDS)  # rerank/external methods have no training logs
    return [f"{d}/{name}" for d in runs for name in ("train_log.csv", "val_log.csv")]


# ----- throughput.smk -----
THROUGHPUT_DIR = "results/throughput/{dataset}"


def throughput_config(wildcards):
    return config_json(["dataset", "model", "train", "eval", "throughput"], methods=[wildcards.method] if hasattr(wildcards, "method") else None)


def get_throughput_output():
    return [
        "results/tables/throughput.csv",
        "results/tables/loss_throughput.csv",
        "results/plots/step_time_vs_frames.png",
    ]


# ----- sweep.smk: the frame sweep (opt-in) -----
SWEEP = config["sweep"]
SWEEP_DATA = "results/sweep/data"
SWEEP_RUN = "results/sweep/runs/{loss}/f{frames}/seed{seed}"


def sweep_prepare_config(wildcards):
    return shlex.quote(json.dumps(sweep_lib.prepare_config(config), sort_keys=True))


def sweep_run_config(wildcards):
    cfg, _ = sweep_lib.sweep_config(config, wildcards.loss, int(wildcards.frames), int(wildcards.seed))
    return shlex.quote(json.dumps(cfg, sort_keys=True))


def sweep_method(wildcards):
    return sweep_lib.sweep_method_name(config, wildcards.loss)


def sweep_run_dirs():
    return [
        SWEEP_RUN.format(loss=loss, frames=frames, seed=seed)
        for loss in SWEEP["losses"]
        for frames in SWEEP["frames"]
        for seed in SWEEP["seeds"]
    ]


def get_sweep_output():
    return [
        "results/tables/frame_sweep.csv",
        "results/plots/frame_sweep_r5.png",
        "results/plots/step_time_vs_frames.png",
    ]
