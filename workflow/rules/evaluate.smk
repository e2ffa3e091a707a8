rule evaluate:
    input:
        cfg=f"{ROOT}/runs/{{name}}/{{fp}}/config.json",
        manifest=data_manifest,
        tokens=tokens,
        model=rules.train.output.model,
    output:
        metrics=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/metrics.json",
        ranks=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/ranks.parquet",
        pairwise=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/pairwise.parquet",
        **postprocess_outputs(),  # eval.postprocess on: metrics_{tag}.json, ranks_{tag}.parquet, ...
    params:
        data=input_dir("manifest"),
        tokens=input_dir("tokens"),
        out=output_dir("metrics"),
        postprocess=PLAN.postprocess_args(),
    wildcard_constraints:
        name="|".join(TRAINED + SWEEP_POINTS) or "^$",
    threads: 1
    resources:
        **gpu_resources(1),
    log:
        f"{ROOT}/logs/evaluate/{{name}}-{{fp}}-seed{{seed}}.log",
    benchmark:
        f"{ROOT}/benchmarks/evaluate/{{name}}-{{fp}}-seed{{seed}}.tsv"
    message:
        "Evaluating {wildcards.name} (seed {wildcards.seed}) on the test split"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli evaluate --config {input.cfg} --method {wildcards.name} --seed {wildcards.seed} "
        "--data {params.data} --tokens {params.tokens} --model {input.model} --out {params.out} "
        "{params.postprocess} > {log} 2>&1"


# The val split as model selection saw it (the budget test of vtrbench/report/convergence.py reads it).
rule evaluate_val:
    input:
        cfg=f"{ROOT}/runs/{{name}}/{{fp}}/config.json",
        manifest=data_manifest,
        tokens=tokens,
        model=rules.train.output.model,
    output:
        metrics=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/val/metrics.json",
        ranks=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/val/ranks.parquet",
        pairwise=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/val/pairwise.parquet",
    params:
        data=input_dir("manifest"),
        tokens=input_dir("tokens"),
        out=output_dir("metrics"),
    wildcard_constraints:
        name="|".join(TRAINED) or "^$",
    threads: 1
    resources:
        **gpu_resources(1),
    log:
        f"{ROOT}/logs/evaluate_val/{{name}}-{{fp}}-seed{{seed}}.log",
    message:
        "Evaluating {wildcards.name} (seed {wildcards.seed}) on the val split"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli evaluate --config {input.cfg} --method {wildcards.name} --seed {wildcards.seed} "
        "--data {params.data} --tokens {params.tokens} --model {input.model} --out {params.out} --split val "
        "> {log} 2>&1"


# Two-stage retrieval (vtrbench/rerank.py): depth and weight chosen on val, evaluated on test.
# eval.postprocess adds no tagged files here: the variant does not rescore a re-ranker's fused matrix.
rule rerank:
    input:
        cfg=f"{ROOT}/runs/{{name}}/{{fp}}/config.json",
        manifest=data_manifest,
        tokens=tokens,
        first=lambda w: stage_models(w)[0],
        second=lambda w: stage_models(w)[1],
    output:
        metrics=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/metrics.json",
        ranks=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/ranks.parquet",
        pairwise=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/pairwise.parquet",
        sweep=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/rerank_sweep.csv",
    params:
        data=input_dir("manifest"),
        tokens=input_dir("tokens"),
        out=output_dir("metrics"),
    wildcard_constraints:
        name="|".join(RERANK) or "^$",
    threads: 1
    resources:
        **gpu_resources(1),
    log:
        f"{ROOT}/logs/rerank/{{name}}-{{fp}}-seed{{seed}}.log",
    benchmark:
        f"{ROOT}/benchmarks/rerank/{{name}}-{{fp}}-seed{{seed}}.tsv"
    message:
        "Re-ranking: {wildcards.name} (seed {wildcards.seed}), depth and weight chosen on val"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli rerank --config {input.cfg} --method {wildcards.name} --seed {wildcards.seed} "
        "--data {params.data} --tokens {params.tokens} --first {input.first} --second {input.second} "
        "--out {params.out} > {log} 2>&1"


# External methods (README, "Adding a method", way b): the user's rule writes the test split's scores.npy (and
# latency.csv); they are ranked here by the code that ranks every method, so the files are the suite's own.
rule evaluate_external:
    input:
        cfg=f"{ROOT}/runs/{{name}}/{{fp}}/config.json",
        manifest=data_manifest,
        scores=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/scores.npy",
    output:
        metrics=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/metrics.json",
        ranks=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/ranks.parquet",
        pairwise=f"{ROOT}/runs/{{name}}/{{fp}}/seed{{seed}}/pairwise.parquet",
        **postprocess_outputs(),
    params:
        data=input_dir("manifest"),
        out=output_dir("metrics"),
        postprocess=PLAN.postprocess_args(),
    wildcard_constraints:
        name="|".join(EXTERNAL) or "^$",
    log:
        f"{ROOT}/logs/evaluate_external/{{name}}-{{fp}}-seed{{seed}}.log",
    message:
        "Ranking the scores {wildcards.name} (external, seed {wildcards.seed}) wrote for the test split"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli evaluate-scores --config {input.cfg} --method {wildcards.name} "
        "--seed {wildcards.seed} --data {params.data} --scores {input.scores} --out {params.out} "
        "{params.postprocess} > {log} 2>&1"


for _name in EXTERNAL:
    if config["methods"][_name].get("rules"):

        include: os.path.abspath(config["methods"][_name]["rules"])  # relative to the working directory
