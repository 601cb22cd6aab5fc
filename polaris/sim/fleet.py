"""A fleet of simulated chargers in one process (`polaris sim`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from polaris.logs import get_logger
from polaris.sim.charger import SimulatedCharger

log = get_logger(__name__)


def charger_ids(prefix: str, count: int, first: int = 1) -> list[str]:
    """The CLI contract's naming: PREFIX + 4-digit k, k from `first` (SIM-0001, SIM-0002, ...)."""
    return [f"{prefix}{k:04d}" for k in range(first, first + count)]


@dataclass
class FleetOptions:
    url: str
    chargers: int
    id_prefix: str = "SIM-"
    password: str | None = None
    id_tag: str = "SIMTAG0001"
    connectors: int = 1
    first: int = 1
    auto_sessions: bool = True
    session_seconds: float = 900
    idle_seconds: float = 300
    meter_interval: int = 60
    heartbeat_interval: int | None = None
    ramp: float = 100.0  # chargers connecting per second, so a big fleet is no reconnect storm
    quirks: frozenset[str] = field(default_factory=frozenset)
    step_delay: float = 2.0
    summary_every: float = 60.0
    ocpp_versions: tuple[str, ...] = ("1.6",)  # charger k speaks the k-th, in turn (a mixed fleet)


def build_fleet(opts: FleetOptions) -> list[SimulatedCharger]:
    """The chargers; with several id tags (comma-separated), charger k presents the k-th in turn, and
    likewise speaks the k-th of several OCPP versions."""
    tags = opts.id_tag.split(",")
    return [
        SimulatedCharger(
            opts.url,
            cid,
            opts.password,
            id_tag=tags[i % len(tags)],
            connectors=opts.connectors,
            auto_sessions=opts.auto_sessions,
            session_seconds=opts.session_seconds,
            idle_seconds=opts.idle_seconds,
            meter_interval=opts.meter_interval,
            heartbeat_interval=opts.heartbeat_interval,
            quirks=opts.quirks,
            step_delay=opts.step_delay,
            ocpp=opts.ocpp_versions[i % len(opts.ocpp_versions)],
        )
        for i, cid in enumerate(charger_ids(opts.id_prefix, opts.chargers, opts.first))
    ]


def summary(chargers: list[SimulatedCharger]) -> dict[str, int]:
    return {
        "chargers": len(chargers),
        "connected": sum(c.connected for c in chargers),
        "charging": sum(1 for c in chargers for t in c.transaction_ids.values() if t is not None),
        "completed_sessions": sum(len(c.completed_transactions) for c in chargers),
        "queued_messages": sum(c.queued_messages for c in chargers),
    }


async def run_fleet(opts: FleetOptions, stop: asyncio.Event) -> list[SimulatedCharger]:
    """Run the fleet until `stop` is set; then end running sessions and disconnect."""
    chargers = build_fleet(opts)
    log.info("starting simulated chargers", url=opts.url, chargers=len(chargers), first=chargers[0].charge_box_id)
    for c in chargers:
        c.launch()
        if opts.ramp > 0:
            try:
                await asyncio.wait_for(stop.wait(), 1 / opts.ramp)
                break
            except TimeoutError:
                pass
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), opts.summary_every)
        except TimeoutError:
            log.info("fleet", **summary(chargers))
    log.info("stopping simulated chargers", **summary(chargers))
    await asyncio.gather(*(c.stop(end_sessions=True, timeout=5) for c in chargers), return_exceptions=True)
    return chargers
