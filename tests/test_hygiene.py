"""Project hygiene: notebooks committed clean, the table of contents complete, dependencies in step."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.rglob("*.ipynb"))


def _toc_files() -> list[str]:
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return files


def _resolve(entry: str) -> list[Path]:
    return [p for p in (BOOK / f"{entry}{suffix}" for suffix in (".ipynb", ".md")) if p.exists()]


def test_there_are_notebooks():
    assert NOTEBOOKS, "book/ holds no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path: Path):
    nb = json.loads(path.read_text())
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_kernel_is_python3(path: Path):
    nb = json.loads(path.read_text())
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"


#: code lines wider than this scroll sideways in the rendered book
CODE_WIDTH = 76


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_fits_the_page(path: Path):
    nb = json.loads(path.read_text())
    long = [
        f"cell {k}: {line[:50]}..."
        for k, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if len(line) > CODE_WIDTH
    ]
    assert not long, f"{path.name}: code lines over {CODE_WIDTH} characters:\n" + "\n".join(long)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_prints_versions_first(path: Path):
    nb = json.loads(path.read_text())
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    source = "".join(first["source"])
    assert "describe()" in source or ("__version__" in source and "torch" in source), (
        f"{path.name}: the first code cell must print the versions of diffnb and torch"
    )


def test_every_notebook_is_in_the_toc():
    listed = {p for entry in _toc_files() for p in _resolve(entry)}
    missing = [p.relative_to(BOOK).as_posix() for p in NOTEBOOKS if p not in listed]
    assert not missing, f"notebooks missing from book/_toc.yml: {missing}"


def test_every_toc_entry_exists():
    absent = [entry for entry in _toc_files() if not _resolve(entry)]
    assert not absent, f"book/_toc.yml lists files that do not exist: {absent}"


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(map(_normalise, project["dependencies"]))
    for extra in project.get("optional-dependencies", {}).values():
        declared |= set(map(_normalise, extra))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    conda = {_normalise(r) for r in pip_section if not r.lstrip().startswith("-")}
    assert conda == declared, (
        f"only in pyproject.toml: {sorted(declared - conda)}; only in environment.yml: {sorted(conda - declared)}"
    )


def test_torch_is_pinned_everywhere():
    # An open range pulls a multi-GB CUDA build; the CPU wheel is pinned.
    assert '"torch==' in (ROOT / "pyproject.toml").read_text()
    assert "torch==" in (ROOT / "environment.yml").read_text()


def test_every_public_module_is_in_the_api_reference():
    import pkgutil

    import diffnb

    modules = {
        info.name
        for info in pkgutil.walk_packages(diffnb.__path__, "diffnb.")
        if not info.ispkg and not any(part.startswith("_") for part in info.name.split(".")[1:])
    }
    listed = set(re.findall(r"automodule:: (\S+)", (BOOK / "appendix" / "api.md").read_text()))
    assert modules <= listed, f"missing from book/appendix/api.md: {sorted(modules - listed)}"
