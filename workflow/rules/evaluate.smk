rule evaluate:
    input:
        manifest=rules.prepare.output.manifest,
        model=rules.train.output.model,
    output:
        metrics=f"{RUN_DIR}/metrics.json",
        ranks=f"{RUN_DIR}/ranks.parquet",
    params:
        cfg=run_config,
        data=input_dir("manifest"),
        out=output_dir("metrics"),
    wildcard_constraints:
        method="|".join(TRAINED) or "^$",
    threads: 1
    resources:
        **gpu_resources(1),
    log:
        "results/logs/evaluate/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{method}/seed{seed}.tsv"
    message:
        "Evaluating {wildcards.method} (seed {wildcards.seed}) on the test split"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli evaluate --config-json {params.cfg} --method {wildcards.method} "
        "--seed {wildcards.seed} --data {params.data} --model {input.model} --out {params.out} > {log} 2>&1"
