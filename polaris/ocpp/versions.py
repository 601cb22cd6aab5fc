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
        """The command table for a connected charger's version (`default`'s when not connected here)."""
        return (type(session) if session is not None else self.default).OPERATIONS
