rule aggregate:
    input:
        metrics=PLAN.metrics_files(),
        logs=PLAN.run_logs(),
        sweeps=PLAN.rerank_sweeps(),
        convergence=PLAN.section_tables("plateau") if config["plateau"]["enabled"] else [],
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
        convergence=lambda w, input: f"--convergence {input.convergence}" if input.convergence else "",
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
        "{params.convergence} --out {params.tables} > {log} 2>&1"


# Paired statistics over seeds and test queries for every pair of methods (vtrbench/report/compare.py).
rule compare:
    input:
        ranks=[f"{d}/{f}.parquet" for _, d in PLAN.test_runs() for f in ("ranks", "pairwise")],
    output:
        table=f"{ROOT}/tables/comparisons.csv",
    params:
        methods=[m for m, _ in PLAN.test_runs()],
        runs=[d for _, d in PLAN.test_runs()],
    log:
        f"{ROOT}/logs/compare.log",
    message:
        "Paired comparisons of the methods (hierarchical bootstrap over seeds and queries)"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli compare --methods {params.methods} --runs {params.runs} --out {output.table} "
        "> {log} 2>&1"


# The test-time post-processing variant (eval.postprocess; vtrbench/report/postprocess.py): per method, how far it
# moves t2v R@1, paired with the plain run. Trained and external methods only (a re-ranker is not rescored).
rule postprocess:
    input:
        ranks=[f"{d}/ranks{t}.parquet" for _, d in PLAN.postprocess_runs() for t in ("", f"_{PLAN.postprocess_tag()}")],
    output:
        table=f"{ROOT}/tables/postprocess.csv",
    params:
        variant=PLAN.postprocess_tag(),
        methods=[m for m, _ in PLAN.postprocess_runs()],
        runs=[d for _, d in PLAN.postprocess_runs()],
    log:
        f"{ROOT}/logs/postprocess.log",
    message:
        "Test-time post-processing ({params.variant}): its effect per method, paired with the plain runs"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli postprocess --variant {params.variant} --methods {params.methods} --runs {params.runs} "
        "--out {output.table} > {log} 2>&1"


# The budget test: each trained method at factor x its steps, on plateau.seeds, compared on val.
rule convergence:
    input:
        short=[f"{s}/{f}" for _, s, _ in PLAN.budget_tests() for f in ("ranks.parquet", "metrics.json")],
        long=[f"{lg}/{f}" for _, _, lg in PLAN.budget_tests() for f in ("ranks.parquet", "metrics.json")],
    output:
        table=f"{ROOT}/tables/convergence.csv",
    params:
        methods=[m for m, _, _ in PLAN.budget_tests()],
        short=[s for _, s, _ in PLAN.budget_tests()],
        long=[lg for _, _, lg in PLAN.budget_tests()],
    log:
        f"{ROOT}/logs/convergence.log",
    message:
        "Budget test: is every method at its plateau?"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli convergence --methods {params.methods} --short {params.short} --long {params.long} "
        "--out {output.table} > {log} 2>&1"


rule report:
    input:
        cfg=f"{PLAN.folder(REPORT)}/config.json",
        tables=PLAN.report_tables(),
        manifest=f"{PLAN.folder(DATA)}/manifest.json",
        ledger=local(os.path.join(workflow.basedir, "..", "data", "published.csv")),  # shipped file, never remote
        benchmarks=PLAN.report_benchmarks(),
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
        summary=f"{ROOT}/report.json",
    log:
        f"{ROOT}/logs/report.log",
    message:
        f"Rendering {ROOT}/report.html"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli report --config {input.cfg} --tables {input.tables} --manifest {input.manifest} "
        "--ledger {input.ledger} --benchmarks {input.benchmarks} --out {output.html} --figures {output.figures} "
        "--summary {output.summary} > {log} 2>&1"


# results/report.html: every run root's report (this one and those of other configs), rewritten after each report.
rule report_index:
    input:
        summary=rules.report.output.summary,
    output:
        html="results/report.html",
    log:
        f"{ROOT}/logs/report_index.log",
    message:
        "Indexing every run's report in results/report.html"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli report-index --results results --out {output.html} > {log} 2>&1"
