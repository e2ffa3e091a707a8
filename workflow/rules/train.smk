rule train:
    input:
        cfg=f"{ROOT}/runs/{{name}}/{{fp}}/config.json",
        manifest=data_manifest,
        tokens=tokens,
        features=features,
        init=init_checkpoint,
    output:
        model=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/model.pt",
        train_log=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/train_log.csv",
        val_log=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/val_log.csv",
    params:
        data=input_dir("manifest"),
        tokens=input_dir("tokens"),
        out=output_dir("model"),
        init=lambda w, input: f"--init-from {input.init}" if input.init else "",
        features=lambda w, input: f"--features {os.path.dirname(str(input.features))}" if input.features else "",
        launch=train_launcher,
    wildcard_constraints:
        name="|".join(TRAINED + SWEEP_POINTS) or "^$",
    threads: config["train"]["threads"]
    priority: train_priority
    resources:
        **gpu_resources(),
    log:
        f"{ROOT}/logs/train/{{name}}-{{fp}}-seed{{seed}}.log",
    benchmark:
        f"{ROOT}/benchmarks/train/{{name}}-{{fp}}-seed{{seed}}.tsv"
    message:
        "Training {wildcards.name} (seed {wildcards.seed}) in {params.out}"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "{params.launch} train --config {input.cfg} --method {wildcards.name} --seed {wildcards.seed} "
        "--data {params.data} --tokens {params.tokens} --out {params.out} {params.init} {params.features} > {log} 2>&1"
