"""The simulator is a client of the server, never a part of it: it imports nothing of the
server's packages, its modules import each other without circles, protocol adapters and the
station's parts use each other's public API only, and no module grows past ~500 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import polaris.sim

SIM = Path(polaris.sim.__file__).parent
# What the simulator may use of polaris: itself and the small shared modules.
ALLOWED = ("polaris.sim", "polaris.logs", "polaris.config", "polaris.wire")
SERVER = ("polaris.ocpp", "polaris.services", "polaris.db", "polaris.sync", "polaris.customer_web", "asyncpg")
MAX_LINES = 500


def module_name(path: Path, root: Path = SIM, package: str = "polaris.sim") -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def import_statements(path: Path, name: str) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) for every import in `path`, anywhere in the file
    (TYPE_CHECKING blocks and function bodies included); relative imports resolved against
    `name`. A plain `import m` is (m, [])."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((base, [a.name for a in node.names]))
    return found


def imports_of(path: Path, name: str) -> set[str]:
    """Every dotted name an import in `path` mentions (`from m import x`: m and m.x)."""
    return {n for base, names in import_statements(path, name) for n in (base, *(f"{base}.{x}" for x in names))}


def sim_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SIM.rglob("*.py"))}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports: `from pkg import mod` is an edge to
    mod, `from pkg import name` (not a module) an edge to pkg."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for base, names in import_statements(path, name):
            subs = {f"{base}.{x}" for x in names} & modules.keys()
            edges |= subs
            if len(subs) < len(names) or not names:
                edges.add(base)
        graph[name] = {m for m in edges if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (A, B, ..., A), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def outside(names: set[str]) -> set[str]:
    """The polaris modules (and database drivers) not in ALLOWED."""
    return {
        n for n in names
        if (n == "polaris" or n.startswith("polaris.") or n == "asyncpg" or n.startswith("asyncpg."))
        and not any(n == a or n.startswith(a + ".") for a in ALLOWED)
    }


def private_reaches(path: Path) -> list[str]:
    """`obj._name` where obj is not self, cls or super(): another object's private parts."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            continue
        found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_simulator_imports_nothing_of_the_server():
    modules = sim_modules()
    assert len(modules) > 15
    bad = {name: outside(imports_of(path, name)) for name, path in modules.items()}
    assert {k: v for k, v in bad.items() if v} == {}


def test_no_import_circle_among_the_simulators_modules():
    graph = import_graph(sim_modules())
    assert "polaris.sim.station" in graph["polaris.sim.v16.handlers"]  # the graph sees real edges
    assert find_cycle(graph) is None


def test_adapters_and_parts_use_each_others_public_api_only():
    # The Lago stand-in is no part of a charger (and reaches into aiohttp's site for its port).
    bad = {
        name: found for name, path in sim_modules().items()
        if name != "polaris.sim.lago" and (found := private_reaches(path))
    }
    assert bad == {}


def test_no_module_of_the_simulator_is_over_500_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in sim_modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_running_the_simulator_loads_nothing_of_the_server():
    # The runtime check catches what the AST misses (imports hidden in other modules).
    code = (
        "import sys, polaris.sim.charger, polaris.sim.fleet, polaris.cli.sim; "
        f"bad = [m for m in sys.modules if m.startswith({SERVER!r})]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_checkers_see_what_they_look_for(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from polaris.db.repos import users\nfrom pkg import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("def f():\n    from pkg.a import x\n    return other._secret, self._mine\n")
    modules = {module_name(p, pkg, "pkg"): p for p in sorted(pkg.rglob("*.py"))}
    assert outside(imports_of(modules["pkg.a"], "pkg.a")) == {"polaris.db.repos", "polaris.db.repos.users"}
    assert outside({"polaris.logs", "polaris.sim.errors", "polaris.simulator"}) == {"polaris.simulator"}
    graph = import_graph(modules)
    assert graph["pkg.b"] == {"pkg.sub.c"}  # relative, under TYPE_CHECKING
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
    assert private_reaches(modules["pkg.sub.c"]) == ["line 3: other._secret"]
