"""README "Layout" is true to the tree: every path it lists exists, and every module and folder it should list is
listed (a file added without a line in the layout fails here)."""

from __future__ import annotations

import re

from tests.conftest import REPO

# What the layout must cover: the top-level entries, the harness's modules and subpackages, the plug-ins.
COVERED = ("vtrbench", "vtrbench/data", "vtrbench/report", "baselines", "cret", "workflow", "workflow/rules")


def _layout_paths() -> set[str]:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Layout\n.*?```\n(.*?)```", readme, flags=re.S).group(1)
    paths = set()
    for line in block.splitlines():
        if not line.strip() or line.startswith(" " * 6):  # a continuation of the previous line's description
            continue
        paths.add(line.split()[0].rstrip("/"))  # one path per line, relative to the repository
    return paths


def test_every_listed_path_exists():
    missing = sorted(p for p in _layout_paths() if not (REPO / p).exists())
    assert not missing, f"README Layout lists paths that do not exist: {missing}"


def test_every_module_and_folder_is_listed():
    listed = _layout_paths()
    expected = {p.name for p in REPO.iterdir() if not p.name.startswith(".") and p.name not in ("results",)}
    expected -= {"README.md", "__pycache__", "build"} | {p.name for p in REPO.glob("*.egg-info")}
    for folder in COVERED:
        for child in (REPO / folder).iterdir():
            if child.name.startswith(("_", ".")) or child.suffix in (".pyc",):
                continue
            expected.add(f"{folder}/{child.name}")
    unlisted = sorted(p for p in expected if p not in listed)
    assert not unlisted, f"README Layout does not list: {unlisted}"
