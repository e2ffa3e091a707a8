"""Test-time post-processing (vtrbench/postprocess.py): the rescoring itself, that it is never on by default, and
that turning it on adds a tagged variant beside the plain test metrics without changing them."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import REPO, copy_workflow, load_shipped_config, snakemake_env
from vtrbench import config as config_lib
from vtrbench.evaluate import evaluate_scores
from vtrbench.metrics import t2v_ranks
from vtrbench.postprocess import Postprocess, label, rescore, settings
from vtrbench.report.html import postprocess_rows
from vtrbench.report.postprocess import variant_effect, write_postprocess


def _loop_reference(scores: np.ndarray, kind: str, temperature: float) -> np.ndarray:
    """The published formulas written out element by element (CAMoE's DSL, QB-Norm's inverted softmax with the
    queries themselves as the querybank)."""
    n_text, n_video = scores.shape
    out = np.zeros_like(scores, dtype=np.float64)
    for j in range(n_video):
        denominator = sum(math.exp(scores[b, j] / temperature) for b in range(n_text))
        for i in range(n_text):
            weight = math.exp(scores[i, j] / temperature) / denominator
            out[i, j] = scores[i, j] * weight if kind == "dsl" else weight
    return out


@pytest.mark.parametrize("kind", ["dsl", "inverted_softmax"])
@pytest.mark.parametrize("temperature", [1.0, 0.05])
def test_rescoring_matches_a_loop_reference(kind, temperature):
    scores = np.random.default_rng(0).uniform(-1, 1, size=(7, 5)).astype(np.float32)  # a model's float32 scores
    got = rescore(torch.from_numpy(scores), Postprocess(kind, temperature)).numpy()
    np.testing.assert_allclose(got, _loop_reference(scores.astype(np.float64), kind, temperature), rtol=1e-12)


def test_rescoring_is_blocked_by_columns_without_changing_a_value(monkeypatch):
    from vtrbench import postprocess

    scores = torch.randn(6, 11, generator=torch.Generator().manual_seed(0))
    whole = rescore(scores, Postprocess("dsl", 0.1))
    monkeypatch.setattr(postprocess, "_COLUMN_BLOCK", 12)  # 2 columns per block
    # each column's softmax is its own: blocks change no value beyond float64 rounding of a vectorised sum
    torch.testing.assert_close(rescore(scores, Postprocess("dsl", 0.1)), whole, rtol=1e-12, atol=0)


def test_none_is_the_identity():
    scores = torch.randn(4, 3)
    assert rescore(scores, Postprocess()) is scores


def test_dsl_demotes_a_hub_video():
    """Video 2 scores 0.9 for every caption, above each of captions 0 and 1's own video (0.8): plain ranks 2, 2, 1.
    Its column is flat, so DSL (T = 1) keeps a third of it, 0.9 / 3 = 0.3, while caption 0's own video keeps
    0.8 * e^0.8 / (e^0.8 + 2 e^0.1) = 0.8 * 0.5017 = 0.401 (caption 1 the same by symmetry): ranks 1, 1, 1."""
    scores = np.array([[0.8, 0.1, 0.9], [0.1, 0.8, 0.9], [0.1, 0.1, 0.9]])
    caption_video = np.array([0, 1, 2])
    assert t2v_ranks(scores, caption_video).rank.tolist() == [2, 2, 1]
    dsl = rescore(scores, Postprocess("dsl", 1.0)).numpy()
    assert dsl[0, 0] == pytest.approx(0.8 * math.exp(0.8) / (math.exp(0.8) + 2 * math.exp(0.1)), rel=1e-12)
    assert dsl[0, 0] == pytest.approx(0.4014, abs=1e-4) and dsl[0, 2] == pytest.approx(0.3, abs=1e-12)
    assert t2v_ranks(dsl, caption_video).rank.tolist() == [1, 1, 1]
    inverted = rescore(scores, Postprocess("inverted_softmax", 1.0)).numpy()
    assert t2v_ranks(inverted, caption_video).rank.tolist() == [1, 1, 1]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="postprocess type must be one of none, dsl, inverted_softmax"):
        Postprocess("dls")
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        Postprocess("dsl", 0.0)


OPT_IN = "dsl.yaml"


def test_the_opt_in_overlay_turns_on_dsl_and_nothing_else():
    content = yaml.safe_load((REPO / "config" / OPT_IN).read_text())
    assert content == {"eval": {"postprocess": "dsl"}}


def test_no_shipped_config_turns_it_on():
    """Every config/*.yaml resolves to ``none`` and none fills the key in, but the overlay that is the opt-in itself
    (config/dsl.yaml); overlays are read merged onto the default, as they are run."""
    shipped = sorted(p for p in (REPO / "config").glob("*.yaml") if p.name not in ("schema.yaml", OPT_IN))
    assert len(shipped) >= 6
    for path in shipped:
        cfg = load_shipped_config(path)
        assert settings(cfg).type == "none", path.name
        assert not settings(cfg).enabled and "postprocess" not in cfg["eval"], path.name


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"postprocess": "dls"}, r"^config error at eval\.postprocess: 'dls' is not one of \['none', 'dsl', "),
        ({"postprocess": "dsl", "postprocess_temperature": 0}, r"^config error at eval\.postprocess_temperature: 0 "),
    ],
)
def test_a_bad_option_is_one_line_naming_the_key(smoke_config, override, message):
    cfg = config_lib.deep_update(copy.deepcopy(smoke_config), {"eval": override})
    with pytest.raises(config_lib.ConfigError, match=message) as err:
        config_lib.validate(cfg, classes=False)
    assert "\n" not in str(err.value)


def test_the_option_adds_a_tagged_variant_and_keeps_the_plain_files(smoke_config, smoke_data, tmp_path):
    from vtrbench.data.records import load_split

    test = load_split(smoke_data, "test")
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((len(test.captions), test.num_videos)).astype(np.float32)
    scores[:, 0] += 3.0  # a hub: video 0 near the top of every caption's list
    np.save(tmp_path / "scores.npy", scores)
    off = copy.deepcopy(smoke_config)
    off["methods"]["toy"] = {"class": "external"}
    on = config_lib.deep_update(copy.deepcopy(off), {"eval": {"postprocess": "dsl", "postprocess_temperature": 0.5}})
    assert settings(on) == Postprocess("dsl", 0.5)
    evaluate_scores(off, "toy", 0, smoke_data, tmp_path / "scores.npy", tmp_path / "off")
    evaluate_scores(on, "toy", 0, smoke_data, tmp_path / "scores.npy", tmp_path / "on")

    assert sorted(p.name for p in (tmp_path / "off").iterdir()) == ["metrics.json", "pairwise.parquet", "ranks.parquet"]
    for name in ("metrics.json", "ranks.parquet", "pairwise.parquet"):  # the plain files: byte for byte the same
        assert (tmp_path / "on" / name).read_bytes() == (tmp_path / "off" / name).read_bytes(), name
    variant = json.loads((tmp_path / "on" / "metrics_dsl.json").read_text())
    assert variant["postprocess"] == {"type": "dsl", "temperature": 0.5, "tag": "dsl"}
    assert variant["method"] == "toy" and variant["seed"] == 0
    expected = t2v_ranks(rescore(scores, Postprocess("dsl", 0.5)), test.caption_video).rank
    ranks = pd.read_parquet(tmp_path / "on" / "ranks_dsl.parquet")
    np.testing.assert_array_equal(ranks[ranks.direction == "t2v"]["rank"].to_numpy(), expected)
    assert variant["t2v"]["R@1"] == pytest.approx(100 * np.mean(expected == 1))
    plain = json.loads((tmp_path / "on" / "metrics.json").read_text())
    assert plain["design"] == "unspecified"  # an external entry that declares no design
    assert variant["t2v"]["R@1"] > plain["t2v"]["R@1"]  # the hub is demoted
    assert (tmp_path / "on" / "pairwise_dsl.parquet").exists()


def _ranks(folder, t2v_ranks_, name):
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"direction": "t2v", "query": np.arange(len(t2v_ranks_)), "rank": t2v_ranks_})
    frame.to_parquet(folder / name)


def test_the_report_table_pairs_the_variant_with_the_plain_run_and_tags_every_row(tmp_path):
    rng = np.random.default_rng(1)
    folders, methods = [], []
    for method, gain in (("a", 0.3), ("b", 0.0)):
        for seed in (0, 1, 2):
            folder = tmp_path / method / f"seed{seed}"
            plain = rng.integers(1, 4, size=300)
            post = np.where(rng.random(300) < gain, 1, plain)  # the variant turns some misses into hits
            _ranks(folder, plain, "ranks.parquet")
            _ranks(folder, post, "ranks_dsl.parquet")
            folders.append(folder)
            methods.append(method)
    _ranks(tmp_path / "c" / "seed0", rng.integers(1, 4, size=300), "ranks.parquet")  # no variant: left out
    table = write_postprocess([*folders, tmp_path / "c" / "seed0"], [*methods, "c"], "dsl", tmp_path / "pp.csv")
    assert table["method"].tolist() == ["a", "b"]
    assert table["label"].tolist() == ["a [dsl]", "b [dsl]"] and set(table["variant"]) == {"dsl"}
    a, b = table.iloc[0], table.iloc[1]
    assert a["diff"] == pytest.approx(a["post"] - a["plain"]) and a["ci_low"] > 0  # resolved
    assert b["diff"] == 0 and b["ci_low"] == b["ci_high"] == 0
    assert a["seeds"] == 3 and a["queries"] == 300
    assert pd.read_csv(tmp_path / "pp.csv")["label"].tolist() == ["a [dsl]", "b [dsl]"]
    rows = postprocess_rows(table)
    assert [r["label"] for r in rows] == ["a [dsl]", "b [dsl]"]
    assert rows[0]["sentence"].startswith("a [dsl] moves test t2v R@1 by +")
    assert rows[1]["sentence"].startswith("no move resolved by dsl for b with 3 seeds")
    assert variant_effect({}, "dsl").empty and label("x", Postprocess("dsl")) == "x [dsl]"


def test_the_report_shows_the_variant_only_when_given_and_tagged(tmp_path):
    from tests.test_report import _config, _inputs, make_results
    from vtrbench.report import html as report_html

    results = make_results(tmp_path / "results")
    plain = report_html.render_report(_inputs(results), results / "plain.html", _config(), results / "figures")
    assert 'id="postprocess"' not in plain.read_text()  # off: no section, no tag
    effect = pd.DataFrame(
        [{"method": "dual_mean", "variant": "dsl", "label": "dual_mean [dsl]", "metric": "t2v_R@1", "plain": 30.0,
          "post": 33.0, "diff": 3.0, "ci_low": 1.0, "ci_high": 5.0, "p_post_beats_plain": 1.0, "seeds": 2,
          "queries": 100}]
    )  # fmt: skip
    effect.to_csv(results / "tables" / "postprocess.csv", index=False)
    html = report_html.render_report(_inputs(results), results / "r.html", _config(), results / "figures").read_text()
    section = html[html.index('id="postprocess"') : html.index('<h2 id="cost">')]
    assert "<td>dual_mean [dsl]</td><td>30.0</td><td>33.0</td><td>+3.0 [+1.0, +5.0]</td>" in section
    assert "dual_mean [dsl] moves test t2v R@1 by +3.0 [+1.0, +5.0] points" in section
    ts2net = html[html.index("TS2-Net + inverted softmax") :]
    assert '<td class="text">dsl</td>' in ts2net[: ts2net.index("</tr>")]  # the ledger says which rows used one


def test_the_plan_lists_the_variant_only_when_on_and_never_for_a_re_ranker(smoke_config):
    from vtrbench.plan import Plan

    off = copy.deepcopy(smoke_config)
    off["methods"]["toy"] = {"class": "external"}
    plan = Plan(off)
    assert plan.postprocess_tag() is None and plan.postprocess_runs() == []
    assert not any(t.endswith("/postprocess.csv") for t in plan.report_tables())
    on = Plan(config_lib.deep_update(copy.deepcopy(off), {"eval": {"postprocess": "inverted_softmax"}}))
    assert on.postprocess_tag() == "inverted_softmax"
    assert [m for m, _ in on.postprocess_runs()] == ["dual_mean", "cret", "dual_seq", "cross_encoder", "toy"]
    assert f"{on.root}/tables/postprocess.csv" in on.report_tables()
    # the variant re-runs the test evaluations only: every run keeps its folder, the evaluate rules get it by --set
    assert all(on.runs[m].fp == plan.runs[m].fp for m in plan.methods)
    assert on.postprocess_args() == "--set eval.postprocess=inverted_softmax" and plan.postprocess_args() == ""


def _summary(folder, *configs: str) -> pd.DataFrame:
    """`snakemake -n --summary`: every file the workflow plans, with the rule that writes it (nothing runs)."""
    import io
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "snakemake", "-n", "--summary", "--cores", "2", "--configfile", *configs]
    proc = subprocess.run(cmd, cwd=folder, env=snakemake_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = proc.stdout[proc.stdout.index("output_file\t") :]  # after any log lines
    return pd.read_csv(io.StringIO(table), sep="\t")


def test_the_workflow_plans_the_variant_end_to_end_only_when_the_config_turns_it_on(tmp_path):
    """config/smoke.yaml + ``eval: {postprocess: dsl}``: every trained method's evaluate job declares the tagged
    files, the postprocess rule writes tables/postprocess.csv and the report reads it; the plain smoke config plans
    none of them."""
    copy_workflow(tmp_path)
    (tmp_path / "config" / "postprocess.yaml").write_text(yaml.safe_dump({"eval": {"postprocess": "dsl"}}))
    on = _summary(tmp_path, "config/smoke.yaml", "config/postprocess.yaml")
    tagged = on[on.output_file.str.contains(r"_dsl\.")]
    runs = {"dual_mean", "cret", "dual_seq", "cross_encoder"}  # the smoke config's trained methods, not the re-ranker
    expected = {"metrics_dsl.json", "ranks_dsl.parquet", "pairwise_dsl.parquet"}
    for method in runs:
        files = tagged[tagged.output_file.str.contains(f"/runs/{method}/")]
        assert {f.rsplit("/", 1)[1] for f in files.output_file} == expected, method
        assert set(files.rule) == {"evaluate"}, method
    assert len(tagged) == 3 * len(runs)  # no tagged file of the re-ranker (nor of a val split)
    table = on[on.output_file.str.endswith("/tables/postprocess.csv")]
    assert table.rule.tolist() == ["postprocess"] and table.plan.tolist() == ["update pending"]

    off = _summary(tmp_path, "config/smoke.yaml")
    assert not off.output_file.str.contains(r"_dsl\.|postprocess").any()
    assert "postprocess" not in set(off.rule)


def test_the_cli_writes_the_table_and_refuses_bad_arguments_in_one_line(tmp_path, capsys):
    from vtrbench.cli import main

    for seed in (0, 1):
        _ranks(tmp_path / "a" / f"seed{seed}", np.array([1, 2, 1, 3]), "ranks.parquet")
        _ranks(tmp_path / "a" / f"seed{seed}", np.array([1, 1, 1, 3]), "ranks_dsl.parquet")
    runs = [str(tmp_path / "a" / f"seed{seed}") for seed in (0, 1)]
    out = tmp_path / "tables" / "postprocess.csv"
    assert main(["postprocess", "--variant", "dsl", "--methods", "a", "a", "--runs", *runs, "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert table.label.tolist() == ["a [dsl]"] and table["diff"].tolist() == [25.0]
    assert main(["postprocess", "--variant", "dsl", "--methods", "a", "--runs", *runs, "--out", str(out)]) == 2
    assert main(["postprocess", "--variant", "none", "--methods", "a", "a", "--runs", *runs, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "vtrbench postprocess: error: postprocess: give one --methods name per --runs folder (1 vs 2)"
    assert err[1].startswith("vtrbench postprocess: error: --variant must name a post-processing variant (dsl, ")
