"""The site load-management controller: one job of the OCPP server, one holder per site.

Each run: the managed sites in use (a grid limit, a charger connected) are claimed with a
Postgres advisory lock held on the controller's own connection, so exactly one OCPP server
instance manages a site; when that instance dies its connection goes and another instance
claims the site on its next run. For each site it holds, it reads the tree of breakers, the
open sessions and their newest meter readings, asks the allocator (polaris.loadmgmt) for a
limit per session, stores the decision, and sends what changed (charging_limits.py):

- a TxProfile per running session, when its limit drops at all or rises by more than
  LOADMGMT_THRESHOLD_AMPS; lowered limits go first and are answered before raised ones go,
  so the limits in force never add up over a breaker while they change;
- a TxDefaultProfile per charger for the next session: the minimum when the site has room
  for it, else 0 A until the controller gives it a share;
- a ChargePointMaxProfile lease: the charger's maximum for LOADMGMT_FAILSAFE_LEASE_SECONDS,
  then its safe share of the site unless renewed (renewed at half time), so a charger that
  loses the controller falls back to a limit that is safe whatever the others do.

Answers are recorded (ocpp.load_allocations; every profile is journaled by send_command,
`requested_by` `loadmgmt:<instance>`); an accepted TxProfile is read back with
GetCompositeSchedule where the charger supports it. A charger that refuses (or does not
answer) is counted at its maximum from then on and the others are recomputed at once.

Woken by session start/stop and by meter values with current or power (`ctx.load_wake`),
after LOADMGMT_SETTLE_SECONDS; and every LOADMGMT_INTERVAL_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg

from polaris.db.pool import connect
from polaris.db.repos import sites
from polaris.loadmgmt.allocator import (
    NOMINAL_VOLTAGE,
    OCPP_MIN_AMPS,
    Demand,
    Node,
    Site,
    allocate,
    floor_tenth,
    should_send,
)
from polaris.logs import get_logger
from polaris.ocpp.charging_limits import (
    STATION_MAX,
    TX,
    TX_DEFAULT,
    Answer,
    Limit,
    read_back,
    send_limit,
)
from polaris.ocpp.errors import DB_UNAVAILABLE
from polaris.ocpp.jobs import Job

if TYPE_CHECKING:
    from polaris.ocpp.commands import CommandHost

log = get_logger(__name__)

LOCK_CLASS = 0x4C4D  # "LM": the first key of pg_try_advisory_lock(int, int); the site id is the second
DEFAULT_MAX_AMPS = 32.0
UNLIMITED = 1e9
OVER_TOLERANCE_AMPS = 0.5  # meter noise before a site counts as over its limit
DECREASE_EPS = 0.05


@dataclass(slots=True)
class _Sent:
    amps: float
    at: float  # monotonic


@dataclass(slots=True)
class LoadController:
    host: CommandHost
    held: set[int] = field(default_factory=set)
    runs: int = 0
    profiles_sent: int = 0
    _conn: asyncpg.Connection | None = None
    _defaults: dict[int, _Sent] = field(default_factory=dict)  # charger pk -> TxDefault sent
    _leases: dict[int, _Sent] = field(default_factory=dict)  # charger pk -> ChargePointMax fallback sent
    _no_composite: set[int] = field(default_factory=set)  # chargers without GetCompositeSchedule
    _refusers: set[int] = field(default_factory=set)  # chargers whose last answer to a profile was no

    @property
    def name(self) -> str:
        return f"loadmgmt:{self.host.ctx.instance}"

    def job(self) -> Job:
        s = self.host.ctx.settings
        return Job("load-management", self.run, every=s.LOADMGMT_INTERVAL_SECONDS, first_after=0,
                   wake=self.host.ctx.load_wake, settle=s.LOADMGMT_SETTLE_SECONDS)

    async def close(self) -> None:
        """Let go of every site (another instance takes them over on its next run)."""
        conn, self._conn = self._conn, None
        self.held.clear()
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=2)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                conn.terminate()

    async def run(self) -> None:
        """Claim the sites in use that nobody holds, let go of idle ones, control the rest."""
        self.runs += 1
        ctx = self.host.ctx
        async with ctx.pool.acquire() as conn:
            in_use = set(await sites.managed_sites_in_use(conn))
        if not in_use and not self.held:
            return  # nothing to manage: no lock connection either
        lock = await self._lock_conn()
        for site_id in sorted(in_use - self.held):
            if await lock.fetchval("SELECT pg_try_advisory_lock($1, $2::int)", LOCK_CLASS, site_id):
                self.held.add(site_id)
                log.info("site load management taken", site_id=site_id, controller=self.name)
        for site_id in sorted(self.held - in_use):
            await lock.fetchval("SELECT pg_advisory_unlock($1, $2::int)", LOCK_CLASS, site_id)
            self.held.discard(site_id)
        for site_id in sorted(self.held):
            await self.control(site_id)

    async def _lock_conn(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self.held.clear()  # a lost connection took its locks with it
            self._conn = await connect(self.host.ctx.settings.database_url or "")
        return self._conn

    async def control(self, site_id: int, *, again: bool = True) -> None:
        """One site: allocate, store, send what changed; once more at once if a charger refused."""
        ctx = self.host.ctx
        settings = ctx.settings
        async with ctx.pool.acquire() as conn:
            inputs = await sites.site_inputs(conn, site_id)
        if inputs is None:
            return
        site, chargers = _site_tree(inputs), {c["pk"]: c for c in inputs["chargers"]}
        now = time.monotonic()
        demands, rows = [], []
        # One session per connector: the newest (an older one left open is the charger's loss of memory).
        newest = {(r["charge_box_pk"], r["connector_id"]): r for r in inputs["sessions"]}
        for r in sorted(newest.values(), key=lambda r: (r["start_timestamp"], r["transaction_id"])):
            charger = chargers.get(r["charge_box_pk"])
            if charger is None:
                continue
            same_tx = r["allocated_transaction_id"] == r["transaction_id"]
            answer = r["answer"] if same_tx else None
            phases = _phases(site.phases, r["phases_seen"])
            demands.append(Demand(
                key=(r["charge_box_pk"], r["connector_id"]),
                node=str(charger["circuit_id"]) if charger["circuit_id"] else site.root,
                phases=phases,
                min_amps=max(charger["min_amps"] or OCPP_MIN_AMPS, OCPP_MIN_AMPS),
                max_amps=charger["max_amps"] or DEFAULT_MAX_AMPS,
                drawn_amps=_drawn(r["amps"], r["watts"], len(phases)),
                current_limit=r["sent_amps"] if same_tx and answer == "Accepted" else None,
                order=r["start_timestamp"].timestamp(),
                # Refused, unanswered or offline: it may draw its maximum.
                refused=((answer is not None and answer != "Accepted") or not charger["connected"]
                         or charger["pk"] in self._refusers),
            ))
            rows.append((r, charger, answer if same_tx else None))
        out = allocate(site, demands)
        async with ctx.pool.acquire() as conn, conn.transaction():
            for d, a, (r, _charger, _answer) in zip(demands, out, rows, strict=True):
                await sites.save_allocation(
                    conn, charge_box_pk=r["charge_box_pk"], connector_id=r["connector_id"], site_id=site_id,
                    transaction_id=r["transaction_id"], limit_amps=a.amps, phases=len(d.phases),
                    paused_reason=a.reason if a.amps == 0 or d.refused else None, drawn_amps=d.drawn_amps)
            await sites.drop_finished(conn, site_id, [d.key for d in demands])  # type: ignore[misc]
        # What to send: lowered limits first, then raised ones.
        lower, higher = [], []
        for d, a, (r, charger, answer) in zip(demands, out, rows, strict=True):
            if not charger["connected"]:
                continue
            sent = r["sent_amps"] if r["allocated_transaction_id"] == r["transaction_id"] else None
            target = floor_tenth(d.max_amps) if d.refused else a.amps
            due_retry = (answer not in (None, "Accepted") and r["sent_at"] is not None
                         and (_age(r["sent_at"]) >= settings.LOADMGMT_RETRY_SECONDS))
            if d.refused and (answer is not None or not charger["connected"]) and not due_retry:
                continue  # offered again after LOADMGMT_RETRY_SECONDS: what is set aside for it
            if due_retry or should_send(sent, target, settings.LOADMGMT_THRESHOLD_AMPS):
                (lower if sent is None or target <= sent else higher).append((d, target, r, charger))
        refused_now = False
        for batch in (lower, higher):
            answers = await asyncio.gather(*(self._send_tx(d, amps, r, c) for d, amps, r, c in batch))
            refused_now |= any(not a.accepted for a in answers)
        await self._charger_profiles(site, chargers, demands, out, now)
        await self._record_load(site_id, site, inputs, demands, out)
        if refused_now and again:
            await self.control(site_id, again=False)  # the others make room for the refuser at once

    async def _send_tx(self, d: Demand, amps: float, r: asyncpg.Record, charger: asyncpg.Record) -> Answer:
        limit = Limit(TX, r["connector_id"], amps, phases=len(d.phases), transaction_id=r["transaction_id"])
        answer = await send_limit(self.host, charger["charge_box_id"], charger["ocpp_protocol"], limit,
                                  requested_by=self.name)
        self.profiles_sent += 1
        composite = None
        if answer.accepted and charger["pk"] not in self._no_composite:
            got = await read_back(self.host, charger["charge_box_id"], charger["ocpp_protocol"], r["connector_id"],
                                  requested_by=self.name)
            if got == "unsupported":
                self._no_composite.add(charger["pk"])
            elif isinstance(got, float):
                composite = got
        if answer.accepted:
            self._refusers.discard(charger["pk"])
        else:
            log.warning("charger refused its load-management limit", charge_box_id=charger["charge_box_id"],
                        connector_id=r["connector_id"], amps=amps, answer=answer.status, detail=answer.detail)
        try:
            async with self.host.ctx.pool.acquire() as conn:
                await sites.save_answer(conn, charger["pk"], r["connector_id"],
                                        sent_amps=amps if answer.accepted else r["sent_amps"],
                                        answer=answer.status, composite_amps=composite)
        except DB_UNAVAILABLE:
            pass
        return answer

    async def _charger_profiles(self, site: Site, chargers: dict, demands: list[Demand], out: list,
                                now: float) -> None:
        """TxDefault (next session) and the ChargePointMax lease, per connected charger, when due."""
        settings = self.host.ctx.settings
        lease = settings.LOADMGMT_FAILSAFE_LEASE_SECONDS
        connected = [c for c in chargers.values() if c["connected"]]
        safe = _safe_share(site, len(chargers))
        room = _headroom(site, demands, out)
        busy = {d.key[0] for d in demands}  # type: ignore[index]
        sends = []
        for c in connected:
            max_amps = c["max_amps"] or DEFAULT_MAX_AMPS
            minimum = max(c["min_amps"] or OCPP_MIN_AMPS, OCPP_MIN_AMPS)
            path = site.path(str(c["circuit_id"]) if c["circuit_id"] else site.root)
            default = 0.0
            if c["pk"] not in busy and all(room[n] >= minimum for n in path):
                default = minimum
                for n in path:
                    room[n] -= minimum
            last = self._defaults.get(c["pk"])
            if last is None or abs(last.amps - default) > DECREASE_EPS:
                sends.append((c, Limit(TX_DEFAULT, 0, default, phases=site.phases), self._defaults, default))
            fallback = min(safe, max_amps)
            held = self._leases.get(c["pk"])
            if held is None or abs(held.amps - fallback) > DECREASE_EPS or now - held.at > lease / 2:
                sends.append((c, Limit(STATION_MAX, 0, floor_tenth(max_amps), phases=site.phases, lease_s=lease,
                                       fallback_amps=fallback), self._leases, fallback))

        async def one(c: asyncpg.Record, limit: Limit, book: dict[int, _Sent], amps: float) -> None:
            answer = await send_limit(self.host, c["charge_box_id"], c["ocpp_protocol"], limit,
                                      requested_by=self.name)
            self.profiles_sent += 1
            if answer.accepted or answer.status in ("Rejected", "NotSupported"):
                book[c["pk"]] = _Sent(amps, now)  # a refusal is not asked again every run
            if answer.accepted:
                self._refusers.discard(c["pk"])
            elif answer.status in ("Rejected", "NotSupported"):
                self._refusers.add(c["pk"])

        await asyncio.gather(*(one(*s) for s in sends))

    async def _record_load(self, site_id: int, site: Site, inputs: dict, demands: list[Demand], out: list) -> None:
        drawn, allocated = [0.0] * site.phases, [0.0] * site.phases
        for d, a in zip(demands, out, strict=True):
            for ph in d.phases:
                drawn[ph] += d.drawn_amps or 0.0
                allocated[ph] += a.amps
        limit = inputs["site"]["limit_amps"]
        over = limit is not None and max(drawn, default=0) > limit + OVER_TOLERANCE_AMPS
        try:
            async with self.host.ctx.pool.acquire() as conn:
                await sites.save_site_load(conn, site_id, controller=self.name, drawn=[round(x, 2) for x in drawn],
                                           allocated=[round(x, 2) for x in allocated], over=over)
        except DB_UNAVAILABLE:
            pass
        if over:
            log.warning("site over its grid limit", site_id=site_id, limit_amps=limit, drawn_amps=drawn)


def _site_tree(inputs: dict) -> Site:
    s = inputs["site"]
    margin = s["margin_amps"] or 0.0
    root_limit = (s["limit_amps"] - margin) if s["limit_amps"] is not None else UNLIMITED
    nodes = {"site": Node("site", max(0.0, root_limit))}
    for c in inputs["circuits"]:
        nodes[str(c["id"])] = Node(str(c["id"]), c["limit_amps"], str(c["parent_id"]) if c["parent_id"] else "site")
    limit_kw = None
    if s["limit_kw"] is not None:
        limit_kw = max(0.0, s["limit_kw"] - margin * NOMINAL_VOLTAGE * s["phases"] / 1000)
    return Site("site", nodes, phases=s["phases"], limit_kw=limit_kw, policy=s["policy"])


def _phases(site_phases: int, seen: list[str] | None) -> tuple[int, ...]:
    if site_phases == 1:
        return (0,)
    idx = tuple(sorted({int(p[1]) - 1 for p in seen or [] if p[:2] in ("L1", "L2", "L3")}))
    return idx or (0, 1, 2)  # not known yet: count it on every phase


def _drawn(amps: float | None, watts: float | None, phases: int) -> float | None:
    if amps is not None:
        return float(amps)
    if watts is not None:
        return float(watts) / (NOMINAL_VOLTAGE * phases)
    return None


def _age(at: datetime) -> float:
    return (datetime.now(UTC) - at).total_seconds()


def _headroom(site: Site, demands: list[Demand], out: list) -> dict[str, float]:
    """Amps left on each node's busiest phase."""
    used = {n: [0.0] * site.phases for n in site.nodes}
    for d, a in zip(demands, out, strict=True):
        for n in site.path(d.node):
            for ph in d.phases:
                used[n][ph] += a.amps
    return {n: site.nodes[n].limit_amps - max(used[n]) for n in site.nodes}


def _safe_share(site: Site, chargers: int) -> float:
    """Each charger's share of the site were all of them to draw it at once (0 when under 6 A)."""
    share = site.nodes[site.root].limit_amps / max(1, chargers)
    if site.limit_kw is not None:
        share = min(share, site.limit_kw * 1000 / (NOMINAL_VOLTAGE * site.phases) / max(1, chargers))
    share = floor_tenth(share)
    return share if share >= OCPP_MIN_AMPS else 0.0
