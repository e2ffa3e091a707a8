# The query-latency benchmark (one job per method, first seed) and the recall-vs-latency tables.


rule latency:
    input:
        cfg=f"{ROOT}/latency/{{name}}/{{fp}}/config.json",
        manifest=f"{PLAN.folder(DATA)}/manifest.json",
        tokens=tokens,
        models=latency_models,
    output:
        latency=f"{ROOT}/latency/{{name}}/{{fp}}/seed{{seed}}/latency.csv",
    params:
        data=input_dir("manifest"),
        tokens=input_dir("tokens"),
    wildcard_constraints:
        name="|".join(TRAINED + RERANK) or "^$",
    threads: config["latency"]["threads"]
    resources:
        **timing_resources(),
    log:
        f"{ROOT}/logs/latency/{{name}}-{{fp}}-seed{{seed}}.log",
    message:
        "Query-latency benchmark of {wildcards.name}"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli latency --config {input.cfg} --method {wildcards.name} --seed {wildcards.seed} "
        "--data {params.data} --tokens {params.tokens} --models {input.models} --out {output.latency} > {log} 2>&1"


rule tradeoff:
    input:
        metrics=PLAN.metrics_files(),
        latency=PLAN.latency_files(),
        scale=PLAN.section_tables("scale")[1:] if config["scale"]["enabled"] else [],
    output:
        table=f"{ROOT}/tables/latency.csv",
        online=f"{ROOT}/tables/latency_vs_gallery.csv",
        recall=f"{ROOT}/tables/recall_latency.csv",
    params:
        tables=output_dir("table"),
        reference=config["latency"]["reference_gallery"],
        scale=lambda w, input: f"--scale-points {input.scale}" if input.scale else "",
    log:
        f"{ROOT}/logs/tradeoff.log",
    message:
        "Recall against query latency: tables"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli tradeoff --metrics {input.metrics} --latency {input.latency} "
        "--tables {params.tables} --reference-gallery {params.reference} {params.scale} > {log} 2>&1"
