"""The conda env files pin exactly what pyproject.toml pins (conda itself cannot run on our machines)."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import REPO


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for req in requirements:
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", req.strip())
        if match and not req.startswith("-"):
            pins[match.group(1).lower()] = match.group(2).replace(" ", "")
    return pins


def test_env_files_pin_the_same_versions_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    expected = _pins(project)
    assert expected["torch"] == "==2.13.0"  # an unpinned torch pulls a multi-GB CUDA build
    for env_file in (REPO / "environment.yml", REPO / "workflow" / "envs" / "vtrbench.yaml"):
        env = yaml.safe_load(env_file.read_text())
        pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        assert _pins(pip_section) == expected, env_file
        assert "python=3.11" in env["dependencies"]


def test_every_rule_that_runs_a_command_has_a_conda_env_that_exists():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        blocks = re.split(r"^\s*rule\b", smk.read_text(), flags=re.M)[1:]  # named rules and rules made in loops
        for block in blocks:
            if "shell:" not in block:
                continue  # a target-only rule runs nothing
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            assert env, f"{smk.name}: a rule without a conda: directive: {block.splitlines()[0]}"
            assert (smk.parent / env.group(1)).resolve().is_file(), env.group(1)
