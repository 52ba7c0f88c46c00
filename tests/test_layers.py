"""The package's shape, enforced: every import (module level or inside a function) follows the layer order
written in docs/DESIGN.md, and no group of modules imports itself in a circle.

Mutations this catches: a lower layer reaching up (``methods`` importing ``evaluation``, ``models`` importing
``data``), a lazy import hidden inside a function, a new cycle between two modules, the layer line in
DESIGN.md no longer naming a package that exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ssl_video"
DESIGN = ROOT / "docs" / "DESIGN.md"


def layer_order() -> list[list[str]]:
    """The ```layers block of DESIGN.md: groups separated by '->', names within a group by ',' or '|'
    ('|' joins names of the same rank that may not import each other)."""
    block = re.search(r"```layers\n(.*?)\n```", DESIGN.read_text(), re.S)
    assert block, "docs/DESIGN.md has no ```layers block"
    text = " ".join(line.split("#")[0] for line in block.group(1).splitlines())
    return [[name.strip() for name in re.split(r"[,|]", group) if name.strip()] for group in text.split("->")]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports anywhere (``from a import b`` counts ``a.b`` when
    ``a.b`` is a module, else ``a``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def rank_of(module: str, order: list[list[str]]) -> tuple[int, str]:
    """(rank, group name) of the longest entry of the layer order that contains ``module``."""
    best = None
    for rank, group in enumerate(order):
        for entry in group:
            full = "ssl_video" if entry == "ssl_video" else f"ssl_video.{entry}"
            if module == full or module.startswith(full + "."):
                if best is None or len(full) > len(best[1]):
                    best = (rank, full)
    assert best is not None, f"{module} is in no layer of docs/DESIGN.md"
    return best


def test_the_layer_order_names_existing_modules():
    graph = import_graph()
    for group in layer_order():
        for entry in group:
            full = "ssl_video" if entry == "ssl_video" else f"ssl_video.{entry}"
            assert any(m == full or m.startswith(full + ".") for m in graph), f"DESIGN.md names {entry}, not a module"


def test_no_import_points_up_the_layer_order():
    order = layer_order()
    graph = import_graph()
    wrong = []
    for module, targets in graph.items():
        rank, group = rank_of(module, order)
        for target in targets:
            target_rank, target_group = rank_of(target, order)
            sibling = target_rank == rank and target_group != group and not (
                target_group.startswith(group + ".") or group.startswith(target_group + "."))
            if target_rank > rank or sibling:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layer order: " + "; ".join(sorted(wrong))


def test_no_import_cycles():
    graph = import_graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_the_guard_sees_imports_inside_functions(tmp_path):
    source = "def f():\n    from ssl_video.cli import main\n    from . import heads\n"
    path = PACKAGE / "models" / "_probe.py"
    modules = {"ssl_video.cli", "ssl_video.models.heads", "ssl_video.models._probe"}
    path.write_text(source)
    try:
        assert imports_of(path, modules) == {"ssl_video.cli", "ssl_video.models.heads"}
    finally:
        path.unlink()
