# Frame sweep (CRET paper Fig. 5): CRET with each global loss at each frame count, on its own dataset stored with
# max(sweep.frames) frames. Opt-in: `snakemake --cores all sweep` (or sweep.enabled: true adds it to `all`).


wildcard_constraints:
    loss="|".join(SWEEP["losses"]),
    frames=r"\d+",


rule sweep_prepare:
    output:
        manifest=f"{SWEEP_DATA}/manifest.json",
    params:
        cfg=sweep_prepare_config,
        out=output_dir("manifest"),
    threads: workflow.cores
    log:
        "results/logs/sweep/prepare.log",
    message:
        "Preparing the frame-sweep dataset ({SWEEP_DATA}, max(sweep.frames) frames per video)"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli prepare --config-json {params.cfg} --out {params.out} "
        "--threads {threads} > {log} 2>&1"


rule sweep_train:
    input:
        manifest=rules.sweep_prepare.output.manifest,
    output:
        model=f"{SWEEP_RUN}/model.pt",
        train_log=f"{SWEEP_RUN}/train_log.csv",
        val_log=f"{SWEEP_RUN}/val_log.csv",
    params:
        cfg=sweep_run_config,
        method=sweep_method,
        data=input_dir("manifest"),
        out=output_dir("model"),
    threads: 1
    log:
        "results/logs/sweep/train/{loss}/f{frames}/seed{seed}.log",
    message:
        "Sweep: training CRET with {wildcards.loss} at {wildcards.frames} frames (seed {wildcards.seed})"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli train --config-json {params.cfg} --method {params.method} "
        "--seed {wildcards.seed} --data {params.data} --out {params.out} --threads {threads} > {log} 2>&1"


rule sweep_evaluate:
    input:
        manifest=rules.sweep_prepare.output.manifest,
        model=rules.sweep_train.output.model,
    output:
        metrics=f"{SWEEP_RUN}/metrics.json",
        ranks=f"{SWEEP_RUN}/ranks.parquet",
    params:
        cfg=sweep_run_config,
        method=sweep_method,
        data=input_dir("manifest"),
        out=output_dir("metrics"),
    threads: 1
    log:
        "results/logs/sweep/evaluate/{loss}/f{frames}/seed{seed}.log",
    message:
        "Sweep: evaluating CRET {wildcards.loss} at {wildcards.frames} frames (seed {wildcards.seed})"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli evaluate --config-json {params.cfg} --method {params.method} "
        "--seed {wildcards.seed} --data {params.data} --model {input.model} --out {params.out} > {log} 2>&1"


rule sweep_aggregate:
    input:
        metrics=[f"{d}/metrics.json" for d in sweep_run_dirs()],
        train_logs=[f"{d}/train_log.csv" for d in sweep_run_dirs()],
    output:
        table="results/tables/frame_sweep.csv",
        runs="results/tables/sweep_runs.csv",
        curves="results/tables/sweep_curves.csv",
        equal_cost="results/tables/sweep_equal_cost.csv",
        plot="results/plots/frame_sweep_r5.png",
        curve_plot="results/plots/sweep_equal_cost.png",
    params:
        runs=sweep_run_dirs(),
        batch_size=config["train"]["batch_size"],
    log:
        "results/logs/sweep/aggregate.log",
    message:
        "Sweep: aggregating {SWEEP[losses]} x frames {SWEEP[frames]} x seeds {SWEEP[seeds]}"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli sweep-aggregate --runs {params.runs} --batch-size {params.batch_size} "
        "--tables results/tables --plots results/plots > {log} 2>&1"


# The opt-in target: the sweep table, its plots and the step-time plot of the throughput benchmark.
rule sweep:
    input:
        get_sweep_output(),
