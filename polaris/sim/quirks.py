"""Named misbehaviours of real chargers (NOTES.md "Real chargers misbehave") a charger can copy.

Where each is played: `no-subprotocol` and `lowercase-auth` by the link (`link.py`), `forgetful`
and `register-reset` by the station's reboot (`station.py`), the meter-value habits (`kwh`,
`numeric-values`, `no-unit`, `decimal-values`) by the protocol adapter that writes the readings
(`v16/adapter.py`).
"""

from __future__ import annotations

from collections.abc import Iterable

from polaris.sim.errors import SimError

QUIRKS = {
    "no-subprotocol": "offer no Sec-WebSocket-Protocol at all (Grizzl-E and others)",
    "lowercase-auth": "send the Basic credentials in a lower-case `authorization` header",
    "kwh": "report the energy register in kWh with three decimals",
    "numeric-values": "send meter values as JSON numbers instead of strings",
    "no-unit": "leave out `unit` on sampled values",
    "decimal-values": "energy as a decimal string with three decimals (\"3058620.000\")",
    "forgetful": "lose unsent transaction messages on a reset or power cut (zombie transactions)",
    "register-reset": "restart the energy register at 0 after every reboot",
}


def check_quirks(quirks: Iterable[str]) -> frozenset[str]:
    """The quirks as a set; SimError naming the unknown ones and the known ones."""
    chosen = frozenset(quirks)
    unknown = chosen - set(QUIRKS)
    if unknown:
        raise SimError(f"unknown quirk(s) {', '.join(sorted(unknown))}; known: {', '.join(QUIRKS)}")
    return chosen
