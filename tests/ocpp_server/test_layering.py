"""The OCPP server's layering: it never reaches up into the web process, the sync, the
simulator, the CLI or the console; its modules import each other without circles; each
OCPP version's handlers sit on the version-neutral core and never on the server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import polaris.ocpp

OCPP = Path(polaris.ocpp.__file__).parent
PACKAGE = "polaris.ocpp"
FORBIDDEN = ("polaris.services", "polaris.customer_web", "polaris.sync", "polaris.sim", "polaris.cli",
             "polaris.tui")
VERSION_PACKAGES = ("polaris.ocpp.v16", "polaris.ocpp.v201")
PROCESS = ("polaris.ocpp.server", "polaris.ocpp.api", "polaris.ocpp.main")
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(OCPP).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(OCPP.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Every module named by an import, TYPE_CHECKING blocks and function bodies included.

    `from package import name` names `package.name` when that is a module of ours (as
    import-linter counts it), else the package: a package's `__init__` re-exporting its own
    submodule is no circle.
    """
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = {f"{node.module}.{a.name}" for a in node.names}
            submodules = names & MODULES.keys()
            found |= names
            if submodules != names:
                found.add(node.module)
    return found


def hits(names: set[str], prefixes: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)}


def graph() -> dict[str, set[str]]:
    """Module -> the modules of polaris.ocpp it imports."""
    return {m: {n for n in imports_of(p) if n in MODULES and n != m} for m, p in MODULES.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles (strongly connected components of more than one module), Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_ocpp_server_never_imports_the_processes_above_it():
    assert len(MODULES) > 15
    bad = {m: hits(imports_of(p), FORBIDDEN) for m, p in MODULES.items()}
    assert {k: v for k, v in bad.items() if v} == {}


def test_no_import_circle_among_the_ocpp_modules():
    assert cycles(graph()) == []


def test_version_handlers_sit_on_the_core_and_only_the_server_knows_them():
    edges = graph()
    in_version = {m for m in MODULES if hits({m}, VERSION_PACKAGES)}
    # A version's handlers never reach the server, the command API or the process.
    up = {m: hits(edges[m], PROCESS) for m in in_version}
    assert {k: v for k, v in up.items() if v} == {}
    # Nothing of the core knows a version package: a new version sits beside v16, wired in server.py.
    knows = {m: hits(edges[m], VERSION_PACKAGES) for m in MODULES if m not in in_version}
    assert {k for k, v in knows.items() if v} == {"polaris.ocpp.server"}


def test_no_module_over_500_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_importing_the_server_loads_nothing_above_it():
    # The runtime check catches what the AST misses (imports hidden in other modules).
    code = (
        "import sys, polaris.ocpp.main; "
        f"bad = [m for m in sys.modules if m.startswith({FORBIDDEN!r})]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_checker_sees_a_circle_and_a_forbidden_import(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    f = tmp_path / "x.py"
    f.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from polaris.ocpp.server import OcppServer\n"
        "def late():\n    from polaris.services import app\n"
    )
    names = imports_of(f)
    assert "polaris.ocpp.server" in names
    g = tmp_path / "y.py"
    g.write_text("from polaris.ocpp.v16 import protocol\nfrom polaris.ocpp.v16 import ChargePoint\n")
    assert hits(imports_of(g), (PACKAGE,)) == {
        "polaris.ocpp.v16.protocol", "polaris.ocpp.v16", "polaris.ocpp.v16.ChargePoint"}
    assert hits(names, FORBIDDEN) == {"polaris.services", "polaris.services.app"}
