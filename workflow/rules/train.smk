rule train:
    input:
        manifest=rules.prepare.output.manifest,
        init=init_checkpoint,
    output:
        model=f"{RUN_DIR}/model.pt",
        train_log=f"{RUN_DIR}/train_log.csv",
        val_log=f"{RUN_DIR}/val_log.csv",
    params:
        cfg=run_config,
        data=input_dir("manifest"),
        out=output_dir("model"),
        init=lambda w, input: f"--init-from {input.init}" if input.init else "",
        launch=train_launcher,
    wildcard_constraints:
        method="|".join(TRAINED) or "^$",
    threads: 1
    resources:
        **gpu_resources(),
    log:
        "results/logs/train/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{method}/seed{seed}.tsv"
    message:
        "Training {wildcards.method} (seed {wildcards.seed})"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "{params.launch} train --config-json {params.cfg} --method {wildcards.method} "
        "--seed {wildcards.seed} --data {params.data} --out {params.out} --threads {threads} {params.init} > {log} 2>&1"
