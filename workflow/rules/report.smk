rule aggregate:
    input:
        metrics=all_metrics_files(),
    output:
        runs="results/tables/runs.csv",
        summary=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
            labels={"table": "summary (mean ± std per method)"},
        ),
    log:
        "results/logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate/aggregate.tsv"
    message:
        "Aggregating the result files into tables"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli aggregate --metrics {input.metrics} --out results/tables > {log} 2>&1"


# Optional tables: wired in when a rule of this workflow produces them (the report also reads whatever exists).


rule report:
    input:
        summary=rules.aggregate.output.summary,
        manifest=rules.prepare.output.manifest,
        published=local(os.path.join(workflow.basedir, "data", "published.csv")),  # shipped file, never in remote storage
        tables=report_tables,
        logs=report_logs,
    output:
        html=report(
            "results/report.html",
            caption="../report/report.rst",
            category="Report",
            labels={"page": "results/report.html"},
        ),
        figures=report(
            directory("results/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
    params:
        cfg=report_config,
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    message:
        "Rendering results/report.html"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli report --config-json {params.cfg} --tables results/tables "
        "--published {input.published} --out {output.html} --figures {output.figures} > {log} 2>&1"
