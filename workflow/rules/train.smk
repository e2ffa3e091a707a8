rule train:
    input:
        manifest=rules.prepare.output.manifest,
    output:
        model=f"{RUN_DIR}/model.pt",
        train_log=f"{RUN_DIR}/train_log.csv",
        val_log=f"{RUN_DIR}/val_log.csv",
    params:
        cfg=run_config,
        data=DATA_DIR,
        out=RUN_DIR,
    threads: 1
    log:
        "results/logs/train/{dataset}/{method}/seed{seed}.log",
    message:
        "Training {wildcards.method} (seed {wildcards.seed})"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli train --config-json {params.cfg} --method {wildcards.method} "
        "--seed {wildcards.seed} --data {params.data} --out {params.out} --threads {threads} > {log} 2>&1"
