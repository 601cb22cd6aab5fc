"""Commands sent while the database is down still reach chargers, and are journaled once it is back."""

from __future__ import annotations

import asyncio

from polaris.db.pool import create_pool

PROFILE = {"connectorId": 1, "csChargingProfiles": {
    "chargingProfileId": 7, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Absolute", "chargingSchedule": {
        "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}}}


async def _answer(client, status: str = "Accepted") -> str:
    call = await client.recv()
    await client.send_raw(f'[3, "{call[1]}", {{"status": "{status}"}}]')
    return call[2]


async def test_commands_during_an_outage_are_journaled_when_the_database_is_back(ocpp, client, conn, db_dsn):
    await client.boot()
    journal = ocpp.server.ctx.journal
    down = await create_pool(db_dsn, min_size=0, max_size=1)
    await down.close()  # a pool that cannot reach the database: what an outage looks like to us
    journal.pool = down
    for op, body in (("SetChargingProfile", PROFILE), ("ClearCache", {})):
        command = asyncio.ensure_future(ocpp.api("POST", f"/api/v1/operations/{op}", {"chargeBoxId": "CB-0001", **body}))
        assert await _answer(client) == op  # the charger got it
        status, answer = await command
        assert status == 200, answer
    assert len(journal.waiting) == 2
    assert await conn.fetchval("SELECT count(*) FROM ocpp.message_journal") == 0
    journal.pool = ocpp.server.pool  # the database is back
    await journal.flush()
    rows = await conn.fetch("SELECT action, status FROM ocpp.message_journal ORDER BY id")
    assert [(r["action"], r["status"]) for r in rows] == [("SetChargingProfile", "answered"), ("ClearCache", "answered")]
    kept = await conn.fetchrow("SELECT charging_profile_id, status FROM ocpp.charging_profiles")
    assert (kept["charging_profile_id"], kept["status"]) == (7, "Accepted")
    assert not journal.waiting


async def test_duplicate_stop_is_answered_and_logged_as_a_duplicate(client, conn, capsys):
    await conn.execute("INSERT INTO app.id_tags (id_tag) VALUES ('T1')")
    tx = (await client.ok("StartTransaction", {"connectorId": 1, "idTag": "T1", "meterStart": 0,
                                              "timestamp": "2026-01-01T10:00:00Z"}))["transactionId"]
    stop = {"transactionId": tx, "meterStop": 500, "timestamp": "2026-01-01T11:00:00Z"}
    await client.ok("StopTransaction", stop)
    capsys.readouterr()
    await client.ok("StopTransaction", stop)
    out = "".join(capsys.readouterr())  # logs go to stdout or stderr, as configured
    assert "duplicate StopTransaction answered" in out and "kept, not applied" not in out
    assert await conn.fetchval("SELECT count(*) FROM ocpp.failed_stops") == 0


async def test_connect_boot_and_disconnect_are_logged(ocpp, charger, open_charger, capsys, wait_until):
    c = await open_charger(ocpp.ws_url)
    await c.boot()
    await c.ws.close()
    seen: list[str] = []

    def logged() -> bool:
        seen.append("".join(capsys.readouterr()))
        return "charger disconnected" in "".join(seen)

    await wait_until(logged, within=5)
    out = "".join(seen)
    assert "charger connected" in out and "charger booted" in out and "vendor=Acme" in out
