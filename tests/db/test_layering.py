"""The database layer is the bottom of the tree: polaris/db imports no process package
(the OCPP server, the web process, the customer site, the sync, the simulator, the CLI,
the console, the operations commands), so every process can use it and none drags
another in through it."""

from __future__ import annotations

from pathlib import Path

import polaris.db
from tests.layering import forbidden_imports, hits, imports_of, loaded_by_importing

DB = Path(polaris.db.__file__).parent
PROCESSES = (
    "polaris.ocpp",
    "polaris.services",
    "polaris.customer_web",
    "polaris.sync",
    "polaris.sim",
    "polaris.cli",
    "polaris.tui",
    "polaris.ops",
)


def test_no_module_of_the_database_layer_imports_a_process():
    assert forbidden_imports(DB, PROCESSES) == {}


def test_importing_every_database_module_loads_no_process():
    assert loaded_by_importing("polaris.db", PROCESSES) == []


def test_the_checker_sees_absolute_relative_and_deferred_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "from polaris.sync import rating\n"
        "from ...services import live\n"
        "if TYPE_CHECKING:\n"
        "    import polaris.ocpp.server\n"
        "def later():\n"
        "    from ..pool import connect\n"
    )
    # Read as if it were polaris/db/repos/probe.py: every edge counts, however it is written.
    found = imports_of(probe, "polaris.db.repos.probe")
    assert hits(found, PROCESSES) == {
        "polaris.sync",
        "polaris.sync.rating",
        "polaris.services",
        "polaris.services.live",
        "polaris.ocpp.server",
    }
    assert "polaris.db.pool.connect" in found
