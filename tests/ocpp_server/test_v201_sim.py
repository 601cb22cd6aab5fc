"""The simulator's 2.0.1 station against the real server: sessions as TransactionEvents with
seqNo, its device model reported and changed, remote start/stop, a hard reset's queue replayed."""

from __future__ import annotations

import pytest

from polaris.db.repos import id_tags
from polaris.db.repos.customers import add_customer
from polaris.sim.charger import SimulatedCharger

from .conftest import CHARGER_KEY


@pytest.fixture
async def station(ocpp, charger, conn):
    await add_customer(conn, "driver@example.com")
    await id_tags.add_id_tag(conn, "SIMTAG", customer_email="driver@example.com")
    c = SimulatedCharger(ocpp.ws_url, charger, CHARGER_KEY, ocpp="2.0.1", id_tag="SIMTAG", connectors=2,
                         auto_sessions=False, step_delay=0.05, heartbeat_interval=3600, seed=1, meter_interval=0)
    await c.start()
    yield c
    await c.stop()


async def _op(ocpp, name: str, fields: dict):
    return await ocpp.api("POST", f"/api/v1/operations/{name}", {"chargeBoxId": "CB-0001", **fields})


async def test_session_lands_as_one_transaction(ocpp, station, conn, wait_until):
    assert ocpp.server.connections["CB-0001"].OCPP_VERSION == "2.0.1"
    assert station.start_session(1)
    await station.wait_for(lambda c: c.transaction_ids[1] is not None)
    assert station.stop_session(1)
    await station.wait_for(lambda c: c.transaction_ids[1] is None and not c.queued_messages)
    tx = await wait_until(lambda: conn.fetchrow("SELECT * FROM ocpp.transactions WHERE stop_timestamp IS NOT NULL"))
    assert tx["id_tag"] == "SIMTAG" and tx["id_tag_status"] == "Accepted" and tx["meter_stop"] >= tx["meter_start"]
    seqs = await conn.fetch("SELECT seq_no, event_type FROM ocpp.transaction_events ORDER BY seq_no")
    assert [r["seq_no"] for r in seqs] == list(range(len(seqs)))
    assert seqs[0]["event_type"] == "Started" and seqs[-1]["event_type"] == "Ended"


async def test_device_model_reported_read_and_written(ocpp, station, conn, wait_until):
    status, body = await _op(ocpp, "GetBaseReport", {"requestId": 7, "reportBase": "FullInventory"})
    assert status == 200 and body["response"]["status"] == "Accepted"
    n = await wait_until(lambda: conn.fetchval("SELECT count(*) FROM ocpp.device_model_variables"))
    assert n >= 15
    status, body = await _op(ocpp, "SetVariables", {"setVariableData": [{
        "component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}, "attributeValue": "30"}]})
    assert body["response"]["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert station.protocol.settings.meter_interval == 30
    stored = await conn.fetchval("SELECT value FROM ocpp.device_model_variables WHERE variable = 'TxUpdatedInterval'")
    assert stored == "30"
    status, body = await _op(ocpp, "SetVariables", {"setVariableData": [{
        "component": {"name": "EVSE"}, "variable": {"name": "Count"}, "attributeValue": "9"}]})
    assert body["response"]["setVariableResult"][0]["attributeStatus"] == "Rejected"  # read-only


async def test_remote_start_and_stop(ocpp, station, conn, wait_until):
    status, body = await _op(ocpp, "RequestStartTransaction", {"idToken": {"idToken": "SIMTAG", "type": "Central"},
                                                               "evseId": 2})
    assert status == 200 and body["response"]["status"] == "Accepted", body
    await station.wait_for(lambda c: c.transaction_ids[2] is not None)
    charger_tx_id = await wait_until(lambda: conn.fetchval("SELECT charger_tx_id FROM ocpp.transaction_ids"))
    status, body = await _op(ocpp, "RequestStopTransaction", {"transactionId": charger_tx_id})
    assert body["response"]["status"] == "Accepted"
    await wait_until(lambda: conn.fetchval("SELECT stop_reason FROM ocpp.transactions WHERE stop_timestamp IS NOT NULL"))
    assert await conn.fetchval("SELECT stop_reason FROM ocpp.transactions") == "Remote"


async def test_hard_reset_queue_is_replayed_after_boot(ocpp, station, conn, wait_until):
    assert station.start_session(1)
    await station.wait_for(lambda c: c.transaction_ids[1] is not None)
    boots = station.boot_count
    await station.reboot(hard=True)
    await station.wait_for(lambda c: c.boot_count > boots and c.connected and not c.queued_messages, timeout=15)
    tx = await wait_until(lambda: conn.fetchrow("SELECT * FROM ocpp.transactions WHERE stop_timestamp IS NOT NULL"))
    assert tx["stop_reason"] == "ImmediateReset"
    ended = await conn.fetchrow("SELECT offline FROM ocpp.transaction_events WHERE event_type = 'Ended'")
    assert ended["offline"] is True


async def test_mixed_fleet_each_charger_on_its_version(ocpp, pool, wait_until):
    from polaris.db.repos import charge_boxes
    from polaris.sim.fleet import FleetOptions, build_fleet

    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["MIX-0001", "MIX-0002", "MIX-0003"], CHARGER_KEY)
    fleet = build_fleet(FleetOptions(url=ocpp.ws_url, chargers=3, id_prefix="MIX-", password=CHARGER_KEY,
                                     auto_sessions=False, ocpp_versions=("2.0.1", "1.6")))
    try:
        for c in fleet:
            await c.start()
        versions = {cid: s.OCPP_VERSION for cid, s in ocpp.server.connections.items()}
        assert versions == {"MIX-0001": "2.0.1", "MIX-0002": "1.6", "MIX-0003": "2.0.1"}
        async with pool.acquire() as conn:
            stored = await conn.fetch("SELECT charge_box_id, ocpp_version FROM ocpp.charge_boxes "
                                      "WHERE charge_box_id LIKE 'MIX-%' ORDER BY 1")
        assert [r["ocpp_version"] for r in stored] == ["2.0.1", "1.6", "2.0.1"]
    finally:
        for c in fleet:
            await c.stop()
