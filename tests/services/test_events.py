"""Live events: SSE streams over a real aiohttp server, replay from Postgres, both transports."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from aiohttp import web

from polaris.db.notify import CHARGER_EVENTS, TRANSACTION_EVENTS
from polaris.db.repos import charge_boxes, customers, id_tags
from polaris.services import live
from polaris.services.appkeys import PG_POOL, SETTINGS
from polaris.services.auth import AuthUser
from polaris.services.auth.middleware import set_user

ADMIN = AuthUser(id=1, email="admin@example.com", role="admin")
OPERATOR = AuthUser(id=2, email="op@example.com", role="operator")


def user_middleware(users: dict[str, AuthUser]):
    """Stands in for the auth middleware: `X-Test-User: <name>` picks the signed-in user."""

    @web.middleware
    async def middleware(request, handler):
        set_user(request, users.get(request.headers.get("X-Test-User", "")))
        return await handler(request)

    return middleware


def build_app(settings, pool, users) -> web.Application:
    app = web.Application(middlewares=[user_middleware(users)])
    app[SETTINGS] = settings
    app[PG_POOL] = pool
    live.setup(app)
    return app


class Sse:
    """A minimal SSE reader for tests: returns events as dicts, counts comment lines."""

    def __init__(self, resp) -> None:
        self.resp = resp
        self.comments: list[str] = []

    async def next(self, wait: float = 5.0) -> dict:
        return await asyncio.wait_for(self._next(), wait)

    async def _next(self) -> dict:
        fields: dict[str, str] = {}
        while True:
            line = (await self.resp.content.readline()).decode()
            if line == "":
                raise EOFError("stream closed")
            line = line.rstrip("\n")
            if line == "":
                if "data" in fields:
                    return {
                        "id": int(fields["id"]),
                        "event": fields.get("event"),
                        "data": json.loads(fields["data"]),
                    }
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(": ")
            fields[name] = value

    async def nothing_within(self, seconds: float) -> bool:
        try:
            await self.next(wait=seconds)
        except TimeoutError:
            return True
        return False


@pytest.fixture
async def world(pool):
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CB-1"], "charger-key-0123456789")
        alice = await customers.add_customer(conn, "alice@example.com", lago_subscription_id="s1")
        bob = await customers.add_customer(conn, "bob@example.com", lago_subscription_id="s2")
        await id_tags.add_id_tag(conn, "ALICE1", customer_email="alice@example.com")
    users = {
        "admin": ADMIN,
        "operator": OPERATOR,
        "alice": AuthUser(id=alice["user_id"], email="alice@example.com", role="customer", customer_id=alice["id"]),
        "bob": AuthUser(id=bob["user_id"], email="bob@example.com", role="customer", customer_id=bob["id"]),
        "nocustomer": AuthUser(id=9, email="x@example.com", role="customer"),
    }
    return {"alice": alice, "bob": bob, "users": users}


@pytest.fixture(params=["memory", "postgres"])
async def client(request, settings, pool, world, aiohttp_client):
    settings.SSE_TRANSPORT = request.param
    return await aiohttp_client(build_app(settings, pool, world["users"]))


async def open_stream(client, user: str, path: str = "/api/v1/events", last_event_id: int | None = None):
    headers = {"X-Test-User": user}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    resp = await client.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    stream = Sse(resp)
    if last_event_id is None:
        # The stream is subscribed once its first bytes arrive.
        assert await stream.nothing_within(0.05)
    return stream


def bus_of(client) -> live.EventBus:
    return client.server.app[live.EVENT_BUS]


async def test_streams_need_the_right_user(client):
    assert (await client.get("/api/v1/events")).status == 401
    assert (await client.get("/api/v1/events", headers={"X-Test-User": "nocustomer"})).status == 403
    assert (await client.get("/api/admin/v1/events")).status == 401
    resp = await client.get("/api/admin/v1/events", headers={"X-Test-User": "alice"})
    assert resp.status == 403
    assert (await resp.json())["error"] == "forbidden"


async def test_a_customer_sees_only_their_own_events(client, world):
    alice = await open_stream(client, "alice")
    bob = await open_stream(client, "bob")
    admin = await open_stream(client, "operator", "/api/admin/v1/events")
    bus = bus_of(client)
    a_topic = live.customer_topic(world["alice"]["id"])
    await bus.publish(["admin", a_topic], "session.meter", {"energy_kwh": 1.5})
    got = await alice.next()
    assert (got["event"], got["data"]) == ("session.meter", {"energy_kwh": 1.5})
    assert (await admin.next())["id"] == got["id"]
    assert await bob.nothing_within(0.3)
    await bus.publish(["admin"], "charger.status", {"status": "Faulted"})
    assert (await admin.next())["event"] == "charger.status"
    assert await alice.nothing_within(0.3)


async def test_last_event_id_replays_what_was_missed_then_continues_live(client, world):
    bus = bus_of(client)
    topic = live.customer_topic(world["alice"]["id"])
    other = live.customer_topic(world["bob"]["id"])
    first = await bus.publish([topic], "session.meter", {"n": 1})
    await bus.publish([topic], "session.meter", {"n": 2})
    await bus.publish([other], "session.meter", {"n": "bob's"})
    await bus.publish([topic], "session.meter", {"n": 3})

    stream = await open_stream(client, "alice", last_event_id=first.id)
    assert [(await stream.next())["data"]["n"] for _ in range(2)] == [2, 3]
    await bus.publish([topic], "session.meter", {"n": 4})
    arrived = await stream.next()
    assert arrived["data"]["n"] == 4
    assert await stream.nothing_within(0.2)  # nothing delivered twice

    # A garbage Last-Event-ID is ignored (no replay), not an error.
    fresh = await open_stream(client, "alice", last_event_id=None)
    resp = await client.get("/api/v1/events", headers={"X-Test-User": "alice", "Last-Event-ID": "abc"})
    assert resp.status == 200
    resp.close()
    assert await fresh.nothing_within(0.1)


async def test_heartbeat_comments_keep_an_idle_stream_open(settings, pool, world, monkeypatch, aiohttp_client):
    monkeypatch.setattr(live.bus, "HEARTBEAT_SECONDS", 0.1)
    client = await aiohttp_client(build_app(settings, pool, world["users"]))
    stream = await open_stream(client, "alice")
    assert await stream.nothing_within(0.35)
    assert stream.comments.count("ping") >= 2


async def test_closed_streams_unsubscribe(client, world):
    bus = bus_of(client)
    stream = await open_stream(client, "alice")
    assert bus.subscriber_count == 1
    stream.resp.close()
    await bus.publish([live.customer_topic(world["alice"]["id"])], "x", {})
    for _ in range(100):
        if bus.subscriber_count == 0:
            break
        await asyncio.sleep(0.02)
    assert bus.subscriber_count == 0


async def test_a_subscriber_that_falls_behind_is_cut_off_and_can_replay(settings, pool, world, monkeypatch):
    monkeypatch.setattr(live.bus, "QUEUE_MAX", 3)
    bus = live.EventBus(pool, transport="memory")
    await bus.start()
    sub = bus.subscribe(["admin"])
    for i in range(5):
        await bus.publish(["admin"], "x", {"i": i})
    assert sub.closed
    items = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    assert [e.data["i"] for e in items[:-1]] == [0, 1, 2]
    replayed = [e.data["i"] async for e in bus.replay(items[2].id, ["admin"])]
    assert replayed == [3, 4]
    await bus.close()


async def test_postgres_transport_shares_events_between_instances(settings, pool, world, aiohttp_client):
    settings.SSE_TRANSPORT = "postgres"
    one = await aiohttp_client(build_app(settings, pool, world["users"]))
    two = await aiohttp_client(build_app(settings, pool, world["users"]))
    on_two = await open_stream(two, "admin", "/api/admin/v1/events")
    on_one = await open_stream(one, "admin", "/api/admin/v1/events")
    event = await bus_of(one).publish(["admin"], "charger.status", {"status": "Available"})
    assert (await on_two.next())["id"] == event.id
    assert (await on_one.next())["id"] == event.id
    # A payload too big for NOTIFY travels by id and is read back from the table.
    big = await bus_of(two).publish(["admin"], "big", {"blob": "x" * 10_000})
    got = await on_one.next()
    assert got["id"] == big.id
    assert len(got["data"]["blob"]) == 10_000


async def test_events_dedupe_by_key(pool):
    bus = live.EventBus(pool, transport="memory")
    await bus.start()
    assert await bus.publish(["admin"], "x", {}, dedupe_key="k") is not None
    assert await bus.publish(["admin"], "x", {}, dedupe_key="k") is None
    await bus.close()


async def test_shutdown_ends_open_streams(settings, pool, world, aiohttp_client):
    settings.SSE_TRANSPORT = "memory"
    client = await aiohttp_client(build_app(settings, pool, world["users"]))
    stream = await open_stream(client, "alice")
    await client.server.app.shutdown()
    with pytest.raises(EOFError):
        await stream.next(wait=2)


# ------------------------------------------------------------------ OCPP ingest


async def _open_tx(pool) -> int:
    return await pool.fetchval(
        """
        INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start, customer_id)
        SELECT id, 1, 'alice1', $1, 5000, (SELECT customer_id FROM app.id_tags WHERE lower(id_tag) = 'alice1')
        FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-1'
        RETURNING id
        """,
        datetime.now(UTC),
    )


async def _notify(pool, channel: str, payload: dict) -> None:
    await pool.execute("SELECT pg_notify($1, $2)", channel, json.dumps(payload))


async def _leader_ready(*clients) -> None:
    for _ in range(200):
        if any(c.server.app[live.OCPP_INGEST].listener.listening.is_set() for c in clients):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no instance took the OCPP ingest lead")


async def test_ocpp_notifications_become_events_once_with_two_instances(
    settings, pool, world, monkeypatch, aiohttp_client):
    monkeypatch.setattr(live.ingest, "INGEST_LOCK_RETRY_SECONDS", 0.1)
    settings.SSE_TRANSPORT = "postgres"
    seen: list[tuple[str, int | None]] = []

    async def reaction(app, notice):
        seen.append((notice.channel, notice.session["customer_id"] if notice.session else None))

    apps = [build_app(settings, pool, world["users"]) for _ in range(2)]
    for app in apps:
        live.add_reaction(app, reaction)
    one, two = [await aiohttp_client(app) for app in apps]
    await _leader_ready(one, two)
    alice = await open_stream(two, "alice")
    admin = await open_stream(one, "admin", "/api/admin/v1/events")

    tx = await _open_tx(pool)
    await _notify(pool, TRANSACTION_EVENTS, {
        "event": "started", "transaction_id": tx, "charge_box_id": "CB-1", "connector_id": 1, "id_tag": "ALICE1",
    })
    started = await alice.next()
    assert started["event"] == "session.started"
    assert started["data"]["transaction_id"] == tx
    assert (await admin.next())["id"] == started["id"]

    # A status on the connector of a running session reaches its customer too.
    await _notify(pool, CHARGER_EVENTS, {
        "event": "status", "charge_box_id": "CB-1", "connector_id": 1, "status": "SuspendedEV",
    })
    status = await alice.next()
    assert (status["event"], status["data"]["status"], status["data"]["transaction_id"]) == (
        "charger.status", "SuspendedEV", tx,
    )
    # A charger-wide event is for admins only.
    await _notify(pool, CHARGER_EVENTS, {"event": "disconnected", "charge_box_id": "CB-1"})
    assert (await admin.next())["event"] == "charger.status"
    assert (await admin.next())["event"] == "charger.disconnected"
    assert await alice.nothing_within(0.3)

    await pool.execute(
        "UPDATE ocpp.transactions SET stop_timestamp = now(), meter_stop = 17345 WHERE id = $1", tx
    )
    await _notify(pool, TRANSACTION_EVENTS, {
        "event": "stopped", "transaction_id": tx, "charge_box_id": "CB-1", "connector_id": 1, "id_tag": "ALICE1",
    })
    stopped = await alice.next()
    assert stopped["event"] == "session.stopped"
    assert stopped["data"]["energy_kwh"] == 12.345

    count = await pool.fetchval("SELECT count(*) FROM app.events WHERE type LIKE 'session.%'")
    assert count == 2  # stored once although two instances run
    assert seen.count((TRANSACTION_EVENTS, world["alice"]["id"])) == 2  # reactions ran once per notice
    assert len(seen) == 4


async def test_ingest_lead_passes_to_another_instance(settings, pool, world, monkeypatch, aiohttp_client):
    monkeypatch.setattr(live.ingest, "INGEST_LOCK_RETRY_SECONDS", 0.1)
    settings.SSE_TRANSPORT = "postgres"
    one = await aiohttp_client(build_app(settings, pool, world["users"]))
    await _leader_ready(one)
    two = await aiohttp_client(build_app(settings, pool, world["users"]))
    await asyncio.sleep(0.3)
    assert not two.server.app[live.OCPP_INGEST].listener.listening.is_set()
    await one.close()
    await _leader_ready(two)
    admin = await open_stream(two, "admin", "/api/admin/v1/events")
    await _notify(pool, CHARGER_EVENTS, {"event": "connected", "charge_box_id": "CB-1"})
    assert (await admin.next())["event"] == "charger.connected"


async def test_sync_runs_reach_the_admin_stream(client, pool, monkeypatch):
    monkeypatch.setattr(live.ingest, "SYNC_POLL_SECONDS", 0.1)
    # The fixture's ingest was built with the default poll; build a fresh one.
    app = client.server.app
    await app[live.OCPP_INGEST].close()
    ingest = live.OcppIngest(app)
    ingest.start(app[SETTINGS].database_url)
    try:
        admin = await open_stream(client, "admin", "/api/admin/v1/events")
        run = await pool.fetchval("INSERT INTO billing.sync_runs (tier) VALUES ('active') RETURNING id")
        got = await admin.next()
        assert (got["event"], got["data"]["id"], got["data"]["status"]) == ("sync.run", run, "running")
        await pool.execute(
            "UPDATE billing.sync_runs SET status = 'succeeded', finished_at = now(), kwh_sent = 3.5 WHERE id = $1",
            run,
        )
        got = await admin.next()
        assert (got["data"]["status"], got["data"]["kwh_sent"]) == ("succeeded", 3.5)
    finally:
        await ingest.close()


async def test_the_listener_survives_losing_its_connection(settings, pool, world, aiohttp_client):
    """Postgres restarts or a proxy drops the LISTEN connection: events published meanwhile
    still reach open streams once the listener is back (it catches up from the table)."""
    settings.SSE_TRANSPORT = "postgres"
    client = await aiohttp_client(build_app(settings, pool, world["users"]))
    stream = await open_stream(client, "admin", "/api/admin/v1/events")
    killed = await pool.fetchval(
        """
        SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
        WHERE datname = current_database() AND query ILIKE 'LISTEN%polaris_events%'
        """
    )
    assert killed == 1
    await asyncio.sleep(0.1)
    missed = await bus_of(client).publish(["admin"], "charger.status", {"status": "Unavailable"})
    got = await stream.next(wait=10)
    assert got["id"] == missed.id
    later = await bus_of(client).publish(["admin"], "charger.status", {"status": "Available"})
    assert (await stream.next())["id"] == later.id
