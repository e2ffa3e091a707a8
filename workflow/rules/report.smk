rule aggregate:
    input:
        metrics=expand(
            f"{RUN_DIR}/metrics.json", dataset=DATASET, method=METHODS, seed=SEEDS
        ),
    output:
        runs="results/tables/runs.csv",
        summary="results/tables/summary.csv",
    log:
        "results/logs/aggregate.log",
    message:
        "Aggregating the result files into tables"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli aggregate --metrics {input.metrics} --out results/tables > {log} 2>&1"


rule report:
    input:
        summary=rules.aggregate.output.summary,
    output:
        html="results/report.html",
    params:
        cfg=report_config,
    log:
        "results/logs/report.log",
    message:
        "Rendering results/report.html"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli report --config-json {params.cfg} --tables results/tables "
        "--out {output.html} > {log} 2>&1"
