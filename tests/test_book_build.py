"""The book's build settings are strict: a raising cell or a broken reference fails the build, and math
is typeset without a network. Each case builds a two-page book with the project's own _config.yml."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"

pytestmark = pytest.mark.skipif(not JUPYTER_BOOK.exists(), reason="jupyter-book is not installed")


def _build(tmp_path: Path, cell: str, page: str) -> tuple[int, str, Path]:
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(ROOT / "book" / "references.bib", book / "references.bib")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: page\n")
    (book / "intro.md").write_text(
        "# Intro\n\nSee {cite}`ventura2025manifolds`.\n\n$$\nE = mc^2\n$$ (eq-one)\n\n```{bibliography}\n```\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(page), nbformat.v4.new_code_cell(cell)]
    nbformat.write(nb, book / "page.ipynb")
    proc = subprocess.run(
        [str(JUPYTER_BOOK), "build", "book/", "-W", "-n", "--keep-going"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr, tmp_path / "_build" / "html"


def test_good_book_builds_with_offline_math(tmp_path):
    rc, log, html = _build(tmp_path, "print(1 + 1)", "# Page\n\nInline $a^2$ and {eq}`eq-one`.")
    assert rc == 0, log[-3000:]
    page = (html / "page.html").read_text()
    assert (html / "index.html").exists()
    assert not re.search(r"<script[^>]+src=\"https?://", page), "a script is loaded from the network"
    assert (html / "_static" / "mathjax").is_dir()


def test_raising_cell_fails_the_build(tmp_path):
    rc, log, _ = _build(tmp_path, "raise ValueError('boom from a cell')", "# Page")
    assert rc != 0
    assert "boom from a cell" in log


def test_broken_reference_fails_the_build(tmp_path):
    rc, log, _ = _build(tmp_path, "print(1)", "# Page\n\nSee {eq}`eq-missing` and {cite}`nosuchkey`.")
    assert rc != 0
    assert "eq-missing" in log or "nosuchkey" in log
