"""README "Adding a method", followed as written: its code blocks are copied into a fresh folder (a class in a user
folder, an external rule with its script, the config entries) and the smoke workflow run there finds both methods in
summary.csv, comparisons.csv, the latency tables and the report, ranked by the suite on its own test split."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, copy_workflow, run_folder, snakemake_env


def readme_blocks() -> dict[str, str]:
    """The fenced code blocks of the README's "Adding a method" section: a block whose first line is ``# PATH`` by
    that path, the YAML block as ``config``."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Adding a method") : text.index("## Scaling out")]
    blocks = {}
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S):
        first = body.splitlines()[0]
        key = "config" if lang == "yaml" else first.removeprefix("# ").split(":")[0].split()[0]
        blocks[key] = body
    return blocks


def test_the_section_has_its_four_blocks():
    assert set(readme_blocks()) == {"my_methods/max_pool.py", "toy.smk", "toy_method.py", "config"}


@pytest.fixture(scope="module")
def added(tmp_path_factory):
    """The smoke config with one built-in method and the README's two, run to its report in a fresh folder."""
    folder = copy_workflow(tmp_path_factory.mktemp("adding"))
    blocks = readme_blocks()
    for path, body in blocks.items():
        if path != "config":
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(body)
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["run_name"] = "adding"
    config["methods"] = {"dual_mean": config["methods"]["dual_mean"], **yaml.safe_load(blocks["config"])["methods"]}
    config["throughput"] = {"enabled": False}
    (folder / "config" / "adding.yaml").write_text(yaml.safe_dump(config))
    check = [sys.executable, "-m", "vtrbench.cli", "check-config", "--config", "config/adding.yaml"]
    checked = subprocess.run(check, cwd=folder, env=snakemake_env(), capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr[-3000:]
    launcher = Path(sys.executable).parent / "snakemake"  # as make run starts it (no working directory on the path)
    cmd = [str(launcher), "--cores", "2", "--configfile", "config/adding.yaml"]
    proc = subprocess.run(cmd, cwd=folder, env=snakemake_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def test_both_methods_reach_summary_comparisons_and_report(added):
    root = added / "results" / "adding"
    summary = pd.read_csv(root / "tables" / "summary.csv")
    assert set(summary.method) == {"dual_mean", "max_pool", "toy"}
    pairs = pd.read_csv(root / "tables" / "comparisons.csv")
    compared = set(pairs.method_a) | set(pairs.method_b)
    assert {"dual_mean", "max_pool", "toy"} <= compared
    recall = pd.read_csv(root / "tables" / "recall_latency.csv").set_index("method")
    assert np.isfinite(recall.loc["toy", "query_ms"]) and np.isfinite(recall.loc["max_pool", "query_ms"])
    report = (root / "report.html").read_text()
    assert "max_pool" in report and "toy" in report


def test_the_external_scores_are_ranked_by_the_suite(added):
    """toy's metrics.json and ranks are the suite's: every test caption ranked once, the pairwise comparisons the
    suite's own hard-negative pairs (the same rows as a built-in method's)."""
    toy, built_in = run_folder(added, "adding", "toy"), run_folder(added, "adding", "dual_mean")
    metrics = yaml.safe_load((toy / "metrics.json").read_text())
    assert metrics["kind"] == "external" and metrics["method_class"] == "external"
    ranks = pd.read_parquet(toy / "ranks.parquet")
    reference = pd.read_parquet(built_in / "ranks.parquet")
    assert sorted(ranks[ranks.direction == "t2v"]["query"]) == sorted(reference[reference.direction == "t2v"]["query"])
    pairs, reference_pairs = pd.read_parquet(toy / "pairwise.parquet"), pd.read_parquet(built_in / "pairwise.parquet")
    assert pairs[["query", "negative"]].equals(reference_pairs[["query", "negative"]])


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (np.zeros((3, 8), np.float32), r"scores must be \[n_caption, n_video\] = \[4, 8\] of the prepared test split"),
        (np.full((4, 8), np.nan, np.float32), r"32 scores are NaN or infinite"),
        (np.array([["a"] * 8] * 4), r"scores must be real numbers"),
    ],
)
def test_bad_external_scores_are_refused_in_one_line_naming_the_file(tmp_path, scores, message):
    from vtrbench.data.records import SplitData
    from vtrbench.evaluate import read_scores

    split = SplitData(
        [f"v{i}" for i in range(8)], None, np.zeros(8, int), np.array(["original"] * 8), ["c"] * 4, np.arange(4)
    )
    path = tmp_path / "scores.npy"
    np.save(path, scores)
    with pytest.raises(ValueError, match=message) as err:
        read_scores(path, split)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
