"""Chargers as SteVe admits them (security profiles, its id charset, ids ignoring case, unknown
ids), and admission under attack: Pending keys, rival claimants, back-off, negative cache,
connection and message caps."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import quote

import pytest
from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus

from polaris.db.repos import charge_boxes

KEY = "charger-key-0123456789"
STEVE = "/steve/websocket/CentralSystemService"


async def _refusal(coro) -> tuple[int, str, Headers]:
    with pytest.raises(InvalidStatus) as exc:
        await coro
    r = exc.value.response
    return r.status_code, r.body.decode(errors="replace"), r.headers


def steve_url(running) -> str:
    return running.ws_url.replace("/ocpp", STEVE)


async def _server(server_factory, ocpp_settings, pool, **settings):
    server, runner, running = await server_factory(ocpp_settings.model_copy(update=settings), pool)
    return server, runner, running


@pytest.fixture
async def make_server(server_factory, ocpp_settings, pool):
    started = []

    async def make(**settings):
        server, runner, running = await _server(server_factory, ocpp_settings, pool, **settings)
        started.append((server, runner))
        return running

    yield make
    for server, runner in started:
        await runner.cleanup()
        await server.close()


# --- chargers as SteVe admits them -----------------------------------------------------------


async def test_profile_0_charger_connects_by_id_alone_only_where_enabled(ocpp, conn, open_charger, make_server):
    await charge_boxes.add_charge_boxes(conn, ["OPEN-1"], None, security_profile=0)
    c = await open_charger(steve_url(ocpp), "OPEN-1", password=None)
    assert (await c.boot())["status"] == "Accepted"
    await c.ws.close()
    # Any password a profile-0 charger sends is ignored, as SteVe does.
    c = await open_charger(steve_url(ocpp), "OPEN-1", password="whatever-it-sends-here")
    await c.ws.close()
    # Not at /ocpp/ unless the operator enables it there.
    status, body, _ = await _refusal(open_charger(ocpp.ws_url, "OPEN-1", password=None))
    assert status == 401 and "security profile 0" in body and STEVE in body
    running = await make_server(OCPP_PROFILE0_PATHS=f"/ocpp/,{STEVE}/")
    c = await open_charger(running.ws_url, "OPEN-1", password=None)
    await c.ws.close()


async def test_charge_box_ids_match_ignoring_case(ocpp, conn, open_charger):
    await charge_boxes.add_charge_boxes(conn, ["CB-Mixed"], KEY)
    c = await open_charger(ocpp.ws_url, "cb-mixed", KEY)
    assert (await c.boot())["status"] == "Accepted"
    assert list(ocpp.server.connections) == ["CB-Mixed"]  # the stored spelling
    command = asyncio.ensure_future(ocpp.api("POST", "/api/v1/operations/ClearCache", {"chargeBoxId": "CB-MIXED"}))
    call = await c.recv()
    assert call[2] == "ClearCache"
    await c.send_raw(f'[3, "{call[1]}", {{"status": "Accepted"}}]')
    status, answer = await command
    assert status == 200, answer
    assert await conn.fetchval("SELECT charge_box_id FROM ocpp.message_journal") == "CB-Mixed"
    await c.ws.close()
    with pytest.raises(Exception, match="already exists"):
        await charge_boxes.add_charge_boxes(conn, ["cb-MIXED"], KEY)


async def test_steve_charset_accepted_and_others_refused_with_400(ocpp, conn, open_charger):
    odd = "Station 7#A:ü"
    await charge_boxes.add_charge_boxes(conn, [odd], KEY)
    ws = await connect(f"{ocpp.ws_url}/{quote(odd)}", subprotocols=["ocpp1.6"], additional_headers={
        "Authorization": "Basic " + base64.b64encode(f"{odd}:{KEY}".encode()).decode()})
    await ws.close()
    for bad, why in (("CB(1)", "may not contain"), ("CB%3D1", "may not contain"), ("%20CB1", "no spaces"),
                     ("CB1%20", "no spaces"), ("A/B", "may not contain"), ("x" * 256, "1 to 255")):
        status, body, _ = await _refusal(connect(f"{ocpp.ws_url}/{bad}", subprotocols=["ocpp1.6"]))
        assert (status, why in body) == (400, True), (bad, body)


async def test_ocpp15_gets_a_refusal_naming_what_we_speak(ocpp, charger, open_charger):
    status, body, _ = await _refusal(open_charger(ocpp.ws_url, subprotocols=["ocpp1.5"]))
    assert status == 400 and "OCPP 1.6J" in body and "ocpp1.6" in body and "ocpp1.5" in body


async def test_unknown_charger_accepted_mode_registers_like_steve_auto_registration(make_server, conn, open_charger):
    running = await make_server(OCPP_UNKNOWN_CHARGERS="accepted")
    c = await open_charger(running.ws_url, "AUTO-1", KEY)
    assert (await c.boot())["status"] == "Accepted"
    await c.ws.close()
    c = await open_charger(steve_url(running), "AUTO-0", password=None)
    assert (await c.boot())["status"] == "Accepted"
    await c.ws.close()
    rows = {r["charge_box_id"]: r for r in await conn.fetch(
        "SELECT charge_box_id, registration_status, security_profile FROM ocpp.charge_boxes")}
    assert {k: (r["registration_status"], r["security_profile"]) for k, r in rows.items()} == {
        "AUTO-1": ("Accepted", 1), "AUTO-0": ("Accepted", 0)}


# --- admission under attack (issue 15, item 3) -----------------------------------------------


async def test_pending_key_buys_nothing_until_accepted(make_server, conn, open_charger):
    running = await make_server(OCPP_UNKNOWN_CHARGERS="pending")
    c = await open_charger(running.ws_url, "NEW-1", KEY)
    assert (await c.boot())["status"] == "Pending"
    assert "currentTime" in await c.ok("Heartbeat", {})
    for action, payload in (
        ("StartTransaction", {"connectorId": 1, "idTag": "STOLEN", "meterStart": 0,
                              "timestamp": "2026-01-01T10:00:00Z"}),
        ("Authorize", {"idTag": "STOLEN"}),
        ("MeterValues", {"connectorId": 1, "meterValue": [
            {"timestamp": "2026-01-01T10:00:00Z", "sampledValue": [{"value": "1"}]}]}),
    ):
        reply = await c.call(action, payload)
        assert reply[0] == 4 and reply[2] == "SecurityError", reply
    assert await conn.fetchval("SELECT count(*) FROM ocpp.transactions") == 0
    assert await conn.fetchval("SELECT count(*) FROM ocpp.meter_values") == 0
    await c.ws.close()


async def test_second_claimant_of_a_pending_charger_is_refused_and_reported(make_server, conn, open_charger):
    running = await make_server(OCPP_UNKNOWN_CHARGERS="pending")
    first = await open_charger(running.ws_url, "NEW-1", KEY)
    await first.boot()
    running.server.admission.forget()
    status, body, _ = await _refusal(open_charger(running.ws_url, "NEW-1", "another-key-0123456789"))
    assert status == 401 and "claimed" in body
    row = await conn.fetchrow("SELECT rival_claims, rival_claim_at FROM ocpp.charge_boxes WHERE charge_box_id = 'NEW-1'")
    assert row["rival_claims"] == 1 and row["rival_claim_at"] is not None
    await first.ws.close()


async def test_failed_credentials_per_id_back_off_then_401_without_a_lookup(make_server, conn, open_charger):
    await charge_boxes.add_charge_boxes(conn, ["CB-1", "CB-2"], KEY)
    running = await make_server(OCPP_AUTH_FAILURES_BEFORE_BACKOFF=3, TRUSTED_PROXIES="127.0.0.1")
    admission = running.server.admission
    # CB-2 connected before: its verified credentials are cached.
    c = await open_charger(running.ws_url, "CB-2", KEY)
    await c.ws.close()
    for i in range(3):
        # Spread over addresses (behind our proxy) so only the per-id limit applies.
        guess = f"guess-number-{i:010d}"
        assert (await _refusal(open_charger(running.ws_url, "CB-1", guess, headers=xff(i))))[0] == 401
        assert (await _refusal(open_charger(running.ws_url, "CB-2", guess, headers=xff(i))))[0] == 401
    lookups = admission.lookups
    status, body, headers = await _refusal(open_charger(running.ws_url, "CB-1", KEY, headers=xff(9)))
    assert status == 401 and "too many failed attempts" in body and int(headers["Retry-After"]) >= 1
    assert admission.lookups == lookups  # answered without the database
    # The real charger verified before still gets in during the back-off, from the cache.
    c = await open_charger(running.ws_url, "CB-2", KEY, headers=xff(9))
    await c.ws.close()
    assert admission.lookups == lookups


async def test_failed_credentials_per_address_and_unknown_ids_cached(make_server, conn, open_charger):
    await charge_boxes.add_charge_boxes(conn, ["CB-1"], KEY)
    running = await make_server(OCPP_AUTH_FAILURES_BEFORE_BACKOFF=4, TRUSTED_PROXIES="127.0.0.1")
    admission = running.server.admission
    assert (await _refusal(open_charger(running.ws_url, "SCAN-1", KEY)))[0] == 404
    lookups = admission.lookups
    assert (await _refusal(open_charger(running.ws_url, "scan-1", KEY)))[0] == 404
    assert admission.lookups == lookups  # the unknown id was remembered
    for cid in ("SCAN-2", "SCAN-3"):
        assert (await _refusal(open_charger(running.ws_url, cid, KEY)))[0] == 404
    # Four failures from this address: now even a right key waits, with no look-up.
    lookups = admission.lookups
    status, body, headers = await _refusal(open_charger(running.ws_url, "CB-1", KEY))
    assert status == 401 and "from 127.0.0.1" in body and "Retry-After" in headers
    assert admission.lookups == lookups
    # Another client behind our proxy (X-Forwarded-For from a trusted peer) has its own budget.
    c = await open_charger(running.ws_url, "CB-1", KEY, headers=xff(1))
    await c.ws.close()


async def test_connections_per_address_are_capped(make_server, conn, open_charger):
    await charge_boxes.add_charge_boxes(conn, ["CB-1", "CB-2", "CB-3"], KEY)
    running = await make_server(OCPP_MAX_CONNECTIONS_PER_ADDRESS=2)
    a = await open_charger(running.ws_url, "CB-1", KEY)
    b = await open_charger(running.ws_url, "CB-2", KEY)
    status, body, headers = await _refusal(open_charger(running.ws_url, "CB-3", KEY))
    assert status == 429 and "OCPP_MAX_CONNECTIONS_PER_ADDRESS" in body and headers["Retry-After"]
    await a.ws.close()
    await asyncio.sleep(0.2)
    c = await open_charger(running.ws_url, "CB-3", KEY)
    for x in (b, c):
        await x.ws.close()


async def test_messages_over_the_rate_get_callerror_not_a_crash(make_server, charger, open_charger, capsys):
    running = await make_server(OCPP_MAX_MESSAGES_PER_SECOND=2)  # bursts of 10
    c = await open_charger(running.ws_url)
    replies = [await c.call("Heartbeat", {}) for _ in range(25)]
    refused = [r for r in replies if r[0] == 4]
    assert refused and all(r[2] == "GenericError" and "rate limit" in r[3] for r in refused)
    assert len(replies) - len(refused) <= 13  # the burst and what refilled meanwhile
    assert "charger over the message rate" in "".join(capsys.readouterr())
    await asyncio.sleep(1.1)
    assert (await c.call("Heartbeat", {}))[0] == 3  # the connection is fine
    await c.ws.close()


def xff(n: int) -> dict:
    """Connect as client 10.9.0.n behind our proxy (TRUSTED_PROXIES=127.0.0.1 in the test); the left hop is the
    client's own claim and never believed."""
    return {"X-Forwarded-For": f"203.0.113.7, 10.9.0.{n}"}


async def test_a_rotated_key_is_accepted_at_once_not_after_the_cache_expires(make_server, conn, open_charger):
    # The key endpoint stores the new key once the charger accepted it; the charger then
    # reconnects with it within seconds, while our cache still holds the old one.
    await charge_boxes.add_charge_boxes(conn, ["CB-1"], KEY)
    running = await make_server()
    c = await open_charger(running.ws_url, "CB-1", KEY)
    await c.ws.close()
    new_key = "rotated-key-0123456789"
    assert await charge_boxes.set_charger_key(conn, "CB-1", new_key)
    c = await open_charger(running.ws_url, "CB-1", new_key)
    await c.ws.close()
    # And the old key is refused now, cache or not.
    assert (await _refusal(open_charger(running.ws_url, "CB-1", KEY)))[0] == 401
