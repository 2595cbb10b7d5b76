"""The package layout is the architecture: imports point only downwards, nothing is circular,
and no module grows past 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import singerid

PACKAGE = Path(singerid.__file__).parent
MAX_LINES = 500

FOUNDATIONS = {"errors", "fileio", "configio", "records", "audio", "vectors", "praat", "quality", "workers"}
LAYERS = ["data", "model", "profiles", "infer", "extract", "catalog", "eval", "similarity", "training", "export", "serve", "demo", "cli"]
"""Top-level modules and folders from the bottom up: each imports only its own folder, the
foundations and the entries before it. Evaluation sits below training because training's
validation measures its EER with evaluation's metrics. ``singerid/__init__``, ``__main__`` and
the ``hear`` alias are the public face and may import anything."""

PUBLIC_FACE = {"singerid", "singerid.__main__", "singerid.hear"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """singerid modules that ``name`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    modules = _modules()
    return {t for t in found if t in modules and t != name}


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(group: str) -> int:
    return -1 if group in FOUNDATIONS else LAYERS.index(group)


def test_every_module_has_a_layer():
    missing = sorted({_group(m) for m in _modules() if m not in PUBLIC_FACE} - set(LAYERS) - FOUNDATIONS)
    assert not missing, f"add these to LAYERS: {missing}"


def test_imports_point_downwards():
    wrong = []
    for name, path in _modules().items():
        if name in PUBLIC_FACE:
            continue
        own = _group(name)
        for target in _imports(name, path, top_level_only=False):
            if target in PUBLIC_FACE or _group(target) == own:
                continue
            if _rank(_group(target)) >= _rank(own) and not (own in FOUNDATIONS and _group(target) in FOUNDATIONS):
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles_at_module_level():
    graph = {name: _imports(name, path, top_level_only=True) for name, path in _modules().items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_module_is_over_the_size_limit():
    big = {name: n for name, path in _modules().items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"split these modules (over {MAX_LINES} lines): {big}"
