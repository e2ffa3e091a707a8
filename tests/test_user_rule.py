"""README "Adding a method", way (b): a user's own Snakemake rule writes the result files; tables and report show it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from tests.conftest import REPO, copy_workflow

TOY_RULE = """
rule toy_method:
    output:
        metrics="results/{run}/runs/toy/{fp}/seed{seed}/metrics.json",
        latency="results/{run}/runs/toy/{fp}/seed{seed}/latency.csv",
    shell:
        "python toy_method.py {output.metrics} {output.latency}"
"""

TOY_SCRIPT = """
import json, sys
recall = {"R@1": 42.0, "R@5": 60.0, "R@10": 70.0, "MdR": 2.0, "MnR": 5.0}
json.dump({"method": "toy", "seed": 0, "kind": "embedding", "t2v": recall, "v2t": recall}, open(sys.argv[1], "w"))
rows = ["method,stage,backend,gallery_size,batch_size,repeat,seconds,items,bytes_per_video,measured"]
rows += [f"toy,query_encode,model,0,1,{i},0.001,1,,True" for i in range(3)]
rows += [f"toy,search,faiss,8,1,{i},0.002,1,,True" for i in range(3)]
rows += ["toy,memory,model,0,1,0,,1,256,True"]
open(sys.argv[2], "w").write("\\n".join(rows) + "\\n")
"""


def test_user_rule_results_reach_tables_and_report(tmp_path):
    copy_workflow(tmp_path)
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["run_name"] = "toy"
    config["methods"] = {"toy": {"class": "external", "rules": "toy.smk"}}
    config["latency"] = {"reference_gallery": 8}
    config["throughput"] = {"enabled": False}
    (tmp_path / "config" / "toy.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "toy.smk").write_text(TOY_RULE)
    (tmp_path / "toy_method.py").write_text(TOY_SCRIPT)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/toy.yaml"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "results" / "toy"
    summary = pd.read_csv(root / "tables" / "summary.csv")
    assert summary.method.tolist() == ["toy"]
    recall = pd.read_csv(root / "tables" / "recall_latency.csv")
    row = recall.set_index("method").loc["toy"]
    assert row["t2v_R@1_mean"] == 42.0 and abs(row.query_ms - 3.0) < 1e-9 and row.bytes_per_video == 256
    assert (root / "figures" / "recall_vs_cost.png").stat().st_size > 0
    assert "toy" in (root / "report.html").read_text()
