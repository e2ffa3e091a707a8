# The workflow's plan (vtrbench.plan.Plan: every unit, file and table of this config) and the functions that map it
# to rules. The other .smk files hold only rules (as `snakemake --lint` asks), so every function lives here. Parsing
# needs no torch: the config is checked against the schema and the links between methods here, and each method's
# options against its class when the run starts (onstart, in the Snakefile).
import json
import os
import shlex

from snakemake.logging import logger

from vtrbench import config as config_lib
from vtrbench import plan as plan_lib

# Before any job: one line naming the bad key or link.
try:
    config_lib.validate_workflow(config, classes=False)
except config_lib.ConfigError as err:
    raise WorkflowError(str(err)) from None

PLAN = plan_lib.Plan(config)
ROOT = PLAN.root
TRAINED, RERANK, EXTERNAL = PLAN.trained, PLAN.rerank, PLAN.external
SWEEP_POINTS = list(PLAN.sweep_configs)
DATA, LOSSES, REPORT = PLAN.data, PLAN.losses, PLAN.report


def check_method_options():
    """onstart: every method's options against its class, and each method built and run on one random batch
    (vtrbench/preflight.py: imports the method code and torch); one line on failure, before any job."""
    try:
        from vtrbench.preflight import preflight

        for warning in preflight(config):
            logger.warning(warning)
    except config_lib.ConfigError as err:
        raise WorkflowError(str(err)) from None
    except ImportError as err:  # --use-conda: the ML stack lives only in the rules' environment
        if err.name not in ("torch", "transformers", "numpy"):
            raise WorkflowError(f"config error at methods: {err}") from None
        logger.info(f"method options are checked by each job ({err.name} is not importable by Snakemake itself)")


def unit_json(wildcards):
    """The config.json of the folder the wildcards name, shell-quoted (written by the write-config job)."""
    unit = PLAN.unit(wildcards.section, wildcards.name, wildcards.fp)
    if unit is None:
        raise WorkflowError(f"{ROOT}/{wildcards.section}/{wildcards.name}/{wildcards.fp}: not a unit of this config")
    return shlex.quote(json.dumps(plan_lib.full_config(unit.config, config["run_name"]), sort_keys=True))


def run_unit(wildcards):
    """The run unit the wildcards name (a main run, a budget test's longer run or a sweep point)."""
    unit = PLAN.unit("runs", wildcards.name, wildcards.fp)
    if unit is None:
        raise WorkflowError(f"{ROOT}/runs/{wildcards.name}/{wildcards.fp}: not a run of this config")
    return unit


def train_priority(wildcards):
    return PLAN.train_priority(run_unit(wildcards), wildcards.seed)


def data_manifest(wildcards):
    return PLAN.data_manifest(wildcards.name)


def method_inputs(name):
    """What an external method's own job reads (README, "Adding a method", way b), given to its inputs as
    ``unpack(method_inputs("toy"))``. Keys: ``config`` is the run's config.json (the sections a run depends on and
    the method's own entry); ``data`` is the prepared dataset's manifest.json, whose folder holds the splits
    (``vtrbench.data.records.load_split``)."""

    def inputs(wildcards):
        return {"config": f"{PLAN.folder(PLAN.runs[name])}/config.json", "data": PLAN.data_manifest(name)}

    return inputs


def tokens(wildcards):
    """The tokenize job's marker of the captions the job of method (or sweep point) ``wildcards.name`` reads."""
    return PLAN.tokens(wildcards.name)


def tokens_data_manifest(wildcards):
    unit = PLAN.unit("tokens", wildcards.name, wildcards.fp)
    if unit is None:
        raise WorkflowError(f"{ROOT}/tokens/{wildcards.name}/{wildcards.fp}: not a tokens folder of this config")
    return PLAN.tokens_data(unit)


def features_unit(wildcards):
    unit = PLAN.unit("features", wildcards.name, wildcards.fp)
    if unit is None:
        raise WorkflowError(f"{ROOT}/features/{wildcards.name}/{wildcards.fp}: not a features folder of this config")
    return unit


def features_inputs(wildcards):
    """A features job reads the prepared dataset and its tokenised captions."""
    unit = features_unit(wildcards)
    return {"manifest": PLAN.tokens_data(unit), "tokens": PLAN.features_tokens(unit)}


def features(wildcards):
    """The cached tower outputs a frozen-tower run trains on ([] otherwise)."""
    return PLAN.features(wildcards.name)


def init_checkpoint(wildcards):
    return PLAN.init_checkpoint(run_unit(wildcards), wildcards.seed)


def stage_models(wildcards):
    """A re-ranker's first and second stage's model.pt (rerank rule), or its own model."""
    return PLAN.stage_models(run_unit(wildcards), wildcards.seed)


def latency_models(wildcards):
    """The model.pt files the latency job of a method loads, spelt as the evaluation spells them."""
    return PLAN.stage_models(PLAN.runs[wildcards.name], wildcards.seed)


def scale_shards(wildcards):
    """The distractor shards a method's gallery-scale job reads, in stream order."""
    return PLAN.distractor_shards(wildcards.name, wildcards.seed)


def gpu_resources(gpus=None):
    """resources of a job that uses the device - gpu=gpus (default train.gpus) when train.device is cuda; none on
    the CPU path. A profile's set-resources (workflow/profiles/slurm, kubernetes) or --set-resources overrides it."""
    train = config.get("train", {})
    return {"gpu": int(gpus or train.get("gpus", 1))} if train.get("device") == "cuda" else {}


def timing_resources():
    """A timing job runs alone: it takes the whole `machine` (workflow/profiles/default sets machine=100 for the
    run and 1 for every other job), and one GPU on the CUDA path. No other resource is asked for, so a cluster
    profile can give it an exclusive node its own way."""
    return {"machine": 100, **gpu_resources(1)}


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


def unit_configs(run_dirs):
    """The config.json of the unit above each ``.../seed{seed}`` folder (the sweep's aggregation reads them)."""
    return [f"{os.path.dirname(d)}/config.json" for d in run_dirs]


def postprocess_outputs():
    """The test evaluation's tagged files of the post-processing variant (eval.postprocess, vtrbench/postprocess.py),
    beside the plain ones, as named outputs of a run folder: {} when the variant is off (decided when parsing)."""
    tag = PLAN.postprocess_tag()
    if tag is None:
        return {}
    folder = f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}"
    files = {"metrics": "json", "ranks": "parquet", "pairwise": "parquet"}
    return {f"{stem}_post": f"{folder}/{stem}_{tag}.{ext}" for stem, ext in files.items()}
