"""The OCPP server's layering: it never reaches up into the web process, the sync, the
simulator, the CLI or the console; its modules import each other without circles; each
OCPP version's handlers sit on the version-neutral core and never on the server."""

from __future__ import annotations

from pathlib import Path

import polaris.ocpp
from tests.layering import cycles, hits, import_graph, imports_of, loaded_by, modules_of

OCPP = Path(polaris.ocpp.__file__).parent
PACKAGE = "polaris.ocpp"
FORBIDDEN = ("polaris.services", "polaris.customer_web", "polaris.sync", "polaris.sim", "polaris.cli",
             "polaris.tui")
VERSION_PACKAGES = ("polaris.ocpp.v16", "polaris.ocpp.v201")
PROCESS = ("polaris.ocpp.server", "polaris.ocpp.api", "polaris.ocpp.main")
MAX_LINES = 500


MODULES = modules_of(OCPP)


def graph() -> dict[str, set[str]]:
    """Module -> the modules of polaris.ocpp it imports."""
    return import_graph(MODULES)


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
    assert loaded_by(["polaris.ocpp.main"], FORBIDDEN) == []


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
