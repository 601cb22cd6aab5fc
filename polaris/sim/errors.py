"""What the simulator raises: a request it cannot carry out, a refusal, a missing link."""

from __future__ import annotations


class SimError(Exception):
    """The simulated charger could not do what was asked; the message says why."""


class ChargerRefused(SimError):
    """The central system refused this charger (HTTP status at the handshake, or a Rejected boot)."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class Offline(SimError):
    """No usable connection to the central system right now."""
