"""Which cards may charge: asking the central system, or the charger's own memory when it cannot.

The memory is the local authorization list the central system sends (SendLocalList, in 1.6 and
2.0.1 alike) and the cache of earlier answers; the switches that govern them are the neutral
`Settings` (LocalPreAuthorize, LocalAuthorizeOffline, AllowOfflineTxForUnknownId,
AuthorizationCacheEnabled in 1.6's words).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum

from ocpp.exceptions import OCPPError

from polaris.sim.errors import Offline
from polaris.sim.settings import Settings

ACCEPTED = "Accepted"
INVALID = "Invalid"


class ListAnswer(StrEnum):
    ACCEPTED = "Accepted"
    FAILED = "Failed"
    VERSION_MISMATCH = "VersionMismatch"


class LocalAuthorization:
    """The local list (id tag -> id tag info, with its version) and the authorization cache."""

    def __init__(self) -> None:
        self.list_version = 0
        self.entries: dict[str, dict] = {}
        self.cache: dict[str, str] = {}

    async def authorize(self, id_tag: str, ask: Callable[[str], Awaitable[str]], settings: Settings) -> str:
        """The card's status: from the local list first if pre-authorizing locally, else from
        `ask` (the central system; Offline if it cannot be reached), else from the list, the
        cache or the unknown-card rule while offline. A CALLERROR answer counts as Invalid."""
        entry = self.entries.get(id_tag)
        if entry is not None and settings.local_pre_authorize:
            return entry.get("status", ACCEPTED)
        try:
            status = await ask(id_tag)
        except OCPPError:
            return INVALID
        except Offline:
            if not settings.local_authorize_offline:
                return INVALID
            if entry is not None:
                return entry.get("status", ACCEPTED)
            if id_tag in self.cache:
                return self.cache[id_tag]
            return ACCEPTED if settings.offline_tx_for_unknown_id else INVALID
        if settings.auth_cache_enabled:
            self.cache[id_tag] = status
        return status

    def update_list(
        self, version: int, entries: list[tuple[str, dict | None]], *, full: bool, max_entries: int
    ) -> ListAnswer:
        """Apply a SendLocalList: `entries` are (id tag, info), info None to remove the tag; a
        full update replaces the list, a differential one must bring a newer version."""
        if not full and version <= self.list_version:
            return ListAnswer.VERSION_MISMATCH
        new = {} if full else dict(self.entries)
        for id_tag, info in entries:
            if info is None:
                new.pop(id_tag, None)
            else:
                new[id_tag] = info
        if len(new) > max_entries:
            return ListAnswer.FAILED
        self.entries, self.list_version = new, version
        return ListAnswer.ACCEPTED
