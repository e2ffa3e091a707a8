# Retrieval at gallery scale (vtrbench/scale.py, vtrbench/ann.py), embedding methods, first seed: the distractor
# stream encoded in shards (one job each, so a cluster profile spreads them), then one timing job per method that
# searches every gallery size exactly and through each FAISS index, and the tables of all methods.


rule distractors:
    input:
        cfg=f"{ROOT}/distractors/{{name}}/{{fp}}/config.json",
        manifest=f"{PLAN.folder(DATA)}/manifest.json",
        tokens=tokens,
        model=latency_models,
    output:
        vectors=f"{ROOT}/distractors/{{name}}/{{fp}}/seed{{seed}}/{{start}}-{{stop}}.npy",
        cost=f"{ROOT}/distractors/{{name}}/{{fp}}/seed{{seed}}/{{start}}-{{stop}}.json",
    params:
        data=input_dir("manifest"),
        tokens=input_dir("tokens"),
    wildcard_constraints:
        name="|".join(PLAN.scale) or "^$",
        start=r"\d+",
        stop=r"\d+",
    threads: config["train"]["threads"]
    resources:
        **gpu_resources(1),
    log:
        f"{ROOT}/logs/distractors/{{name}}-{{fp}}-seed{{seed}}-{{start}}-{{stop}}.log",
    message:
        "Encoding distractor videos {wildcards.start}-{wildcards.stop} with {wildcards.name}"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli distractors --config {input.cfg} --method {wildcards.name} --seed {wildcards.seed} "
        "--data {params.data} --tokens {params.tokens} --model {input.model} --start {wildcards.start} "
        "--stop {wildcards.stop} --out {output.vectors} > {log} 2>&1"


rule scale:
    input:
        cfg=f"{ROOT}/scale/{{name}}/{{fp}}/config.json",
        manifest=f"{PLAN.folder(DATA)}/manifest.json",
        tokens=tokens,
        model=latency_models,
        shards=scale_shards,
    output:
        gallery=f"{ROOT}/scale/{{name}}/{{fp}}/seed{{seed}}/gallery.csv",
        ann=f"{ROOT}/scale/{{name}}/{{fp}}/seed{{seed}}/ann.csv",
    params:
        data=input_dir("manifest"),
        tokens=input_dir("tokens"),
        out=output_dir("gallery"),
    wildcard_constraints:
        name="|".join(PLAN.scale) or "^$",
    threads: config["latency"]["threads"]
    resources:
        **timing_resources(),
    log:
        f"{ROOT}/logs/scale/{{name}}-{{fp}}-seed{{seed}}.log",
    message:
        "Gallery scale of {wildcards.name}: exact recall and index recall against queries per second"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli scale --config {input.cfg} --method {wildcards.name} --seed {wildcards.seed} "
        "--data {params.data} --tokens {params.tokens} --model {input.model} --shards {input.shards} "
        "--out {params.out} > {log} 2>&1"


rule scale_tables:
    input:
        gallery=PLAN.scale_files("gallery"),
        ann=PLAN.scale_files("ann"),
    output:
        scale=f"{ROOT}/tables/scale.csv",
        points=f"{ROOT}/tables/recall_qps.csv",
    params:
        tables=output_dir("scale"),
    log:
        f"{ROOT}/logs/scale_tables.log",
    message:
        "Gallery scale: tables"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli scale-tables --gallery {input.gallery} --ann {input.ann} --tables {params.tables} "
        "> {log} 2>&1"
