# Training throughput (vtrbench/throughput.py): step time, clips/s, peak memory and loss share per method over
# throughput.frames x throughput.batch_sizes, plus GEES vs NCE alone. Random-init methods on random frames.
# Each timing job takes every core (threads: workflow.cores) so that no other job runs beside it, while torch uses
# train.threads, as in training.


rule throughput:
    input:
        manifest=rules.prepare.output.manifest,
    output:
        raw=f"{THROUGHPUT_DIR}/{{method}}/throughput.csv",
    params:
        cfg=throughput_config,
        data=input_dir("manifest"),
    threads: workflow.cores
    log:
        "results/logs/throughput/{dataset}/{method}.log",
    message:
        "Timing training steps of {wildcards.method} over frames x batch size"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli throughput --config-json {params.cfg} --method {wildcards.method} "
        "--data {params.data} --out {output.raw} > {log} 2>&1"


rule throughput_losses:
    output:
        raw=f"{THROUGHPUT_DIR}/loss_level.csv",
    params:
        cfg=throughput_config,
    threads: workflow.cores
    log:
        "results/logs/throughput/{dataset}/loss_level.log",
    message:
        "Timing GEES vs NCE alone (forward + backward) over frames x batch size"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli throughput --config-json {params.cfg} --losses --out {output.raw} > {log} 2>&1"


rule throughput_aggregate:
    input:
        files=expand(f"{THROUGHPUT_DIR}/{{method}}/throughput.csv", dataset=DATASET, method=TRAINED),
        losses=expand(f"{THROUGHPUT_DIR}/loss_level.csv", dataset=DATASET),  # a path, not rules...output: remote storage
    output:
        table="results/tables/throughput.csv",
        losses="results/tables/loss_throughput.csv",
        plot="results/plots/step_time_vs_frames.png",
    params:
        batch_size=config["train"]["batch_size"],
    log:
        "results/logs/throughput/aggregate.log",
    message:
        "Aggregating the throughput timings"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli throughput-aggregate --files {input.files} --losses {input.losses} "
        "--batch-size {params.batch_size} --tables results/tables --plot {output.plot} > {log} 2>&1"
