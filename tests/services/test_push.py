"""Push: device registration over HTTP, and delivery through aioapns to a local fake APNs
(HTTP/2 over TLS with a trustme certificate, JWT checked with the key's public half)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
import uuid

import jwt
import pytest
import trustme
from aioapns import connection as apns_connection
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded
from pydantic import SecretStr

from polaris.db.notify import CHARGER_EVENTS, TRANSACTION_EVENTS
from polaris.db.repos import charge_boxes, customers, devices, id_tags
from polaris.services import live, push
from polaris.services.appkeys import PG_POOL, SETTINGS
from polaris.services.auth import AuthUser
from polaris.services.auth.middleware import set_user

TOPIC = "com.example.polaris"
TEAM = "TEAM123456"
KEY_ID = "KEY1234567"


def tok(ch: str) -> str:
    return ch * 64


# ------------------------------------------------------------------ fake APNs


class FakeApnsProtocol(asyncio.Protocol):
    def __init__(self, server: FakeApns) -> None:
        self.server = server
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams: dict[int, dict] = {}

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, RequestReceived):
                self.streams[event.stream_id] = {"headers": dict(event.headers), "body": b""}
            elif isinstance(event, DataReceived):
                self.streams[event.stream_id]["body"] += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self.answer(event.stream_id, self.streams.pop(event.stream_id))
        self.transport.write(self.conn.data_to_send())

    def answer(self, stream_id: int, req: dict) -> None:
        status, reason = self.server.decide(req)
        headers = [(":status", str(status)), ("apns-id", req["headers"].get("apns-id", str(uuid.uuid4())))]
        if status == 200:
            self.conn.send_headers(stream_id, headers, end_stream=True)
            return
        body = json.dumps({"reason": reason, **({"timestamp": int(time.time() * 1000)} if status == 410 else {})})
        self.conn.send_headers(stream_id, headers + [("content-type", "application/json")])
        self.conn.send_data(stream_id, body.encode(), end_stream=True)


class FakeApns:
    """Answers like Apple: 200, or an error status with {"reason": ...}. Checks the JWT and topic."""

    def __init__(self, public_key) -> None:
        self.public_key = public_key
        self.behaviour: dict[str, list[tuple[int, str]]] = {}
        self.delivered: list[tuple[str, dict]] = []
        self.requests = 0

    def decide(self, req: dict) -> tuple[int, str]:
        self.requests += 1
        headers = req["headers"]
        token = headers[":path"].rsplit("/", 1)[-1]
        auth = headers.get("authorization", "")
        try:
            claims = jwt.decode(auth.removeprefix("bearer "), self.public_key, algorithms=["ES256"])
            assert jwt.get_unverified_header(auth.removeprefix("bearer "))["kid"] == KEY_ID
            assert claims["iss"] == TEAM
        except (jwt.PyJWTError, AssertionError, KeyError):
            return 403, "InvalidProviderToken"
        if headers.get("apns-topic") != TOPIC:
            return 400, "BadTopic"
        script = self.behaviour.get(token)
        status, reason = script.pop(0) if script else (200, "")
        if status == 200:
            self.delivered.append((token, json.loads(req["body"])))
        return status, reason


@pytest.fixture
def apns_key():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key, base64.b64encode(pem).decode()


@pytest.fixture
async def fake_apns(apns_key, monkeypatch):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(["h2"])
    fake = FakeApns(apns_key[0].public_key())
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FakeApnsProtocol(fake), "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    # Point aioapns at the fake: Apple's host names and port are class constants.
    monkeypatch.setattr(apns_connection.APNsProductionClientProtocol, "APNS_SERVER", "localhost")
    monkeypatch.setattr(apns_connection.APNsDevelopmentClientProtocol, "APNS_SERVER", "localhost")
    monkeypatch.setattr(apns_connection.APNsTLSClientProtocol, "APNS_PORT", port)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    fake.client_ssl_context = client_ctx
    yield fake
    server.close()


# ------------------------------------------------------------------ app


@pytest.fixture
async def world(pool):
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CB-1"], "charger-key-0123456789", description="Main street #1")
        alice = await customers.add_customer(conn, "alice@example.com", lago_subscription_id="s1")
        bob = await customers.add_customer(conn, "bob@example.com", lago_subscription_id="s2")
        await id_tags.add_id_tag(conn, "ALICE1", customer_email="alice@example.com")
    return {
        "alice": AuthUser(id=alice["user_id"], email="alice@example.com", role="customer", customer_id=alice["id"]),
        "bob": AuthUser(id=bob["user_id"], email="bob@example.com", role="customer", customer_id=bob["id"]),
        "admin": AuthUser(id=99, email="admin@example.com", role="admin"),
    }


def build_app(settings, pool, users, ssl_context=None) -> web.Application:
    @web.middleware
    async def as_user(request, handler):
        set_user(request, users.get(request.headers.get("X-Test-User", "")))
        return await handler(request)

    app = web.Application(middlewares=[as_user])
    app[SETTINGS] = settings
    app[PG_POOL] = pool
    if ssl_context is not None:
        app[push.APNS_SSL_CONTEXT] = ssl_context
    live.setup(app)
    push.setup(app)
    return app


@pytest.fixture
def apns_settings(settings, apns_key, monkeypatch):
    settings.SSE_TRANSPORT = "memory"
    settings.APNS_KEY_ID = KEY_ID
    settings.APNS_TEAM_ID = TEAM
    settings.APNS_TOPIC = TOPIC
    settings.APNS_KEY_BASE64 = SecretStr(apns_key[1])
    monkeypatch.setattr(push, "BACKOFF_BASE", 0.05)
    monkeypatch.setattr(push.PushSender, "poll_seconds", 0.2)
    monkeypatch.setattr(live.ingest, "INGEST_LOCK_RETRY_SECONDS", 0.1)
    return settings


# ------------------------------------------------------------------ device registration


async def test_device_registration_validates_and_scopes_to_the_customer(settings, pool, world, aiohttp_client):
    settings.SSE_TRANSPORT = "memory"
    client = await aiohttp_client(build_app(settings, pool, world))
    alice, bob = {"X-Test-User": "alice"}, {"X-Test-User": "bob"}

    assert (await client.post("/api/v1/devices", json={"token": tok("a")})).status == 401
    resp = await client.post("/api/v1/devices", json={"token": tok("a")}, headers={"X-Test-User": "admin"})
    assert resp.status == 403
    for bad in ({"token": "xyz"}, {}, {"token": tok("a"), "sandbox": "yes"}, {"token": tok("a"), "platform": "android"}):
        resp = await client.post("/api/v1/devices", json=bad, headers=alice)
        assert resp.status == 400, bad
        assert (await resp.json())["error"] == "invalid_body"
    resp = await client.post("/api/v1/devices", data=b"{nope", headers=alice)
    assert (await resp.json())["error"] == "invalid_json"

    resp = await client.post("/api/v1/devices", json={"token": tok("A")}, headers=alice)
    assert resp.status == 201
    assert (await resp.json())["token"] == tok("a")  # stored lower-case
    assert (await client.post("/api/v1/devices", json={"token": tok("a")}, headers=alice)).status == 200

    # Bob cannot remove Alice's device; Alice can.
    assert (await client.delete(f"/api/v1/devices/{tok('a')}", headers=bob)).status == 404
    assert (await client.delete(f"/api/v1/devices/{tok('a')}", headers=alice)).status == 204
    assert (await client.delete(f"/api/v1/devices/{tok('a')}", headers=alice)).status == 404
    # The body form, and a phone that changes accounts.
    await client.post("/api/v1/devices", json={"token": tok("b")}, headers=alice)
    assert (await client.post("/api/v1/devices", json={"token": tok("b")}, headers=bob)).status == 200
    async with pool.acquire() as conn:
        assert [d["token"] for d in await devices.devices_of_user(conn, world["bob"].id)] == [tok("b")]
        assert await devices.devices_of_user(conn, world["alice"].id) == []
    resp = await client.request("DELETE", "/api/v1/devices", json={"token": tok("b")}, headers=bob)
    assert resp.status == 204


async def test_missing_or_broken_apns_config_never_blocks_boot(settings, pool, world, aiohttp_client):
    settings.SSE_TRANSPORT = "memory"
    client = await aiohttp_client(build_app(settings, pool, world))
    assert push.PUSH_SENDER not in client.server.app
    settings.APNS_KEY_ID, settings.APNS_TEAM_ID, settings.APNS_TOPIC = KEY_ID, TEAM, TOPIC
    settings.APNS_KEY_BASE64 = SecretStr(base64.b64encode(b"not a key").decode())
    client = await aiohttp_client(build_app(settings, pool, world))
    assert push.PUSH_SENDER not in client.server.app
    assert (await client.post("/api/v1/devices", json={"token": tok("c")}, headers={"X-Test-User": "alice"})).status == 201


# ------------------------------------------------------------------ delivery


async def _open_tx(pool) -> int:
    return await pool.fetchval(
        """
        INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start, customer_id)
        SELECT id, 1, 'ALICE1', now(), 1000, (SELECT customer_id FROM app.id_tags WHERE id_tag = 'ALICE1')
        FROM ocpp.charge_boxes RETURNING id
        """
    )


async def _wait(predicate, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_session_notices_reach_apns_and_dead_tokens_are_pruned(
    apns_settings, pool, world, fake_apns, aiohttp_client
):
    client = await aiohttp_client(build_app(apns_settings, pool, world, fake_apns.client_ssl_context))
    ingest = client.server.app[live.OCPP_INGEST]
    await _wait(lambda: _true(ingest.listener.listening.is_set()))
    alice = {"X-Test-User": "alice"}
    good, gone, bad, flaky = tok("1"), tok("2"), tok("3"), tok("4")
    for t in (good, gone, bad, flaky):
        assert (await client.post("/api/v1/devices", json={"token": t}, headers=alice)).status == 201
    fake_apns.behaviour = {
        gone: [(410, "Unregistered")],
        bad: [(400, "BadDeviceToken")],
        flaky: [(503, "ServiceUnavailable"), (500, "InternalServerError")],
    }
    tx = await _open_tx(pool)
    payload = {"event": "started", "transaction_id": tx, "charge_box_id": "CB-1", "connector_id": 1, "id_tag": "ALICE1"}
    await pool.execute("SELECT pg_notify($1, $2)", TRANSACTION_EVENTS, json.dumps(payload))

    async def delivered_to_good_and_flaky():
        return {t for t, _ in fake_apns.delivered} == {good, flaky}

    await _wait(delivered_to_good_and_flaky)
    token, message = fake_apns.delivered[0]
    assert message["aps"]["alert"]["title"] == "Charging started"
    assert message["transaction_id"] == tx

    async with pool.acquire() as conn:
        left = {d["token"] for d in await devices.devices_of_user(conn, world["alice"].id)}
    assert left == {good, flaky}  # 410 and BadDeviceToken pruned
    rows = await pool.fetch("SELECT token, status, attempts FROM app.push_outbox ORDER BY id")
    by_token = {r["token"]: (r["status"], r["attempts"]) for r in rows}
    assert by_token[good] == ("sent", 1)
    assert by_token[flaky] == ("sent", 3)  # two 5xx, then through
    assert by_token[gone][0] == by_token[bad][0] == "dropped"

    # A fault on the connector of the running session, then the stop: one push each per device.
    await pool.execute(
        "SELECT pg_notify($1, $2)", CHARGER_EVENTS,
        json.dumps({"event": "status", "charge_box_id": "CB-1", "connector_id": 1, "status": "Faulted",
                    "error_code": "GroundFailure"}),
    )

    async def fault_sent():
        return sum(1 for _, m in fake_apns.delivered if m["kind"] == "charger-fault") == 2

    await _wait(fault_sent)
    await pool.execute("UPDATE ocpp.transactions SET stop_timestamp = now(), meter_stop = 8500 WHERE id = $1", tx)
    stop = {**payload, "event": "stopped"}
    await pool.execute("SELECT pg_notify($1, $2)", TRANSACTION_EVENTS, json.dumps(stop))
    await pool.execute("SELECT pg_notify($1, $2)", TRANSACTION_EVENTS, json.dumps(stop))  # repeated NOTIFY

    async def stop_sent():
        return sum(1 for _, m in fake_apns.delivered if m["kind"] == "session-stopped") >= 2

    await _wait(stop_sent)
    await asyncio.sleep(0.3)
    stops = [m for _, m in fake_apns.delivered if m["kind"] == "session-stopped"]
    assert len(stops) == 2  # once per device, not once per NOTIFY
    assert stops[0]["aps"]["alert"]["body"] == "7.50 kWh at Main street #1."
    fault = next(m for _, m in fake_apns.delivered if m["kind"] == "charger-fault")
    assert "GroundFailure" in fault["aps"]["alert"]["body"]


async def test_a_wrong_key_is_retried_not_dropped(apns_settings, pool, world, fake_apns, monkeypatch):
    other = ec.generate_private_key(ec.SECP256R1())
    monkeypatch.setattr(fake_apns, "public_key", other.public_key())  # Apple does not know our key
    async with pool.acquire() as conn:
        await devices.register_device(conn, world["alice"].id, tok("5"))
        await devices.queue_push_to_user(conn, world["alice"].id, kind="test", payload={"aps": {}}, dedupe_key="k")
    sender = push.PushSender(pool, apns_settings, ssl_context=fake_apns.client_ssl_context)
    try:
        assert await sender.run_once()
    finally:
        await sender.close()
    row = await pool.fetchrow("SELECT status, last_error FROM app.push_outbox")
    assert row["status"] == "pending" and "InvalidProviderToken" in row["last_error"]
    async with pool.acquire() as conn:
        assert len(await devices.devices_of_user(conn, world["alice"].id)) == 1  # the token is fine


async def _true(value: bool) -> bool:
    return value
