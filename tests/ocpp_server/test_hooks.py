"""Pre-authorize and meter-values hooks against a local receiver that checks each signature."""

from __future__ import annotations

import asyncio
import time

import pytest

from polaris.db.repos import id_tags
from polaris.db.repos.customers import add_customer
from polaris.ocpp.hooks import Hooks


@pytest.fixture
async def tag(conn) -> str:
    await add_customer(conn, "driver@example.com")
    await id_tags.add_id_tag(conn, "TAG1", customer_email="driver@example.com")
    return "TAG1"


async def test_pre_authorize_is_signed_and_carries_the_contract_fields(client, hooks_web, tag):
    before = int(time.time() * 1000)
    info = (await client.ok("Authorize", {"idTag": tag}))["idTagInfo"]
    assert info["status"] == "Accepted"
    await client.ok("StartTransaction", {"connectorId": 2, "idTag": tag, "meterStart": 0,
                                         "timestamp": "2026-01-01T00:00:00Z"})
    assert hooks_web.bad_signatures == 0
    first, second = hooks_web.preauth
    assert first == {"idTag": "TAG1", "chargeBoxId": "CB-0001", "connectorId": None,
                     "isStartTx": False, "ts": first["ts"], "nonce": first["nonce"]}
    assert before <= first["ts"] <= int(time.time() * 1000)
    assert len(first["nonce"]) == 22 and first["nonce"] != second["nonce"], "16 random bytes, base64url"
    assert (second["connectorId"], second["isStartTx"]) == (2, True)


async def test_override_blocked_wins_over_our_accepted(client, hooks_web, tag, conn):
    hooks_web.override = "BLOCKED"
    assert (await client.ok("Authorize", {"idTag": tag}))["idTagInfo"]["status"] == "Blocked"
    start = await client.ok("StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": 0,
                                                 "timestamp": "2026-01-01T00:00:00Z"})
    assert start["idTagInfo"]["status"] == "Blocked"
    # The session is recorded all the same: the charger may already be delivering energy.
    assert await conn.fetchval("SELECT id_tag_status FROM ocpp.transactions") == "Blocked"


async def test_slow_hook_falls_back_to_our_decision_within_budget(client, hooks_web, tag):
    hooks_web.override = "BLOCKED"
    hooks_web.delay = 1.0
    t0 = time.monotonic()
    info = (await client.ok("Authorize", {"idTag": tag}))["idTagInfo"]
    assert info["status"] == "Accepted"
    assert time.monotonic() - t0 < 0.6  # 200 ms budget plus the database work


async def test_absent_web_process_falls_back(ocpp_settings, pool, charger, tag, open_charger, server_factory):
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ocpp_settings.model_copy(update={"WEB_INTERNAL_URL": f"http://127.0.0.1:{port}"})
    server, runner, running = await server_factory(settings, pool)
    try:
        c = await open_charger(running.ws_url)
        assert (await c.ok("Authorize", {"idTag": tag}))["idTagInfo"]["status"] == "Accepted"
        await c.ws.close()
        # On-call sees the failing hook on /metrics.
        text = server.metrics.render().decode()
        assert 'polaris_ocpp_hook_failures_total{hook="pre-authorize",reason="error"} 1.0' in text
    finally:
        await runner.cleanup()
        await server.close()


async def test_wrong_key_is_refused_by_the_receiver(settings, hooks_web):
    wrong = settings.model_copy(update={"WEB_INTERNAL_URL": hooks_web.url,
                                        "STEVE_PREAUTH_HMAC_KEY": type(settings.STEVE_API_KEY)("x" * 40)})
    hooks = Hooks(wrong)
    await hooks.start()
    try:
        assert await hooks.pre_authorize("TAG1", "CB-0001", 1, True) is None
    finally:
        await hooks.close()
    assert hooks_web.bad_signatures == 1 and hooks_web.preauth == []
    assert hooks.failures == {("pre-authorize", "refused"): 1}


async def test_meter_values_hook_posts_signed_samples_without_blocking(client, hooks_web, ocpp, tag):
    start = await client.ok("StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": 0,
                                                 "timestamp": "2026-01-01T00:00:00Z"})
    tx = start["transactionId"]
    hooks_web.delay = 0  # the meter-values handler of the receiver is instant anyway
    await client.ok("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": "2026-01-01T00:01:00Z", "sampledValue": [
            {"value": "1500", "measurand": "Energy.Active.Import.Register", "unit": "Wh",
             "context": "Sample.Periodic", "location": "Outlet"},
            {"value": 11.2, "measurand": "Power.Active.Import", "unit": "kW", "phase": "L1"}]}]})
    await asyncio.wait_for(hooks_web.meter_event.wait(), 5)
    await ocpp.server.hooks.drained()
    assert hooks_web.bad_signatures == 0
    (body,) = hooks_web.meter_values
    assert body["chargeBoxId"] == "CB-0001" and body["transactionPk"] == tx and body["connectorId"] == 1
    # Stamped when sent (the window the web checks), whatever the samples' own time.
    assert abs(body["ts"] - time.time() * 1000) < 5000 and len(body["nonce"]) == 22
    assert body["timestamp"].startswith("2026-01-01T00:01:00")
    assert body["samples"] == [
        {"value": "1500", "measurand": "Energy.Active.Import.Register", "unit": "Wh",
         "context": "Sample.Periodic", "location": "Outlet"},
        {"value": "11.2", "measurand": "Power.Active.Import", "unit": "kW", "phase": "L1"}]


async def test_meter_values_key_falls_back_to_preauth_key(settings, hooks_web):
    fallback = settings.model_copy(update={"WEB_INTERNAL_URL": hooks_web.url, "STEVE_METERVALUE_HMAC_KEY": None})
    hooks_web.meter_key = hooks_web.preauth_key
    hooks = Hooks(fallback)
    await hooks.start()
    try:
        hooks.meter_values("CB-0001", 1, 1, "2026-01-01T00:00:00+00:00", [{"value": "1"}])
        await hooks.drained()
    finally:
        await hooks.close()
    assert hooks_web.bad_signatures == 0 and len(hooks_web.meter_values) == 1


async def test_meter_values_queue_is_bounded_and_never_waits(settings, monkeypatch):
    from polaris.ocpp import hooks as hooks_module

    monkeypatch.setattr(hooks_module, "METER_QUEUE_SIZE", 3)
    # Nobody listens: posts fail, but enqueueing must stay instant and bounded.
    hooks = Hooks(settings.model_copy(update={"WEB_INTERNAL_URL": "http://127.0.0.1:9"}))
    await hooks.start()
    for w in hooks._workers:  # hold the workers so the queue fills
        w.cancel()
    t0 = time.monotonic()
    for _ in range(10):
        hooks.meter_values("CB-0001", 1, 1, "2026-01-01T00:00:00+00:00", [{"value": "1"}])
    assert time.monotonic() - t0 < 0.05
    assert hooks.dropped == 7
    await hooks.close()
