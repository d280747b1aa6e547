"""The examples in the docstrings of processors/, models/, schemas/ and sinks/ are tests too."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("processors", "models", "schemas", "sinks")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")]
    return sorted(names)


@pytest.mark.parametrize("module_name", _modules())
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module_name}"


def test_examples_exist_where_the_style_asks_for_them() -> None:
    finder = doctest.DocTestFinder()
    counted = sum(len(t.examples) for name in _modules() if name.startswith("processors")
                  for t in finder.find(importlib.import_module(name)))
    assert counted >= 20
