"""The switches the version-neutral core reads, named by what they do.

Each OCPP version keeps them in its own store and answers for them here: 1.6 in configuration
keys (`v16/configuration.py`: `V16Settings`), 2.0.1 in device-model variables
(SampledDataCtrlr.TxUpdatedInterval, AuthCtrlr.LocalPreAuthorize, ...). Reading through this
view, a ChangeConfiguration (or SetVariables) takes effect at once.
"""

from __future__ import annotations

from typing import Protocol


class Settings(Protocol):
    """What the session simulation, the authorization and the transaction queue consult."""

    heartbeat_interval: int
    """Seconds between heartbeats (the central system's boot answer sets it)."""

    @property
    def meter_interval(self) -> int:
        """Seconds between meter values during a transaction; 0: none."""
        ...

    @property
    def sampled_measurands(self) -> list[str]:
        """Measurands in periodic (and triggered) meter values."""
        ...

    @property
    def ended_measurands(self) -> list[str]:
        """Measurands in a transaction's begin and end readings; empty: none are sent."""
        ...

    @property
    def authorize_remote_starts(self) -> bool:
        """Ask the central system about the card of a remote start too."""
        ...

    @property
    def stop_on_invalid_id(self) -> bool:
        """End a transaction the central system says the card may not have."""
        ...

    @property
    def local_pre_authorize(self) -> bool:
        """Start at once for cards the local list accepts, without asking."""
        ...

    @property
    def local_authorize_offline(self) -> bool:
        """While offline, decide from the local list and the cache."""
        ...

    @property
    def offline_tx_for_unknown_id(self) -> bool:
        """While offline, let cards the charger does not know charge."""
        ...

    @property
    def auth_cache_enabled(self) -> bool:
        """Remember the central system's answers about cards."""
        ...

    @property
    def message_attempts(self) -> int:
        """How often a transaction message answered with an error is tried before it is dropped."""
        ...

    @property
    def message_retry_interval(self) -> int:
        """Seconds before the next try of such a message (times the attempts so far)."""
        ...
