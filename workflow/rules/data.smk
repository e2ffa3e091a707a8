rule prepare:
    input:
        cfg=f"{ROOT}/data/{{name}}/{{fp}}/config.json",
    output:
        manifest=f"{ROOT}/data/{{name}}/{{fp}}/manifest.json",
    params:
        out=output_dir("manifest"),
    threads: workflow.cores
    log:
        f"{ROOT}/logs/prepare/{{name}}-{{fp}}.log",
    benchmark:
        f"{ROOT}/benchmarks/prepare/{{name}}-{{fp}}.tsv"
    message:
        "Preparing dataset {wildcards.name} ({wildcards.fp})"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli prepare --config {input.cfg} --out {params.out} --threads {threads} > {log} 2>&1"


# The captions of every split tokenised once per dataset and text tower; the jobs that train, evaluate and time read
# them (--tokens), and nothing else writes tokens.
rule tokenize:
    input:
        cfg=f"{ROOT}/tokens/{{name}}/{{fp}}/config.json",
        manifest=tokens_data_manifest,
    output:
        marker=f"{ROOT}/tokens/{{name}}/{{fp}}/tokens.json",
    params:
        data=input_dir("manifest"),
        out=output_dir("marker"),
    log:
        f"{ROOT}/logs/tokenize/{{name}}-{{fp}}.log",
    message:
        "Tokenising the captions of {wildcards.name} ({wildcards.fp})"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli tokenize --config {input.cfg} --data {params.data} --out {params.out} > {log} 2>&1"



# A frozen-tower run (train.freeze_towers) trains on the towers' outputs, computed once per dataset and towers
# (vtrbench/features.py); validation, test and latency still run the towers.
rule features:
    input:
        unpack(features_inputs),
        cfg=f"{ROOT}/features/{{name}}/{{fp}}/config.json",
    output:
        marker=f"{ROOT}/features/{{name}}/{{fp}}/features.json",
    params:
        data=input_dir("manifest"),
        tokens=input_dir("tokens"),
        out=output_dir("marker"),
    threads: workflow.cores
    log:
        f"{ROOT}/logs/features/{{name}}-{{fp}}.log",
    benchmark:
        f"{ROOT}/benchmarks/features/{{name}}-{{fp}}.tsv"
    message:
        "Caching the frozen towers' features of {wildcards.name} ({wildcards.fp})"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli features --config {input.cfg} --data {params.data} --tokens {params.tokens} "
        "--out {params.out} --threads {threads} > {log} 2>&1"


# The towers' starting point of a SynthVTT run with pretrain.enabled (vtrbench/pretrain.py): a small CLIP on single
# frames and their descriptions, one per config. Every config.json that names it waits for it (write_config).
if PLAN.pretrain is not None:

    rule pretrain:
        input:
            cfg=f"{PLAN.folder(PLAN.pretrain)}/config.json",
        output:
            check=f"{PLAN.folder(PLAN.pretrain)}/check.json",
            log=f"{PLAN.folder(PLAN.pretrain)}/train_log.csv",
            table=f"{ROOT}/tables/pretraining.csv",
        params:
            out=output_dir("check"),
        threads: PLAN.config["pretrain"]["threads"]
        log:
            f"{ROOT}/logs/pretrain.log",
        benchmark:
            f"{ROOT}/benchmarks/pretrain/pretrain.tsv"
        message:
            "Pretraining the shared towers on single frames and their descriptions"
        conda:
            "../envs/vtrbench.yaml"
        shell:
            "python -m vtrbench.cli pretrain --config {input.cfg} --out {params.out} --table {output.table} "
            "> {log} 2>&1"
