rule aggregate:
    input:
        metrics=metrics_files(),
        logs=run_logs(),
        sweeps=rerank_sweeps(),
    output:
        runs=f"{ROOT}/tables/runs.csv",
        summary=report(
            f"{ROOT}/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
            labels={"table": "summary (mean ± std per method)"},
        ),
        curves=f"{ROOT}/tables/curves.csv",
        train_curves=f"{ROOT}/tables/train_curves.csv",
        rerank_sweep=f"{ROOT}/tables/rerank_sweep.csv",
    params:
        tables=output_dir("runs"),
        sweeps=lambda w, input: f"--rerank-sweeps {' '.join(input.sweeps)}" if input.sweeps else "",
    log:
        f"{ROOT}/logs/aggregate.log",
    benchmark:
        f"{ROOT}/benchmarks/aggregate/aggregate.tsv"
    message:
        "Aggregating the result files into tables"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli aggregate --metrics {input.metrics} --logs {input.logs} {params.sweeps} "
        "--out {params.tables} > {log} 2>&1"


rule report:
    input:
        cfg=f"{folder(REPORT)}/config.json",
        tables=report_tables,
        manifest=f"{folder(DATA)}/manifest.json",
        ledger=local(os.path.join(workflow.basedir, "..", "data", "published.csv")),  # shipped file, never remote
        benchmarks=report_benchmarks,
    output:
        html=report(
            f"{ROOT}/report.html",
            caption="../report/report.rst",
            category="Report",
            labels={"page": "report.html"},
        ),
        figures=report(
            directory(f"{ROOT}/figures"),
            patterns=["{figure}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    log:
        f"{ROOT}/logs/report.log",
    message:
        f"Rendering {ROOT}/report.html"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli report --config {input.cfg} --tables {input.tables} --manifest {input.manifest} "
        "--ledger {input.ledger} --benchmarks {input.benchmarks} --out {output.html} --figures {output.figures} "
        "> {log} 2>&1"
