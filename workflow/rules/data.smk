rule prepare:
    output:
        manifest=f"{DATA_DIR}/manifest.json",
    params:
        cfg=prepare_config,
        out=output_dir("manifest"),
    threads: workflow.cores
    log:
        f"results/logs/prepare/{DATASET}.log",
    benchmark:
        f"results/benchmarks/prepare/{DATASET}.tsv"
    message:
        "Preparing dataset {DATASET}"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli prepare --config-json {params.cfg} --out {params.out} "
        "--threads {threads} > {log} 2>&1"
