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


# Known and outside the spaces: onnx_export imports runtimes inside a function (to time OpenVINO),
# runtimes imports onnx_export's to_onnx at module level. No other circle may appear.


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The fusionnas modules ``path`` imports when it runs, inside functions too; ``from p import m``
    imports module ``p.m`` where that is one. Imports under ``if TYPE_CHECKING:`` never run."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(inner) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                 for statement in node.body for inner in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found & modules


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Modules reached from ``start`` in one or more imports."""
    seen, todo = set(), list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph[module]
    return seen


def test_no_import_circles_inside_fusionnas() -> None:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {module: _runtime_imports(path, set(paths)) - {module} for module, path in paths.items()}
    reach = {module: _reachable(graph, module) for module in graph}
    circles = {frozenset({module} | {other for other in reach[module] if module in reach[other]})
               for module in graph if module in reach[module]}
    assert not circles, "\n".join(" <-> ".join(sorted(c)) for c in circles)
