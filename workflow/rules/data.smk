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
