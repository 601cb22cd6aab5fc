"""The chargers table's data: every charger in memory, live updates applied in batches.

No textual here: the widget asks for the row at a visible line, and the store says which
rows a batch of events touched, so only those lines are repainted.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from polaris.tui.events import LiveEvent
from polaris.tui.models import Charger, summarize_status

STATUS_FILTERS = ("all", "online", "offline", "charging", "faulted", "available")


@dataclass(slots=True)
class ChargerRow:
    charge_box_id: str
    site: str = ""
    connected: bool = False
    connectors: dict[int, str | None] = field(default_factory=dict)
    error_code: str | None = None
    firmware: str = ""
    last_heartbeat_at: datetime | None = None
    # The last message of any kind (a charger that sends meter values may rarely heartbeat).
    last_seen_at: datetime | None = None
    status: str = "Offline"

    def recompute(self) -> None:
        self.status = summarize_status(self.connected, list(self.connectors.items()))

    @classmethod
    def from_charger(cls, c: Charger) -> ChargerRow:
        row = cls(
            charge_box_id=c.charge_box_id,
            site=c.site_name or "",
            connected=c.connected,
            connectors={k.connector_id: k.status for k in c.connectors},
            error_code=next((k.error_code for k in c.connectors if k.error_code and k.error_code != "NoError"), None),
            firmware=c.firmware_version or "",
            last_heartbeat_at=c.last_heartbeat_at,
            last_seen_at=_latest(c.last_seen_at, c.last_heartbeat_at),
        )
        row.recompute()
        return row


@dataclass(slots=True)
class StatusUpdate:
    """One live change to a charger, whatever SSE event carried it."""

    charge_box_id: str
    connector_id: int | None = None
    status: str | None = None
    error_code: str | None = None
    connected: bool | None = None
    heartbeat_at: datetime | None = None
    # When the console learnt of it: the charger sent something just then.
    seen_at: datetime | None = None


def update_from_event(event: LiveEvent) -> StatusUpdate | None:
    """The charger change an SSE event describes, or None if it is about something else."""
    data = event.data
    if not isinstance(data, dict) or not event.type.startswith(("charger", "connector", "status")):
        return None
    box = data.get("charge_box_id") or data.get("chargeBoxId")
    if not isinstance(box, str):
        return None
    connected = data.get("connected")
    if connected is None and event.type.endswith(("connected", "disconnected")):
        connected = not event.type.endswith("disconnected")
    connector = data.get("connector_id", data.get("connectorId"))
    hb = data.get("heartbeat_at") or data.get("last_heartbeat_at")
    return StatusUpdate(
        charge_box_id=box,
        connector_id=int(connector) if isinstance(connector, int | str) and str(connector).isdigit() else None,
        status=data.get("status"),
        error_code=data.get("error_code") or data.get("errorCode"),
        connected=connected if isinstance(connected, bool) else None,
        heartbeat_at=_parse_dt(hb),
    )


def _latest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _parse_dt(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class ChargerStore:
    """Rows in charge-box-id order, a filtered view of them, and batched live updates."""

    def __init__(self) -> None:
        self.rows: list[ChargerRow] = []
        self.index: dict[str, int] = {}
        self.view: list[int] = []
        self.search = ""
        self.status_filter = "all"
        self.version = 0

    # --- loading -------------------------------------------------------------------

    def load(self, chargers: Iterable[Charger]) -> None:
        """Add or replace chargers (one page of the API's list at a time)."""
        for c in chargers:
            row = ChargerRow.from_charger(c)
            i = self.index.get(row.charge_box_id)
            if i is None:
                self.index[row.charge_box_id] = len(self.rows)
                self.rows.append(row)
            else:
                self.rows[i] = row
        self.refilter()

    def clear(self) -> None:
        self.rows.clear()
        self.index.clear()
        self.view.clear()
        self.version += 1

    # --- filtering -----------------------------------------------------------------

    def matches(self, row: ChargerRow) -> bool:
        if self.search:
            needle = self.search
            if needle not in row.charge_box_id.lower() and needle not in row.site.lower():
                return False
        f = self.status_filter
        if f == "all":
            return True
        if f == "online":
            return row.connected
        if f == "offline":
            return not row.connected
        if f == "charging":
            return row.status in ("Charging", "SuspendedEV", "SuspendedEVSE")
        return row.status.lower() == f

    def set_filter(self, search: str | None = None, status: str | None = None) -> None:
        if search is not None:
            self.search = search.strip().lower()
        if status is not None:
            if status not in STATUS_FILTERS:
                raise ValueError(f"unknown filter {status!r}; one of {', '.join(STATUS_FILTERS)}")
            self.status_filter = status
        self.refilter()

    @property
    def filtered(self) -> bool:
        return bool(self.search) or self.status_filter != "all"

    def refilter(self) -> None:
        if self.filtered:
            self.view = [i for i, r in enumerate(self.rows) if self.matches(r)]
        else:
            self.view = list(range(len(self.rows)))
        self.version += 1

    def row_at(self, line: int) -> ChargerRow | None:
        if 0 <= line < len(self.view):
            return self.rows[self.view[line]]
        return None

    def line_of(self, charge_box_id: str) -> int | None:
        i = self.index.get(charge_box_id)
        if i is None:
            return None
        if not self.filtered:
            return i
        pos = bisect.bisect_left(self.view, i)
        return pos if pos < len(self.view) and self.view[pos] == i else None

    # --- live updates --------------------------------------------------------------

    def apply(self, updates: Iterable[StatusUpdate]) -> tuple[set[int], bool]:
        """Apply a batch; return the touched row indices and whether the view changed shape."""
        touched: set[int] = set()
        for u in updates:
            i = self.index.get(u.charge_box_id)
            if i is None:
                continue  # a charger added after our load; the next reload shows it
            row = self.rows[i]
            if u.connected is not None:
                row.connected = u.connected
            if u.connector_id is not None and u.status:
                row.connectors[u.connector_id] = u.status
                if u.error_code is not None:
                    row.error_code = None if u.error_code == "NoError" else u.error_code
            if u.heartbeat_at is not None:
                row.last_heartbeat_at = u.heartbeat_at
            if u.connected is not False:
                row.last_seen_at = _latest(row.last_seen_at, u.heartbeat_at, u.seen_at)
            row.recompute()
            touched.add(i)
        reshaped = False
        if touched and self.filtered:
            # Only touched rows can enter or leave the view: O(touched x log n), not O(n).
            for i in touched:
                pos = bisect.bisect_left(self.view, i)
                present = pos < len(self.view) and self.view[pos] == i
                wanted = self.matches(self.rows[i])
                if wanted and not present:
                    self.view.insert(pos, i)
                    reshaped = True
                elif present and not wanted:
                    del self.view[pos]
                    reshaped = True
        if touched:
            self.version += 1
        return touched, reshaped

    def counts(self) -> dict[str, int]:
        out = {"total": len(self.rows), "online": 0, "offline": 0, "charging": 0, "faulted": 0}
        for r in self.rows:
            if not r.connected:
                out["offline"] += 1
                continue
            out["online"] += 1
            if r.status == "Faulted":
                out["faulted"] += 1
            elif r.status in ("Charging", "SuspendedEV", "SuspendedEVSE"):
                out["charging"] += 1
        return out
