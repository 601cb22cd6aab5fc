"""Charger simulator: OCPP charge points that behave like real ones, for demos, tests and benchmarks.

Layers, each importing only those above it (tests/sim/test_layering.py keeps it so, and keeps
the server's packages out):

- `errors`, `clock`, `quirks`, `vehicle`: leaves;
- `metering`, `connectors`, `smart_charging`, `settings`, `authorization`: version-neutral
  state and rules, no I/O;
- `link` (the WebSocket), `txqueue` (the offline queue), `adapter` (what an OCPP version
  provides), `sessions` (a car's session), `station` (all of it composed; the public API);
- `v16/`: the OCPP 1.6J adapter (messages out, request handlers in, configuration keys);
- `charger` (`SimulatedCharger`: a station with its version), `fleet` (`polaris sim`);
- `lago`: a local stand-in for Lago's API, apart from the chargers.
"""
