"""Several `polaris ocpp` instances: a command for a charger held by another instance is
routed to it through Postgres (ocpp.routed_commands + NOTIFY ocpp_commands)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from polaris.db import notify
from polaris.db.listen import PgListener
from polaris.db.repos import id_tags, ocpp_journal
from polaris.ocpp import commands, errors
from polaris.ocpp.routing import application_name
from polaris.ocpp.server import OcppServer
from polaris.sim.charger import SimulatedCharger

KEY = "charger-key-0123456789"


@pytest.fixture
async def two(ocpp_settings, pool, server_factory, wait_until) -> AsyncIterator[tuple]:
    """Instances A and B sharing the database, as behind one balancer."""
    started = []
    for name in ("inst-a", "inst-b"):  # each its own name, as production does
        server, runner, running = await server_factory(ocpp_settings, pool, instance=name, response_timeout=2.0)
        started.append((server, runner, running))
    (a, ra, _), (b, rb, _) = started
    await wait_until(lambda: a.router.listening.is_set() and b.router.listening.is_set())
    yield started
    for server, runner, _ in started:
        await runner.cleanup()
        await server.close()


async def held_by_b(two, charger, conn, wait_until) -> SimulatedCharger:
    (_, _, _), (b, _, running_b) = two
    await id_tags.add_id_tag(conn, "SIMTAG")
    sim = SimulatedCharger(running_b.ws_url, charger, KEY, id_tag="SIMTAG", connectors=2, auto_sessions=False,
                           step_delay=0.05, heartbeat_interval=3600, seed=1)
    await sim.start()

    async def recorded() -> bool:
        row = await conn.fetchrow("SELECT connected, connected_instance FROM ocpp.charge_boxes "
                                  "WHERE charge_box_id = $1", charger)
        return row["connected"] and row["connected_instance"] == "inst-b"

    await wait_until(recorded, within=10)
    return sim


async def test_a_command_reaches_a_charger_held_by_another_instance(two, charger, conn, wait_until):
    (a, _, running_a), (b, _, _) = two
    sim = await held_by_b(two, charger, conn, wait_until)
    try:
        assert charger not in a.connections and charger in b.connections
        answer = await commands.send_command(a, charger, "ChangeConfiguration",
                                             {"key": "MeterValueSampleInterval", "value": "30"},
                                             requested_by="ops@example.com")
        assert answer == {"status": "Accepted"}
        # Through A's command API, as the web calls it: the same answer shape as from B.
        status, body = await running_a.api("POST", "/api/v1/operations/GetConfiguration",
                                           {"chargeBoxId": charger, "key": ["MeterValueSampleInterval"]})
        assert status == 200, body
        assert body["response"]["configurationKey"][0]["value"] == "30"
        # The holder journaled what it sent, with who asked; nothing is left in the routing table.
        journal = await ocpp_journal.list_journal(conn, charger)
        (sent,) = [j for j in journal if j["action"] == "ChangeConfiguration" and j["direction"] == "cs_to_cp"]
        assert (sent["status"], sent["requested_by"]) == ("answered", "ops@example.com")
        assert await conn.fetchval("SELECT count(*) FROM ocpp.routed_commands") == 0
        # The holder's refusal travels back as it is: an invalid request is refused by A
        # itself, before routing; an operation the charger cannot do is B's 4xx, said by A.
        with pytest.raises(errors.InvalidCommand):
            await commands.send_command(a, charger, "Reset", {"type": "Sideways"})
    finally:
        await sim.stop()


async def test_a_holder_that_does_not_answer_is_a_timeout_and_the_command_is_withdrawn(
    two, charger, conn, wait_until, ocpp_settings
):
    (a, _, _), (b, _, _) = two
    sim = await held_by_b(two, charger, conn, wait_until)
    a.router.grace = 0.5
    deaf = None
    try:
        # B's listener is gone from Postgres (B crashed): refused at once, saying where it was.
        await b.router.close()
        await wait_until(lambda: conn.fetchval(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'polaris-ocpp:inst-b')"))
        with pytest.raises(errors.ChargerOffline, match="instance inst-b, which is not running"):
            await commands.send_command(a, charger, "Reset", {"type": "Soft"}, answer_timeout=0.5)
        # Connected under B's name but never answering (a hung process): a timeout, and the
        # command is withdrawn so B cannot send it after the caller was told it failed.
        deaf = PgListener(ocpp_settings.database_url, [notify.OCPP_COMMANDS], lambda *_: None,
                          name="deaf", application_name=application_name("inst-b"))
        deaf.start()
        await wait_until(lambda: deaf.listening.is_set())
        with pytest.raises(errors.CommandTimeout, match="inst-b, which holds charger CB-0001, did not report"):
            await commands.send_command(a, charger, "Reset", {"type": "Soft"}, answer_timeout=0.5)
        assert await conn.fetchval("SELECT count(*) FROM ocpp.routed_commands") == 0
    finally:
        if deaf is not None:
            await deaf.close()
        await sim.stop()


async def test_an_offline_charger_is_still_409_without_routing(ocpp_settings, pool, conn, charger):
    server = OcppServer(ocpp_settings, pool, instance="solo", route_commands=False)
    await conn.execute("UPDATE ocpp.charge_boxes SET connected = true, connected_instance = 'other:8080'")
    with pytest.raises(errors.ChargerOffline, match="another OCPP server instance"):
        await commands.send_command(server, charger, "Reset", {"type": "Soft"})
