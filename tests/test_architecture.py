"""The shape of the code (docs/architecture.md): judges depends on annotate and never the reverse, no two files import
each other even through others, no module grows past 800 lines.

The import graph is read from the source with ast: every `import` and `from … import`, including those inside
functions (a function-level import is still a dependency, and one that hides a cycle). `from a.b import c` is an edge
to a.b.c when that is a module, else to a.b; importing a module does not add edges to its parent packages.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("annotate", "judges")
MAX_LINES = 800

Graph = dict[str, set[str]]


def _modules() -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return [next((p for p in _prefixes(n) if p in known), n) for n in names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    out = []
    for alias in node.names:
        full = f"{base}.{alias.name}"
        out.append(full if full in known else next((p for p in _prefixes(base) if p in known), base))
    return out


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def import_graph() -> tuple[Graph, dict[tuple[str, str], str]]:
    """Edges between the apps' modules (and to modules outside them, by name), with where each first appears."""
    modules = _modules()
    known = set(modules)
    graph: Graph = defaultdict(set)
    where: dict[tuple[str, str], str] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module]  # every module is a node, imports or not
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(node, module, path.name == "__init__.py", known):
                if target != module:
                    graph[module].add(target)
                    where.setdefault((module, target), f"{path.relative_to(ROOT)}:{node.lineno}")
    return dict(graph), where


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative, so no recursion limit), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def test_tarjan_finds_cycles_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}, "g": set()}
    assert sorted(strongly_connected(graph)) == [["a", "b", "c"], ["d", "e"], ["f"], ["g"]]


def test_the_graph_counts_imports_inside_functions():
    graph, _ = import_graph()
    # JudgesConfig.ready() imports these inside the method; annotate.stats.agreement imports pair_kappas at the top.
    assert {"annotate.extensions", "judges.extension"} <= graph["judges.apps"]
    assert "annotate.stats.pair_kappas" in graph["annotate.stats.agreement"]


def test_annotate_never_imports_judges():
    graph, where = import_graph()
    wrong = [
        f"{where[(module, target)]}: {module} imports {target}"
        for module, targets in graph.items()
        if module.split(".")[0] == "annotate"
        for target in targets
        if target.split(".")[0] == "judges"
    ]
    assert not wrong, "judges depends on annotate, never the reverse (see annotate/extensions.py):\n" + "\n".join(wrong)


def test_no_import_cycle_between_files():
    graph, where = import_graph()
    inside = {m: {t for t in targets if t in graph} for m, targets in graph.items()}
    cycles = [c for c in strongly_connected(inside) if len(c) > 1]
    described = []
    for cycle in cycles:
        members = set(cycle)
        edges = sorted(f"  {where[(m, t)]}: {m} -> {t}" for m in cycle for t in inside[m] if t in members)
        described.append(" <-> ".join(cycle) + "\n" + "\n".join(edges))
    assert not cycles, "import cycles (start tasks by name through annotate.enqueue):\n" + "\n".join(described)


def test_no_module_over_800_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in _modules().values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
