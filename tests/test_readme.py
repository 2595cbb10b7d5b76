"""Every Python block in the README parses, and every singerid name it uses exists."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _singerid_names(tree: ast.AST) -> set[str]:
    """Dotted names the code takes from singerid: ``from singerid.x import y`` and ``singerid.y`` uses."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "singerid":
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.split(".")[0] == "singerid")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "singerid":
            names.add(f"singerid.{node.attr}")
    return names


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_singerid_name_in_a_readme_block_exists(block):
    names = _singerid_names(ast.parse(block))
    missing = sorted(n for n in names if not _resolves(n))
    assert not missing, f"README uses names singerid does not have: {missing}"


def test_the_name_check_catches_a_missing_name():
    assert _resolves("singerid.load_model") and _resolves("singerid.eval.report.write_report")
    assert not _resolves("singerid.no_such_function") and not _resolves("singerid.eval.report.no_such")
