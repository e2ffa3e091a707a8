# Training throughput (vtrbench/throughput.py): step time, the harness's overhead over a bare loop, clips/s, peak
# memory and loss share per method over throughput.frames x throughput.batch_sizes, plus the losses the method
# classes declare, alone (GEES vs NCE). Random-init methods on random frames. Each timing job takes every core
# (threads: workflow.cores) so that no other job runs beside it, while torch uses train.threads, as in training.


rule throughput:
    input:
        cfg=f"{ROOT}/throughput/{{name}}/{{fp}}/config.json",
        manifest=f"{PLAN.folder(DATA)}/manifest.json",
        tokens=tokens,
    output:
        raw=f"{ROOT}/throughput/{{name}}/{{fp}}/throughput.csv",
    params:
        data=input_dir("manifest"),
        tokens=input_dir("tokens"),
    wildcard_constraints:
        name="|".join(TRAINED) or "^$",
    threads: config["train"]["threads"]
    resources:
        **timing_resources(),
    log:
        f"{ROOT}/logs/throughput/{{name}}-{{fp}}.log",
    message:
        "Timing training steps of {wildcards.name} over frames x batch size"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli throughput --config {input.cfg} --method {wildcards.name} --data {params.data} "
        "--tokens {params.tokens} "
        "--out {output.raw} > {log} 2>&1"


rule throughput_losses:
    input:
        cfg=f"{PLAN.folder(LOSSES)}/config.json",
    output:
        raw=f"{PLAN.folder(LOSSES)}/loss_level.csv",
    threads: config["train"]["threads"]
    resources:
        **timing_resources(),
    log:
        f"{ROOT}/logs/throughput/losses-{LOSSES.fp}.log",
    message:
        "Timing the declared losses alone (forward + backward) over frames x batch size"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli throughput --config {input.cfg} --losses --out {output.raw} > {log} 2>&1"


rule throughput_aggregate:
    input:
        files=PLAN.throughput_files(),
        losses=rules.throughput_losses.output.raw,
    output:
        table=f"{ROOT}/tables/throughput.csv",
        losses=f"{ROOT}/tables/loss_throughput.csv",
    params:
        tables=output_dir("table"),
    log:
        f"{ROOT}/logs/throughput/aggregate.log",
    message:
        "Aggregating the throughput timings"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli throughput-aggregate --files {input.files} --losses {input.losses} "
        "--tables {params.tables} > {log} 2>&1"
