"""`SimulatedCharger`: a simulated charge point that behaves like a real one where that matters.

It is a `Station` (`station.py`: the version-neutral charger and its public API) speaking the
OCPP version chosen with `ocpp=` ("1.6": `polaris.sim.v16`; "2.0.1": `polaris.sim.v201`). A real charger's habits:

- transaction messages go through a queue that survives disconnects and is resent, in order,
  after the next boot;
- it reconnects with exponential backoff, honours Pending / Rejected boots and the heartbeat
  interval the server gave;
- remote operations change its state (a remote start really starts a session, Reset reboots,
  ChangeAvailability makes connectors Unavailable, and so on): see `v16/handlers.py`;
- `quirks` copy named misbehaviours of real chargers (`quirks.py`).

Public API (used by the OCPP server's tests too)::

    charger = SimulatedCharger(url, "CP-1", "password-16-chars", id_tag="TAG1", connectors=2)
    await charger.start()          # returns once BootNotification is Accepted
    await charger.wait_for(lambda c: c.transaction_ids[1] is not None)
    await charger.stop()
"""

from __future__ import annotations

from typing import Any

from polaris.sim.errors import ChargerRefused, Offline, SimError
from polaris.sim.quirks import QUIRKS
from polaris.sim.station import AdapterFactory, Station
from polaris.sim.v16.adapter import V16Adapter
from polaris.sim.v201.adapter import V201Adapter

# Re-exported: `polaris smoke` and the tests import them from here.
__all__ = ["OCPP_VERSIONS", "QUIRKS", "ChargerRefused", "Offline", "SimError", "SimulatedCharger"]

OCPP_VERSIONS: dict[str, AdapterFactory] = {"1.6": V16Adapter, "2.0.1": V201Adapter}


class SimulatedCharger(Station):
    """A simulated charger speaking OCPP `ocpp` (see `Station` for the options and the API)."""

    def __init__(self, url: str, charge_box_id: str, password: str | None, *, ocpp: str = "1.6", **options: Any):
        protocol = OCPP_VERSIONS.get(ocpp)
        if protocol is None:
            raise SimError(f"unknown OCPP version {ocpp!r}; known: {', '.join(OCPP_VERSIONS)}")
        super().__init__(url, charge_box_id, password, protocol=protocol, **options)
