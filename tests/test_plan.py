"""The workflow's plan as an object (vtrbench.plan.Plan), the Snakemake process without torch, and the structure
the plan relies on: one encode path, one autocast, one device preamble, no import circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_workflow, snakemake_env
from vtrbench import plan, registry
from vtrbench.methods import resolve

ROOT = "results/smoke"


@pytest.fixture
def smoke_plan(smoke_config) -> plan.Plan:
    return plan.Plan(smoke_config)


def test_methods_are_planned_by_kind(smoke_plan):
    assert smoke_plan.trained == ["dual_mean", "cret", "dual_seq", "cross_encoder"]
    assert smoke_plan.rerank == ["rerank"] and smoke_plan.external == []
    assert smoke_plan.warm_started_from == {"dual_seq"}
    order = [
        smoke_plan.train_priority(smoke_plan.runs[m], s) for m in ("dual_seq", "cross_encoder", "cret") for s in (0, 1)
    ]
    assert order == [5, 4, 3, 2, 1, 0]  # by dependency, then the latency seed (0) first


def test_every_stage_path_is_spelt_one_way(smoke_plan):
    """A re-ranker's stages, a warm start's source and the latency job's models all resolve to the run folders
    the train rule writes (the same fingerprint folders as the stages' own runs)."""
    run = smoke_plan.runs["rerank"]
    dual, cross = smoke_plan.run_dir("dual_seq", 0), smoke_plan.run_dir("cross_encoder", 0)
    assert smoke_plan.stage_models(run, 0) == [f"{dual}/model.pt", f"{cross}/model.pt"]
    assert smoke_plan.init_checkpoint(smoke_plan.runs["cross_encoder"], 0) == [f"{dual}/model.pt"]
    assert smoke_plan.init_checkpoint(smoke_plan.runs["cret"], 0) == []
    assert smoke_plan.stage_models(smoke_plan.runs["cret"], 1) == [f"{smoke_plan.run_dir('cret', 1)}/model.pt"]
    assert dual == f"{ROOT}/runs/dual_seq/{smoke_plan.runs['dual_seq'].fp}/seed0"


def test_every_unit_is_found_by_its_folder(smoke_plan):
    for unit in [smoke_plan.data, *smoke_plan.runs.values(), *smoke_plan.long.values(), smoke_plan.report]:
        section, name, fp = smoke_plan.folder(unit).split("/")[2:]
        found = smoke_plan.unit(section, name, fp)
        assert found == unit and found.config == unit.config
    assert smoke_plan.unit("runs", "cret", "00000000") is None


def test_budget_test_runs_are_their_own_units(smoke_plan):
    """The longer runs differ from the main ones only by the budget factor, so they get folders of their own."""
    for m in smoke_plan.trained:
        assert smoke_plan.long[m].fp != smoke_plan.runs[m].fp
        assert smoke_plan.long[m].config == {**smoke_plan.runs[m].config, "budget_factor": 2}
    (method, short, long), *_ = smoke_plan.budget_tests()
    assert (method, short) == ("dual_mean", f"{smoke_plan.run_dir('dual_mean', 0)}/val")
    assert long == f"{smoke_plan.run_dir('dual_mean', 0, smoke_plan.long['dual_mean'])}/val"


def test_the_budget_test_covers_the_listed_methods_only(smoke_config):
    smoke_config["plateau"]["methods"] = ["cret", "cross_encoder"]
    p = plan.Plan(smoke_config)
    assert [m for m, _, _ in p.budget_tests()] == ["cret", "cross_encoder"]
    assert set(p.long) == {"cret", "cross_encoder"}


def test_files_and_tables_follow_the_enabled_sections(smoke_config):
    smoke_config["plateau"]["enabled"], smoke_config["throughput"]["enabled"] = True, False
    p = plan.Plan(smoke_config)
    assert p.metrics_files()[0] == f"{p.run_dir('dual_mean', 0)}/metrics.json"
    assert len(p.metrics_files()) == len(smoke_config["methods"]) * len(smoke_config["seeds"])
    assert len(p.run_logs()) == 2 * len(p.trained) * len(smoke_config["seeds"])
    assert p.rerank_sweeps() == [f"{p.run_dir('rerank', 0)}/rerank_sweep.csv"]
    assert [m for m, _ in p.test_runs()] == [*p.trained, "rerank"]
    tables = p.report_tables()
    assert f"{ROOT}/tables/convergence.csv" in tables and f"{ROOT}/tables/rerank_sweep.csv" in tables
    assert f"{ROOT}/tables/throughput.csv" not in tables
    assert p.final_output()[:2] == [f"{ROOT}/report.html", "results/report.html"]
    assert f"{ROOT}/tables/convergence.csv" in p.final_output()


def test_the_sweep_table_needs_a_sweep_method(smoke_config):
    smoke_config["sweep"]["method"] = "absent"
    with pytest.raises(ValueError, match=r"sweep.method=.absent. is not a configured method"):
        plan.Plan(smoke_config).section_tables("sweep")


def test_the_registry_states_each_class_kind():
    for name in registry.METHODS:
        assert resolve(name).kind == registry.kind_of(name), name


def _no_torch_env(tmp_path: Path) -> dict:
    blocked = tmp_path / "blocked" / "torch"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text('raise ImportError("torch is blocked in this process")\n')
    return {**snakemake_env(), "PYTHONPATH": str(blocked.parent)}


@pytest.mark.parametrize("configs", [["config/config.yaml"], ["config/smoke.yaml"], ["config/ablation.yaml"]])
def test_snakemake_plans_without_torch(tmp_path, configs):
    """`snakemake -n` in a process where importing torch fails: parsing and planning need no ML stack."""
    copy_workflow(tmp_path)
    env = _no_torch_env(tmp_path)
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert "torch is blocked" in check.stderr  # the guard works
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--configfile", *configs]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "train" in proc.stdout and "torch" not in proc.stderr


def test_a_bad_method_option_stops_the_run_before_any_job(tmp_path):
    """A wrong class option passes the torch-free plan, then stops the run at its start (onstart), in one line."""
    copy_workflow(tmp_path)
    text = (tmp_path / "config" / "smoke.yaml").read_text().replace("global_loss: gees", "global_loss: geese", 1)
    (tmp_path / "config" / "smoke.yaml").write_text(text)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "config/smoke.yaml"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=snakemake_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "config error at methods.cret" in proc.stderr and "geese" in proc.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("config.json"))


# ----- structure: one path, one autocast, one preamble, no circle -----
def _sources() -> dict[str, str]:
    files = [*REPO.glob("vtrbench/**/*.py"), *REPO.glob("cret/*.py"), *REPO.glob("baselines/*.py")]
    return {str(p.relative_to(REPO)): p.read_text() for p in files}


@pytest.mark.parametrize(
    ("needle", "home"),
    [
        ("torch.autocast(", "vtrbench/device.py"),
        ("torch.set_num_threads(", "vtrbench/device.py"),
        ("def encode_gallery(", "vtrbench/encoding.py"),
        ("def top_candidates(", "vtrbench/candidates.py"),
        ("def random_batch(", "vtrbench/data/batches.py"),
        ("def training_speed(", "vtrbench/report/aggregate.py"),
        ("pd.read_parquet(", "vtrbench/resultfiles.py"),
    ],
)
def test_each_concern_lives_once(needle, home):
    assert [path for path, text in _sources().items() if needle in text] == [home]


def test_every_scoring_job_encodes_through_the_one_path():
    sources = _sources()
    for module in ("evaluate", "rerank", "latency", "gpu_check"):
        assert "from vtrbench.encoding import" in sources[f"vtrbench/{module}.py"], module


def test_the_harness_has_no_import_circle():
    """Every import of vtrbench modules (top level and inside functions) forms a graph without a cycle."""
    modules = {p.removesuffix(".py").replace("/", ".").removesuffix(".__init__"): t for p, t in _sources().items()}
    modules = {m: t for m, t in modules.items() if m.startswith("vtrbench")}
    graph = {}
    for module, text in modules.items():
        found = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vtrbench"):
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[module] = {m for m in found if m in modules and m != module}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert "vtrbench.rerank" not in graph["vtrbench.evaluate"]
