"""The documentation points only at things that exist: every repository path that README.md and docs/*.md name, and
every docs/ file a comment or docstring of the code cites, is in the repository; nothing cites files outside it."""

from __future__ import annotations

import io
import re
import tokenize

from tests.conftest import REPO

TOP = ("vtrbench", "cret", "baselines", "tests", "config", "docs", "workflow", "scripts", "data")
# a backticked repository path: a top-level folder, then the rest of the path (patterns such as {run} allowed)
BACKTICKED = re.compile(r"`((?:" + "|".join(TOP) + r")/[A-Za-z0-9_./*{}-]*)`")
DOCS_REF = re.compile(r"(?<![\w/.])docs/[A-Za-z0-9_-]+\.md")
OUTSIDE = ("shared" + "/docs", "docs/" + "style.md")  # split, so this file does not match itself
SKIP_DIRS = {".git", ".venv", "results", "build", "__pycache__", ".snakemake", ".pytest_cache", ".ruff_cache"}


def _doc_files() -> list:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _exists(path: str) -> bool:
    if any(c in path for c in "{}*"):  # a pattern (results/{run}/..., figures/*.png): check its fixed prefix
        prefix = re.split(r"[{}*]", path)[0].rsplit("/", 1)[0]
        return (REPO / prefix).exists()
    return (REPO / path.rstrip("/")).exists()


def test_every_path_the_docs_name_exists():
    missing = []
    for doc in _doc_files():
        for lineno, line in enumerate(doc.read_text().splitlines(), 1):
            for path in BACKTICKED.findall(line):
                if not _exists(path):
                    missing.append(f"{doc.relative_to(REPO)}:{lineno}: {path}")
    assert not missing, "documentation names paths that do not exist:\n" + "\n".join(missing)


def _comments_and_docstrings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every comment and string literal of a Python file (docstrings included)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            out.append((tok.start[0], tok.string))
    return out


def test_every_docs_file_the_code_cites_exists():
    missing = []
    for folder in ("vtrbench", "cret", "baselines", "tests"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for lineno, text in _comments_and_docstrings(path.read_text()):
                for ref in DOCS_REF.findall(text):
                    if not (REPO / ref).is_file():
                        missing.append(f"{path.relative_to(REPO)}:{lineno}: {ref}")
    assert not missing, "comments and docstrings cite docs files that do not exist:\n" + "\n".join(missing)


def _repo_text_files():
    for path in sorted(REPO.rglob("*")):
        parts = path.relative_to(REPO).parts
        if not path.is_file() or SKIP_DIRS & set(parts[:-1]) or any(p.endswith(".egg-info") for p in parts):
            continue
        if path.suffix in (".py", ".md", ".yaml", ".yml", ".toml", ".smk", ".sh", ".j2", ".rst", ".txt", ".cfg") or (
            path.name in ("Makefile", "Snakefile")
        ):
            yield path


def test_nothing_cites_files_outside_the_repository():
    found = []
    for path in _repo_text_files():
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for needle in OUTSIDE:
                if needle in line:
                    found.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()[:100]}")
    assert not found, "references to files a clone of the repository does not have:\n" + "\n".join(found)
