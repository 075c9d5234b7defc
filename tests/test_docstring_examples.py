"""The examples in the package's docstrings run and print what they show (the API reference quotes them)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import diffnb

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(diffnb.__path__, prefix="diffnb.")
    if not info.name.endswith("__main__")  # importing it runs the command line
)


def test_some_modules_carry_examples():
    finder = doctest.DocTestFinder()
    with_examples = [
        name for name in MODULES if any(test.examples for test in finder.find(importlib.import_module(name)))
    ]
    assert len(with_examples) >= 5, with_examples


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed"
