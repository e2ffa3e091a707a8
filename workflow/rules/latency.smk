# Two-stage re-ranking, the query-latency benchmark (one rule per method, first seed) and the recall-vs-latency
# table/plot; plus the Snakemake files of external methods (README, "Adding a method", way b).


for _name in RERANK:
    from baselines.rerank import variant_names as _variants

    _entry = config["methods"][_name]

    rule:
        name:
            f"rerank_{_name}"
        input:
            manifest=rules.prepare.output.manifest,
            first=f"results/runs/{DATASET}/{_entry['first']}/seed{{seed}}/model.pt",
            second=f"results/runs/{DATASET}/{_entry['second']}/seed{{seed}}/model.pt",
        output:
            metrics=[
                f"results/runs/{DATASET}/{v}/seed{{seed}}/metrics.json"
                for v in _variants(_name, {k: x for k, x in _entry.items() if k != "class"})
            ],
        params:
            cfg=config_json(["dataset", "model", "train", "eval"], stages_of(_name)),
            name=_name,
            data=input_dir("manifest"),
            runs=runs_root("first"),
        threads: 1
        log:
            f"results/logs/rerank/{DATASET}/{_name}/seed{{seed}}.log",
        message:
            f"Re-ranking {_entry['first']}'s top k with {_entry['second']} ({_name})"
        conda:
            "../envs/vtrbench.yaml"
        shell:
            "python -m vtrbench.cli rerank --config-json {params.cfg} --method {params.name} --seed {wildcards.seed} "
            "--data {params.data} --runs {params.runs} > {log} 2>&1"


rule latency:
    input:
        manifest=rules.prepare.output.manifest,
        models=stage_models,
    output:
        latency=f"{RUN_DIR}/latency.csv",
    params:
        cfg=latency_config,
        data=input_dir("manifest"),
        runs=runs_root("models"),
    wildcard_constraints:
        method="|".join(TRAINED + RERANK) or "^$",
    threads: workflow.cores  # alone on the machine while timing; torch uses latency.threads
    log:
        "results/logs/latency/{dataset}/{method}/seed{seed}.log",
    message:
        "Query-latency benchmark of {wildcards.method}"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli latency --config-json {params.cfg} --method {wildcards.method} "
        "--seed {wildcards.seed} --data {params.data} --runs {params.runs} --out {output.latency} > {log} 2>&1"


rule tradeoff:
    input:
        metrics=all_metrics_files(),
        latency=latency_files(),
    output:
        table="results/tables/latency.csv",
        recall="results/tables/recall_latency.csv",
        plot="results/plots/recall_vs_latency.png",
    params:
        reference=config["latency"]["reference_gallery"],
    log:
        "results/logs/tradeoff.log",
    message:
        "Recall against query latency: tables and plot"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli tradeoff --metrics {input.metrics} --latency {input.latency} --tables results/tables "
        "--plots results/plots --reference-gallery {params.reference} > {log} 2>&1"


# External methods: their own rules write results/runs/{dataset}/{method}/seed{seed}/metrics.json (and latency.csv).
for _name in EXTERNAL:
    if config["methods"][_name].get("rules"):

        include: os.path.abspath(config["methods"][_name]["rules"])  # relative to the working directory
