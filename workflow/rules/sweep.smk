# Frame sweep (CRET paper Fig. 5): sweep.method with each global loss at each frame count, on its own dataset
# stored with max(sweep.frames) frames. The points are ordinary runs (trained and evaluated by train.smk /
# evaluate.smk); the paired comparisons (gees@M vs nce@M, gees@4 vs nce@16: vtrbench.sweep.sweep_pairs) read their
# test ranks. Opt-in: `snakemake --cores all sweep` (or sweep.enabled: true adds it to `all`).


rule sweep_aggregate:
    input:
        metrics=[f"{d}/metrics.json" for d in PLAN.sweep_run_dirs()],
        logs=[f"{d}/{log}" for d in PLAN.sweep_run_dirs() for log in ("train_log.csv", "val_log.csv")],
        ranks=[f"{d}/ranks.parquet" for d in PLAN.sweep_run_dirs()],
        configs=unit_configs(PLAN.sweep_run_dirs()),
        ledger=local(os.path.join(workflow.basedir, "..", "data", "published.csv")),  # shipped file, never remote
    output:
        table=f"{ROOT}/tables/frame_sweep.csv",
        runs=f"{ROOT}/tables/sweep_runs.csv",
        curves=f"{ROOT}/tables/sweep_curves.csv",
        equal_cost=f"{ROOT}/tables/sweep_equal_cost.csv",
        comparisons=f"{ROOT}/tables/sweep_comparisons.csv",
    params:
        runs=PLAN.sweep_run_dirs(),
        pairs=PLAN.sweep_pairs(),
        tables=output_dir("table"),
    log:
        f"{ROOT}/logs/sweep/aggregate.log",
    message:
        f"Sweep: aggregating {config['sweep']['losses']} x frames {config['sweep']['frames']} x seeds {config['sweep']['seeds']}"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli sweep-aggregate --runs {params.runs} --tables {params.tables} "
        "--ledger {input.ledger} --pairs {params.pairs} > {log} 2>&1"


# The opt-in target: the sweep tables, and the report that draws them.
rule sweep:
    input:
        lambda w: PLAN.section_tables("sweep"),
