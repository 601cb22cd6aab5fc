"""Charger simulator: OCPP 1.6J charge points that behave like real ones, for demos, tests and benchmarks."""
