"""Run the worked examples in the docstrings of the mirror's pure modules, so the documentation cannot drift."""

import doctest
import importlib

import pytest

MODULES = ["spiderweb.k8s.admission", "spiderweb.k8s.netconf", "spiderweb.k8s.resources", "spiderweb.k8s.client",
           "spiderweb.k8s.workloads", "spiderweb.k8s.podgc", "spiderweb.k8s.watch",
           "spiderweb.controllers.mirror.merge", "spiderweb.controllers.mirror.documents"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no worked examples"
    assert result.failed == 0
