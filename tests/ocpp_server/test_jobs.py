"""The server's maintenance jobs, and the journal's one write per command."""

from __future__ import annotations

import asyncio
import json

from polaris.ocpp.jobs import Job, JobRunner


async def test_a_failing_job_runs_again_and_a_woken_job_runs_once_per_burst(wait_until):
    runs: list[str] = []

    async def flaky() -> None:
        runs.append("flaky")
        raise RuntimeError("boom")

    async def batch() -> None:
        runs.append("batch")

    wake = asyncio.Event()
    runner = JobRunner()
    runner.add(Job("flaky", flaky, every=0.05, first_after=0))
    runner.add(Job("batch", batch, wake=wake, settle=0.5))
    runner.start()
    try:
        # The exception is logged and the job goes on.
        await wait_until(lambda: runs.count("flaky") >= 3)
        for _ in range(5):  # a burst of changes within the settle time: one run
            wake.set()
            await asyncio.sleep(0.02)
        assert runs.count("batch") == 0
        await wait_until(lambda: runs.count("batch") == 1)
        await asyncio.sleep(0.6)
        assert runs.count("batch") == 1
    finally:
        await runner.close()


async def test_stuck_transactions_are_flagged_when_the_server_starts(ocpp_settings, pool, conn, charger,
                                                                    server_factory, wait_until):
    pk = await conn.fetchval("SELECT id FROM ocpp.charge_boxes")
    tx = await conn.fetchval(
        "INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start, "
        "created_at) VALUES ($1, 1, 'T1', now() - interval '30 hours', 0, now() - interval '30 hours') "
        "RETURNING id", pk)
    server, runner, _ = await server_factory(ocpp_settings, pool)
    try:
        await wait_until(lambda: conn.fetchval(
            "SELECT stuck_since IS NOT NULL FROM ocpp.transactions WHERE id = $1", tx))
    finally:
        await runner.cleanup()
        await server.close()


async def test_a_command_is_journaled_even_when_what_it_changes_cannot_be_stored(ocpp, client, conn):
    # The charger's row goes away while it is deciding: its accepted profile cannot be kept
    # (the foreign key), but the command and the charger's answer are still journaled.
    async def answer_after_delete() -> None:
        frame = json.loads(await client.ws.recv())
        await conn.execute("DELETE FROM ocpp.charge_boxes")
        await client.ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))

    task = asyncio.create_task(answer_after_delete())
    status, body = await ocpp.api("POST", "/api/v1/operations/SetChargingProfile", {
        "chargeBoxId": "CB-0001", "connectorId": 1, "csChargingProfiles": {
            "chargingProfileId": 7, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute", "chargingSchedule": {
                "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}}})
    await task
    assert (status, body["response"]) == (200, {"status": "Accepted"})
    row = await conn.fetchrow("SELECT * FROM ocpp.message_journal")
    assert (row["action"], row["status"], row["response"]) == ("SetChargingProfile", "answered",
                                                              {"status": "Accepted"})
    assert row["created_at"] <= row["answered_at"]
    assert await conn.fetchval("SELECT count(*) FROM ocpp.charging_profiles") == 0
