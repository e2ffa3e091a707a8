# The config.json of every result folder: what the folder's results depend on (vtrbench/plan.py). Its path holds
# the fingerprint of its content, so it is written once and never changes.


rule write_config:
    input:
        pretrained=lambda w: PLAN.pretrained_towers(w.section),
    output:
        cfg=f"{ROOT}/{{section}}/{{name}}/{{fp}}/config.json",
    params:
        json=unit_json,
    log:
        f"{ROOT}/logs/config/{{section}}/{{name}}/{{fp}}.log",
    message:
        "Writing {output.cfg}"
    conda:
        "../envs/vtrbench.yaml"
    shell:
        "python -m vtrbench.cli write-config --json {params.json} --out {output.cfg} > {log} 2>&1"
