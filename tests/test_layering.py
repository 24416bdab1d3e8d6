"""Whitelist import rules import-linter cannot state: these packages import the standard library and themselves only.

import-linter forbids named packages; a whitelist also catches a dependency nobody thought to forbid.
"""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STDLIB_ONLY = {"spiderweb/engine": "spiderweb.engine", "cni": "cni", "spiderweb/cli": "spiderweb.cli"}
# The parent package, which Python imports before any of its subpackages anyway (its __init__ has no imports).
ALSO_ALLOWED = {"spiderweb/cli": {"spiderweb"}}


def imported_modules(path: Path) -> set[str]:
    """Top-level module names (or the full name for the package's own modules) imported by a file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(STDLIB_ONLY))
def test_package_imports_only_the_standard_library_and_itself(folder):
    own = STDLIB_ONLY[folder]
    offenders = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if name == own or name.startswith(own + ".") or top in sys.stdlib_module_names or top == "__future__":
                continue
            if name in ALSO_ALLOWED.get(folder, ()):
                continue
            offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert not offenders, "outside the standard library:\n" + "\n".join(offenders)


def test_the_whitelist_check_sees_a_third_party_import(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import os\nfrom django.db import models\n")
    assert imported_modules(sample) == {"os", "django.db"}
