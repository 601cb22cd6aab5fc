"""The billing sync sits below the processes that serve people and chargers: polaris/sync
never imports the web process, the customer site, the OCPP server, the simulator, the CLI
or the console (it reads and writes through polaris.db and talks to Lago, nothing else)."""

from __future__ import annotations

from pathlib import Path

import polaris.sync
from tests.layering import forbidden_imports, loaded_by_importing

SYNC = Path(polaris.sync.__file__).parent
FORBIDDEN = (
    "polaris.services",
    "polaris.customer_web",
    "polaris.ocpp",
    "polaris.sim",
    "polaris.cli",
    "polaris.tui",
)


def test_no_module_of_the_sync_imports_a_process_above_it():
    assert forbidden_imports(SYNC, FORBIDDEN) == {}


def test_importing_every_sync_module_loads_none_of_them():
    # What the source check cannot see: an edge hidden in a module the sync imports.
    assert loaded_by_importing("polaris.sync", FORBIDDEN) == []
