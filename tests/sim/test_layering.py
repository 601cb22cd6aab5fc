"""The simulator is a client of the server, never a part of it: it imports nothing of the
server's packages, its modules import each other without circles, protocol adapters and the
station's parts use each other's public API only, and no module grows past ~500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import polaris.sim
from tests.layering import cycles, import_graph, imports_of, loaded_by, modules_of

SIM = Path(polaris.sim.__file__).parent
# What the simulator may use of polaris: itself and the small shared modules.
ALLOWED = ("polaris.sim", "polaris.logs", "polaris.config", "polaris.wire")
SERVER = ("polaris.ocpp", "polaris.services", "polaris.db", "polaris.sync", "polaris.customer_web", "asyncpg")
MAX_LINES = 500


def sim_modules() -> dict[str, Path]:
    return modules_of(SIM)


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
    assert cycles(graph) == []


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
    assert loaded_by(["polaris.sim.charger", "polaris.sim.fleet", "polaris.cli.sim"], SERVER) == []


def test_the_checkers_see_what_they_look_for(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from polaris.db.repos import users\nfrom pkg import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("def f():\n    from pkg.a import x\n    return other._secret, self._mine\n")
    modules = modules_of(pkg, tmp_path)
    assert outside(imports_of(modules["pkg.a"], "pkg.a")) == {"polaris.db.repos", "polaris.db.repos.users"}
    assert outside({"polaris.logs", "polaris.sim.errors", "polaris.simulator"}) == {"polaris.simulator"}
    graph = import_graph(modules)
    assert graph["pkg.b"] == {"pkg.sub.c"}  # relative, under TYPE_CHECKING
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert private_reaches(modules["pkg.sub.c"]) == ["line 3: other._secret"]
