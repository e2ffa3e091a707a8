# vtrbench workflow: prepare -> train -> evaluate -> aggregate -> report.
# Run: snakemake --cores all   (config/config.yaml; another one with --configfile config/smoke.yaml)
from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless the user gives a config (--configfile replaces it rather than merging into it,
# so a smaller config does not inherit the default's methods).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


# `snakemake --report results/snakemake-report.html`: items marked report(...) in workflow/rules/report.smk
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    method="|".join(METHODS),
    seed=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/throughput.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/latency.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
