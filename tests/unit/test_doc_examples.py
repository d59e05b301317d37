"""The examples in extension-point docstrings run (STYLE habit 10)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "partnersync.mapping.mapper",
    "partnersync.mapping.export",
    "partnersync.connectors.base",
    "partnersync.connectors.http.pagination",
    "partnersync.clock",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
