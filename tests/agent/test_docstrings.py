"""The worked examples in the agent's and spiderweb.k8s' docstrings are run, so they stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "agent.config", "agent.admission", "agent.node_token", "agent.request_fields", "agent.ttl_cache",
    "spiderweb.k8s.pods",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
