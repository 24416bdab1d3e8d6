"""Run the worked examples in the engine's docstrings, so the documentation cannot drift from the code."""

import doctest
import importlib

import pytest

MODULES = ["errors", "ranges", "routes", "selector", "facts", "selection"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    module = importlib.import_module(f"spiderweb.engine.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"spiderweb.engine.{name} has no worked examples"
    assert result.failed == 0
