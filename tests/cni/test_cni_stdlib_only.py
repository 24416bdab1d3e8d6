"""The cni package imports only the standard library and itself, and parses as Python 3.9.

An executable on a node must not break because a package is missing there, and must run on the oldest python3
the README promises. This walks the AST of every module rather than importing it, so an import hidden in a
function body or behind a condition is caught too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CNI_DIR = Path(__file__).resolve().parents[2] / "cni"
MODULES = sorted(CNI_DIR.rglob("*.py"))


def _imported_top_level_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "__import__",
            "import_module",
        ):
            names.add("<dynamic import>")
    return names


def test_the_package_has_modules():
    assert {p.name for p in MODULES} >= {"__init__.py", "spiderpool.py", "coordinator.py", "ifacer.py", "package.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_imports_only_stdlib_and_cni(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    foreign = {
        name
        for name in _imported_top_level_names(tree)
        if name != "cni" and name != "__future__" and name not in sys.stdlib_module_names
    }

    assert foreign == set(), f"{path.name} imports {sorted(foreign)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_parses_as_python_3_9(path):
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


def test_the_walker_would_catch_a_third_party_import():
    tree = ast.parse("def f():\n    import requests\nfrom yaml import safe_load\nimport os.path\n")

    assert _imported_top_level_names(tree) == {"requests", "yaml", "os"}


def test_init_is_docstring_only():
    tree = ast.parse((CNI_DIR / "__init__.py").read_text(encoding="utf-8"))

    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)
    assert isinstance(tree.body[0].value, ast.Constant) and isinstance(tree.body[0].value.value, str)
