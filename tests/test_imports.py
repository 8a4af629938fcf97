"""Imports point one way: layers <- spaces <- evaluators <- search and results <- cli.

What several packages share (errors, runtime names, interrupts, plugins, the
frontier's sorting) lives in small top-level modules below all of them. The
test reads every module's imports, the lazy ones inside functions included.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fusionnas"
LEVEL = {"layers": 1, "spaces": 2, "evaluators": 3, "search": 4, "results": 4, "cli": 5}  # others: 0


def imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name.startswith("fusionnas.")]


def test_imports_point_one_way() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = path.relative_to(PACKAGE).with_suffix("").parts[0]
        if unit == "__init__":
            continue
        for name, line in imports(path):
            target = name.split(".")[1]
            if target != unit and LEVEL.get(target, 0) >= LEVEL.get(unit, 0) and LEVEL.get(target, 0) > 0:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
            if LEVEL.get(unit, 0) == 0 and LEVEL.get(target, 0) > 0:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} (shared, below the packages) imports {name}")
    assert not wrong, "\n".join(wrong)


def test_search_and_results_do_not_import_each_other() -> None:
    for unit, other in (("search", "results"), ("results", "search")):
        for path in (PACKAGE / unit).rglob("*.py"):
            assert not [n for n, _ in imports(path) if n.startswith(f"fusionnas.{other}")], path
