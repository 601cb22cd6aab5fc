"""Site load management end to end: simulated chargers over real WebSockets, real Postgres.

Six cars on 32 A chargers at a three-phase site limited to 63 A per phase: no phase is ever
over the limit in the meter values the chargers send, limits are re-sent when a car leaves,
a charger that refuses its profile is counted at its maximum and the others make room, and
when the controlling instance dies another takes the site over.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg
import pytest

from polaris.db.repos import charge_boxes, id_tags, sites
from polaris.sim.charger import SimulatedCharger

KEY = "charger-key-0123456789"
FULL_POWER_W = 32 * 230 * 3  # a car that would take all 32 A


@pytest.fixture
def lm_settings(ocpp_settings):
    return ocpp_settings.model_copy(update={
        "LOADMGMT_INTERVAL_SECONDS": 1.0, "LOADMGMT_SETTLE_SECONDS": 0.2, "LOADMGMT_RETRY_SECONDS": 30.0,
    })


async def garage(conn: asyncpg.Connection, ids: list[str], limit: float) -> None:
    await sites.set_site_limits(conn, "Garage", {"limit_amps": limit, "phases": 3})
    await charge_boxes.add_charge_boxes(conn, ids, KEY, site_name="Garage")
    for cid in ids:  # a card each: one card charges at one charger at a time
        await id_tags.add_id_tag(conn, f"TAG-{cid}")


def sim(url: str, cid: str, **kw) -> SimulatedCharger:
    return SimulatedCharger(url, cid, KEY, id_tag=f"TAG-{cid}", auto_sessions=False, session_seconds=3600,
                            meter_interval=1, heartbeat_interval=3600, step_delay=0.05, seed=7, **kw)


def plug_in(c: SimulatedCharger) -> None:
    assert c.start_session(1)
    car = c.connectors[1].session.vehicle
    car.max_power_w, car.soc = FULL_POWER_W, 20.0  # wants the charger's full 32 A for the whole test


async def allocations(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT cb.charge_box_id, a.limit_amps::float8 AS limit_amps, a.sent_amps::float8 AS sent_amps, a.answer, "
        "a.composite_amps::float8 AS composite_amps, a.paused_reason FROM ocpp.load_allocations a "
        "JOIN ocpp.charge_boxes cb ON cb.id = a.charge_box_pk")
    return {r["charge_box_id"]: r for r in rows}


async def worst_phase_total(conn: asyncpg.Connection) -> float:
    """The highest per-phase sum, at any moment a reading came in, of every running session's latest reading."""
    rows = await conn.fetch(
        "SELECT v.transaction_id, v.phase, v.value_num, v.sampled_at, t.stop_timestamp FROM ocpp.meter_values v "
        "JOIN ocpp.transactions t ON t.id = v.transaction_id "
        "WHERE v.measurand = 'Current.Import' ORDER BY v.sampled_at, v.id")
    latest: dict[str, dict[int, tuple[float, object]]] = defaultdict(dict)
    worst = 0.0
    for r in rows:
        latest[r["phase"]][r["transaction_id"]] = (r["value_num"], r["stop_timestamp"])
        now = r["sampled_at"]
        worst = max(worst, sum(v for v, stop in latest[r["phase"]].values() if stop is None or stop > now))
    return worst


async def test_six_cars_share_63a_a_refusing_charger_is_compensated_and_limits_follow_a_leaving_car(
    lm_settings, pool, conn, server_factory, wait_until
):
    ids = [f"LM-{i}" for i in range(1, 7)]
    await garage(conn, ids, 63)
    server, runner, running = await server_factory(lm_settings, pool, response_timeout=2.0)
    # LM-6 refuses every profile (it allows no stack level above 0; ours are at 5).
    chargers = [sim(running.ws_url, cid, **({"configuration": {"ChargeProfileMaxStackLevel": "0"}}
                                            if cid == "LM-6" else {})) for cid in ids]
    try:
        await asyncio.gather(*(c.start() for c in chargers))
        # Before any car: each charger gets a default for its next session and a fail-safe lease.
        await wait_until(lambda: all((0, 7601) in c.charging_profiles and (0, 7600) in c.charging_profiles
                                     for c in chargers[:5]), within=10)
        assert chargers[5].charging_profiles == {}
        for c in chargers:
            plug_in(c)

        async def shared() -> bool:
            a = await allocations(conn)
            return len(a) == 6 and all(a[c]["sent_amps"] == 6.2 and a[c]["answer"] == "Accepted" for c in ids[:5])

        await wait_until(shared, within=15)
        a = await allocations(conn)
        # LM-6 said no: counted at its 32 A, so the other five share the 31 A left.
        assert a["LM-6"]["answer"] == "Rejected" and a["LM-6"]["limit_amps"] == 32
        assert "refused" in a["LM-6"]["paused_reason"]
        assert a["LM-1"]["composite_amps"] == 6.2  # read back with GetCompositeSchedule
        await asyncio.sleep(3)  # meter values at the shared limits
        chargers[0].stop_session(1)  # a car leaves: the four left get its share

        async def raised() -> bool:
            a = await allocations(conn)
            return "LM-1" not in a and all(a[c]["sent_amps"] == 7.7 for c in ids[1:5])

        await wait_until(raised, within=15)
        await asyncio.sleep(2)
        assert await worst_phase_total(conn) <= 63.0
        totals = await conn.fetchval("SELECT allocated_amps::float8[] FROM ocpp.site_load")
        assert totals == [62.8, 62.8, 62.8]  # 4 x 7.7 + 32 for the refuser
        journal = await conn.fetch(
            "SELECT charge_box_id, action, requested_by, response->>'status' AS status FROM ocpp.message_journal "
            "WHERE action IN ('SetChargingProfile', 'GetCompositeSchedule')")
        assert journal and {j["requested_by"] for j in journal} == {"loadmgmt:test"}
        assert {j["status"] for j in journal if j["charge_box_id"] == "LM-6"} == {"Rejected"}
        # Chargers answered every profile they were sent; what they hold is what was decided.
        assert chargers[1].charging_profiles[(1, 7611)].periods[0].limit == 7.7
    finally:
        await asyncio.gather(*(c.stop() for c in chargers))
        await runner.cleanup()
        await server.close()


async def test_when_the_controlling_instance_dies_another_takes_the_site_over(
    lm_settings, pool, conn, server_factory, wait_until
):
    ids = ["HO-1", "HO-2"]
    await garage(conn, ids, 20)
    # The chargers' own instance runs no controller; A and then B compete for the site.
    holder = await server_factory(lm_settings.model_copy(update={"LOADMGMT_ENABLED": False}), pool,
                                  instance="inst-chargers", response_timeout=2.0)
    a = await server_factory(lm_settings, pool, instance="inst-a", response_timeout=2.0)
    chargers = [sim(holder[2].ws_url, cid) for cid in ids]
    b = None
    try:
        await asyncio.gather(*(c.start() for c in chargers))
        await wait_until(lambda: a[0].load_control.held, within=10)
        b = await server_factory(lm_settings, pool, instance="inst-b", response_timeout=2.0)
        plug_in(chargers[0])
        await wait_until(lambda: (1, 7611) in chargers[0].charging_profiles, within=10)
        assert not b[0].load_control.held  # A holds the site: B leaves it alone
        await a[1].cleanup()
        await a[0].close()  # A goes: its connection, and the site's lock with it
        await wait_until(lambda: b[0].load_control.held, within=10)
        plug_in(chargers[1])

        async def shared_by_b() -> bool:
            rows = await conn.fetch("SELECT cb.charge_box_id, a.sent_amps::float8 AS sent FROM ocpp.load_allocations a "
                                    "JOIN ocpp.charge_boxes cb ON cb.id = a.charge_box_pk")
            return {r["charge_box_id"]: r["sent"] for r in rows} == {"HO-1": 10.0, "HO-2": 10.0}

        await wait_until(shared_by_b, within=15)
        by = await conn.fetch("SELECT DISTINCT requested_by FROM ocpp.message_journal "
                              "WHERE action = 'SetChargingProfile' AND charge_box_id = 'HO-2' "
                              "AND request->'csChargingProfiles'->>'chargingProfilePurpose' = 'TxProfile'")
        assert [r["requested_by"] for r in by] == ["loadmgmt:inst-b"]
        assert await conn.fetchval("SELECT controller FROM ocpp.site_load") == "loadmgmt:inst-b"
    finally:
        await asyncio.gather(*(c.stop() for c in chargers))
        for s in (b, holder):
            if s is not None:
                await s[1].cleanup()
                await s[0].close()


async def test_a_mixed_site_limits_16_and_201_chargers_alike(lm_settings, pool, conn, server_factory, wait_until):
    ids = ["MX-1", "MX-2", "MX-3", "MX-4"]
    await garage(conn, ids, 32)
    server, runner, running = await server_factory(lm_settings, pool, response_timeout=2.0)
    chargers = [sim(running.ws_url, cid, ocpp="2.0.1" if cid in ("MX-3", "MX-4") else "1.6") for cid in ids]
    try:
        await asyncio.gather(*(c.start() for c in chargers))
        # Every charger, whatever its version, holds a default for new sessions and the fail-safe.
        await wait_until(lambda: all((0, 7601) in c.charging_profiles and (0, 7600) in c.charging_profiles
                                     for c in chargers), within=15)
        for c in chargers:
            plug_in(c)

        async def shared() -> bool:
            a = await allocations(conn)
            return len(a) == 4 and all(a[c]["sent_amps"] == 8.0 and a[c]["answer"] == "Accepted" for c in ids)

        await wait_until(shared, within=20)
        # The 2.0.1 stations hold the session's limit on their EVSE 1 and apply it to the car.
        for c in chargers:
            assert c.charging_profiles[(1, 7611)].periods[0].limit == 8.0, c.charge_box_id
        journal = await conn.fetch(
            "SELECT charge_box_id, request FROM ocpp.message_journal WHERE action = 'SetChargingProfile' "
            "AND charge_box_id IN ('MX-3', 'MX-4')")
        purposes = {j["request"]["chargingProfile"]["chargingProfilePurpose"] for j in journal}
        assert "ChargingStationMaxProfile" in purposes and "TxDefaultProfile" in purposes
        assert purposes <= {"ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile"}
        await asyncio.sleep(3)  # meter values at the shared limits
        assert await worst_phase_total(conn) <= 32.0
    finally:
        await asyncio.gather(*(c.stop() for c in chargers))
        await runner.cleanup()
        await server.close()
