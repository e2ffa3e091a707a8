# Validation and helpers shared by every rule file.
import json
import shlex

from snakemake.utils import validate as snakemake_validate

from vtrbench import config as config_lib

# One line naming the bad key (our validator), then Snakemake's own check against the same schema.
config_lib.validate(config)
snakemake_validate(config, "../../config/schema.yaml")

DATASET = config["dataset"]["name"]
DATA_DIR = f"results/data/{DATASET}"
RUN_DIR = "results/runs/{dataset}/{method}/seed{seed}"
METHODS = list(config["methods"])
SEEDS = [int(s) for s in config["seeds"]]


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    method="|".join(METHODS),
    seed=r"\d+",


def config_json(sections, method=None):
    """The part of the config a rule depends on, shell-quoted (a change in it re-runs that rule only)."""
    sub = {key: config[key] for key in sections if key in config}
    sub["seeds"] = SEEDS
    sub["methods"] = {method: config["methods"][method]} if method else config["methods"]
    return shlex.quote(json.dumps(sub, sort_keys=True))


def prepare_config(wildcards):
    return config_json(["dataset"], method=METHODS[0])


def run_config(wildcards):
    return config_json(["dataset", "model", "train", "eval"], method=wildcards.method)


def report_config(wildcards):
    return config_json(["run_name", "dataset", "model", "train", "eval"])


def get_final_output():
    return ["results/report.html"]
