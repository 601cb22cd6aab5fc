"""Admin API: an operator releases a session the billing sync held back.

Real parts end to end: the sync engine bills into the fake Lago over HTTP, holds what it
must, the operator acts through the admin API, and the next run bills exactly what was
decided.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from polaris.db.repos import charge_boxes, customers, id_tags
from polaris.sim.lago import FakeLago
from polaris.sync.lago import LagoClient
from polaris.sync.rating import final_id
from polaris.sync.worker import SyncEngine

API = "/api/admin/v1"


@pytest.fixture
async def lago() -> AsyncIterator[FakeLago]:
    fake = FakeLago()
    fake.add_subscription("sub_hold")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def engine(pool, settings, lago) -> AsyncIterator[SyncEngine]:
    client = LagoClient(lago.url, lago.api_key, timeout=2, backoff_base=0.01, backoff_cap=0.05, max_attempts=2)
    s = settings.model_copy(update={"LAGO_API_URL": lago.url, "LAGO_API_KEY": SecretStr(lago.api_key),
                                    "SYNC_LOOKBACK_MINUTES": 10_000_000})
    yield SyncEngine(pool, client, s)
    await client.aclose()


async def finished_session(pool, *, meter_start: int, meter_stop: int) -> int:
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT 1 FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-H'"):
            await charge_boxes.add_charge_boxes(conn, ["CB-H"], "charger-key-0123456789")
            await customers.add_customer(conn, "held@example.com", lago_subscription_id="sub_hold")
            await id_tags.add_id_tag(conn, "HELD1", customer_email="held@example.com")
        return await conn.fetchval(
            "INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start, "
            "stop_timestamp, meter_stop, stop_reason, stopped_by) SELECT id, 1, 'HELD1', '2026-01-01T10:00Z', $2, "
            "'2026-01-01T11:00Z', $3, 'Local', 'charger' FROM ocpp.charge_boxes WHERE charge_box_id = $1 RETURNING id",
            "CB-H", meter_start, meter_stop,
        )


async def unbillable(api, headers) -> dict[int, dict]:
    page = await (await api.get(f"{API}/sync/unbillable", headers=headers)).json()
    return {x["transaction_id"]: x for x in page["items"]}


async def test_an_operator_settles_an_anomaly_and_exactly_that_is_billed(api, pool, engine, lago, operator):
    h = operator.headers
    tx = await finished_session(pool, meter_start=9_000, meter_stop=1_000)  # register reset
    await engine.run()
    held = await unbillable(api, h)
    assert held[tx]["code"] == "anomaly" and "negative energy" in held[tx]["reason"]
    assert lago.wh_by_subscription() == {}

    # Wrong action, bad input: a clear answer, nothing changes.
    resp = await api.post(f"{API}/sync/unbillable/{tx}/retry", headers=h)
    assert resp.status == 409 and "held: anomaly" in (await resp.json())["message"]
    resp = await api.post(f"{API}/sync/unbillable/{tx}/settle", json={"energy_wh": -5}, headers=h)
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_input"
    resp = await api.post(f"{API}/sync/unbillable/{tx}/settle", json={}, headers=h)
    assert resp.status == 400
    assert (await api.post(f"{API}/sync/unbillable/99999/settle", json={"energy_wh": 1}, headers=h)).status == 404

    resp = await api.post(f"{API}/sync/unbillable/{tx}/settle", json={"energy_wh": 4_200}, headers=h)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["action"], body["energy_wh"]) == ("settled", 4_200) and "4.200 kWh" in body["message"]
    await engine.run()
    assert lago.wh_by_subscription() == {"sub_hold": 4_200}
    assert tx not in await unbillable(api, h)
    # Billed once: settling again is refused, and another run sends nothing more.
    resp = await api.post(f"{API}/sync/unbillable/{tx}/settle", json={"energy_wh": 9_999}, headers=h)
    assert resp.status == 409 and "not held" in (await resp.json())["message"]
    await engine.run()
    assert lago.wh_by_subscription() == {"sub_hold": 4_200}

    audit = await (await api.get(f"{API}/audit", params={"action": "sync.settle"}, headers=h)).json()
    (entry,) = audit["items"]
    assert (entry["actor_email"], entry["target_id"]) == (operator.email, str(tx))
    assert entry["after"] == {"energy_override_wh": 4_200} and entry["before"]["code"] == "anomaly"


async def test_events_lago_refused_are_sent_again_once_fixed(api, pool, engine, lago, operator):
    h = operator.headers
    tx = await finished_session(pool, meter_start=1_000, meter_stop=8_500)
    lago.reject[final_id(tx)] = {"properties": ["invalid_value"]}
    await engine.run()
    held = await unbillable(api, h)
    assert held[tx]["code"] == "invalid_event" and "invalid_value" in held[tx]["reason"]
    resp = await api.post(f"{API}/sync/unbillable/{tx}/settle", json={"energy_wh": 7_500}, headers=h)
    assert resp.status == 409

    # Retried before the cause is fixed: refused again, held again with Lago's reason.
    resp = await api.post(f"{API}/sync/unbillable/{tx}/retry", headers=h)
    assert resp.status == 200 and (await resp.json())["events"] == 1
    await engine.run()
    assert (await unbillable(api, h))[tx]["code"] == "invalid_event"
    assert lago.wh_by_subscription() == {}

    lago.reject.clear()  # the operator fixed the metric in Lago
    resp = await api.post(f"{API}/sync/unbillable/{tx}/retry", headers=h)
    assert resp.status == 200, await resp.text()
    assert "sent again" in (await resp.json())["message"]
    await engine.run()
    assert lago.wh_by_subscription() == {"sub_hold": 7_500}
    assert tx not in await unbillable(api, h)
    resp = await api.post(f"{API}/sync/unbillable/{tx}/retry", headers=h)
    assert resp.status == 409


async def test_releasing_holds_is_in_the_openapi_document(api):
    doc = await (await api.get(f"{API}/openapi.json")).json()
    assert "post" in doc["paths"][f"{API}/sync/unbillable/{{id}}/settle"]
    assert "post" in doc["paths"][f"{API}/sync/unbillable/{{id}}/retry"]
