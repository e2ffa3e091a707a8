"""The front door as a property: every mutation of config/smoke.yaml is either accepted by the up-front check
(schema, links, one probe step per method: ``vtrbench.preflight``) and then plans and dry-runs cleanly, or refused
with exactly one line naming a config key. No mutation may pass the check and then fail inside a job: a sample of
the accepted ones dry-runs in Snakemake, and one runs the whole smoke workflow to its report.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, copy_workflow, snakemake_env
from vtrbench import config as config_lib
from vtrbench.plan import Plan
from vtrbench.preflight import preflight

SMOKE = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
TOP_KEYS = set(config_lib.load_schema()["properties"])
MUTATIONS = 150  # examples per run; the run is seeded (derandomize), so the same mutations every time
DRY_RUNS = 4  # accepted mutations dry-run by Snakemake itself

ACCEPTED: list[dict[str, Any]] = []  # filled by the property test, read by the dry-run and end-to-end tests
REFUSED: list[str] = []


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested mapping (list items are addressed by index)."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out.append((*prefix, key))
        out += _paths(value, (*prefix, key))
    return out


PATHS = _paths(SMOKE)
ODD_NAMES = ["dual/mean", "my method", "", ".hidden", "a:b", "{fp}", "ünï", "x" * 300, "-dash", "a*b"]
ODD_VALUES = ["8", 8, -1, 0, 2.5, 10**9, True, None, [], [0, 0], {}, "nosuch", -0.5]
LINKS = ["init_from", "first", "second"]


def _parent(config: dict, path: tuple) -> tuple[Any, Any]:
    node = config
    for key in path[:-1]:
        node = node[key]
    return node, path[-1]


def _mutate(config: dict, kind: str, path: tuple, value: Any, name: str) -> None:
    node, key = _parent(config, path)
    if kind == "value":
        node[key] = value
    elif kind == "drop" and isinstance(node, dict):
        del node[key]
    elif kind == "misspell" and isinstance(node, dict):
        node[f"{key}x" if isinstance(key, str) else key] = node.pop(key)
    elif kind == "list" and isinstance(node[key], list):
        node[key] = [] if value is None else node[key] + node[key][:1]
    elif kind == "rename_method":
        methods = config["methods"]
        old = sorted(methods)[len(name) % len(methods)]
        methods[name] = methods.pop(old)
    elif kind == "run_name":
        config["run_name"] = name
    elif kind == "link":
        methods = config["methods"]
        target = sorted(methods)[len(name) % len(methods)]
        methods[target][LINKS[len(name) % len(LINKS)]] = name or "nosuch"


mutation = st.tuples(
    st.sampled_from(["value", "value", "drop", "misspell", "list", "rename_method", "run_name", "link"]),
    st.sampled_from(PATHS),
    st.sampled_from(ODD_VALUES),
    st.sampled_from(ODD_NAMES),
)


def _check(config: dict) -> str | None:
    """None when accepted (and planned), else the refusal's message."""
    try:
        config_lib.validate_workflow(config)
        preflight(config)
    except config_lib.ConfigError as err:
        return str(err)
    Plan(config).final_output()
    return None


def _names_a_key(message: str, config: dict) -> bool:
    """The message starts with the dotted key at fault: one of the schema's or one the config spells."""
    match = re.match(r"config error at (<top level>|[^\s:]+):", message)
    if match is None:
        return False
    key = match.group(1)
    return key == "<top level>" or key.split(".")[0] in TOP_KEYS | set(config)


@settings(max_examples=MUTATIONS, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=2))
def test_every_mutation_is_accepted_or_refused_in_one_line_naming_a_key(mutations):
    config = copy.deepcopy(SMOKE)
    for kind, path, value, name in mutations:
        try:
            _mutate(config, kind, path, value, name)
        except (KeyError, IndexError, TypeError):
            return  # an earlier mutation removed the path this one addresses
    given_config = copy.deepcopy(config)
    message = _check(config)
    if message is None:
        ACCEPTED.append(given_config)
        return
    REFUSED.append(message)
    assert "\n" not in message, message
    assert _names_a_key(message, given_config), message


@pytest.fixture(scope="module")
def outcomes() -> tuple[list[dict[str, Any]], list[str]]:
    """The accepted and refused mutations (run here when the property test was deselected)."""
    if not ACCEPTED and not REFUSED:
        test_every_mutation_is_accepted_or_refused_in_one_line_naming_a_key()
    return ACCEPTED, REFUSED


def test_the_property_saw_both_outcomes(outcomes):
    """The generator is not trivial: it produced accepted and refused configs (sizes printed for the README)."""
    print(f"front door: {len(ACCEPTED)} accepted, {len(REFUSED)} refused")
    assert len(ACCEPTED) >= DRY_RUNS and len(REFUSED) >= MUTATIONS // 3


def _snakemake(tmp_path, config: dict, *args: str) -> subprocess.CompletedProcess:
    copy_workflow(tmp_path)
    (tmp_path / "config" / "mutant.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/mutant.yaml", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=snakemake_env(), capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("index", range(DRY_RUNS))
def test_accepted_mutations_dry_run_cleanly(tmp_path, outcomes, index):
    config = ACCEPTED[index * len(ACCEPTED) // DRY_RUNS]
    proc = _snakemake(tmp_path, config, "-n", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_an_accepted_mutation_runs_to_its_report(tmp_path, outcomes):
    """The accepted mutation that changes a number (not only a name), run to the end."""
    changed = [c for c in ACCEPTED if c["methods"] == SMOKE["methods"] and c != SMOKE]
    config = changed[len(changed) // 2] if changed else ACCEPTED[0]
    proc = _snakemake(tmp_path, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "results" / config.get("run_name", "default") / "report.html").is_file()
