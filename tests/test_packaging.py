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


def test_every_rule_has_a_conda_env_that_exists():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        rules = re.findall(r"^rule (\w+):", text, flags=re.M)
        envs = re.findall(r'conda:\s*\n\s*"([^"]+)"', text)
        if smk.name == "common.smk":
            continue
        assert len(envs) == len(rules), f"{smk.name}: every rule needs a conda: directive"
        for env in envs:
            assert (smk.parent / env).resolve().is_file(), env
