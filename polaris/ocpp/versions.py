"""The OCPP versions a server speaks, and which one a connecting charger gets.

A version is its handler class (a `Session` subclass: its subprotocol, handlers and command
table). The core (session, admission, commands, presence, journal) works from a `Versions`
it is given; only the server, which builds one, imports the version packages (`v16`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from polaris.ocpp.operations import Operation
from polaris.ocpp.session import Session


@dataclass(frozen=True, slots=True)
class Versions:
    supported: tuple[type[Session], ...]  # newest first: of several offered, the first we speak wins
    default: type[Session]  # for a charger offering no subprotocol at all (Grizzl-E and others)

    def negotiate(self, offered: list[str]) -> type[Session] | None:
        """The version for these offered subprotocols; `default` for none; None if we speak none."""
        if not offered:
            return self.default
        for version in self.supported:
            if version.SUBPROTOCOL in offered:
                return version
        return None

    def pinned(self, version: str, offered: list[str]) -> type[Session] | None:
        """The pinned version if the charger offers it (none offered: only if it is the default)."""
        for cls in self.supported:
            if cls.OCPP_VERSION == version:
                if cls.SUBPROTOCOL in offered or (not offered and cls is self.default):
                    return cls
                return None
        return None

    def by_version(self, version: str | None) -> type[Session] | None:
        return next((v for v in self.supported if v.OCPP_VERSION == version), None)

    @property
    def subprotocols(self) -> list[str]:
        return [v.SUBPROTOCOL for v in self.supported]

    def describe(self) -> str:
        """'OCPP 1.6J' (or several), for refusals that name what we speak."""
        return " or ".join(v.NAME for v in self.supported)

    def operation_names(self) -> list[str]:
        """Every operation some version we speak has, in table order."""
        return list(dict.fromkeys(name for v in self.supported for name in v.OPERATIONS))

    def operations(self, session: Session | None) -> Mapping[str, Operation]:
        """The command table for a connected charger's version (every version's when not connected here)."""
        if session is not None:
            return type(session).OPERATIONS
        # Not connected here (held by another instance, or offline): any version's operation,
        # the default version's table first where names are shared.
        merged: dict[str, Operation] = {}
        for version in reversed(self.supported):
            merged.update(version.OPERATIONS)
        merged.update(self.default.OPERATIONS)
        return merged
