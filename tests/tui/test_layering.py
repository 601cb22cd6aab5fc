"""The console speaks only HTTP: it never imports the database layer or the web process,
and its core modules never import textual (so they stay usable and testable without a UI)."""

from __future__ import annotations

from pathlib import Path

import polaris.tui
from tests.layering import hits, imports_of, loaded_by

TUI = Path(polaris.tui.__file__).parent
FORBIDDEN_EVERYWHERE = ("polaris.db", "polaris.services", "polaris.ocpp", "polaris.sync", "asyncpg")
CORE = ("api_client", "models", "credentials", "events", "charger_store", "operations")


def test_no_module_of_the_console_imports_the_database_or_the_server():
    files = sorted(TUI.rglob("*.py"))
    assert len(files) > 10
    bad = {str(f.relative_to(TUI)): hits(imports_of(f), FORBIDDEN_EVERYWHERE) for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_core_modules_never_import_textual():
    bad = {m: hits(imports_of(TUI / f"{m}.py"), ("textual",)) for m in CORE}
    assert {k: v for k, v in bad.items() if v} == {}


def test_importing_the_whole_console_loads_no_database_driver():
    # The runtime check catches what the AST misses (imports hidden in other modules).
    assert loaded_by(["polaris.tui.app", "polaris.cli.tui"], ("asyncpg", "polaris.db", "polaris.services")) == []


def test_the_checker_sees_a_forbidden_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from polaris.db.repos import users\nimport textual.app\n")
    assert hits(imports_of(f), FORBIDDEN_EVERYWHERE) == {"polaris.db.repos", "polaris.db.repos.users"}
    assert hits(imports_of(f), ("textual",)) == {"textual.app"}
