"""Fixtures for the OCPP server: a real server on a free port, a real hook receiver, raw clients."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect

from polaris.config import Settings
from polaris.db.repos import charge_boxes
from polaris.ocpp.api import create_app
from polaris.ocpp.hooks import Hooks
from polaris.ocpp.server import OcppServer

CHARGER_ID = "CB-0001"
CHARGER_KEY = "charger-key-0123456789"  # 22 characters: a valid AuthorizationKey


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class HookReceiver:
    """A local stand-in for the web process's hook endpoints that checks every signature."""

    preauth_key: str
    meter_key: str
    url: str = ""
    preauth: list[dict] = field(default_factory=list)
    meter_values: list[dict] = field(default_factory=list)
    bad_signatures: int = 0
    override: str | None = None
    delay: float = 0.0
    meter_event: asyncio.Event = field(default_factory=asyncio.Event)

    def _verified(self, key: str, body: bytes, signature: str | None) -> bool:
        expected = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
        ok = signature is not None and hmac.compare_digest(expected, signature)
        if not ok:
            self.bad_signatures += 1
        return ok

    async def handle_preauth(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._verified(self.preauth_key, body, request.headers.get("X-Signature")):
            return web.json_response({"error": "bad signature"}, status=401)
        self.preauth.append(json.loads(body))
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response({"override": self.override})

    async def handle_meter_values(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._verified(self.meter_key, body, request.headers.get("X-Signature")):
            return web.json_response({"error": "bad signature"}, status=401)
        self.meter_values.append(json.loads(body))
        self.meter_event.set()
        return web.json_response({"ok": True})


@pytest.fixture
async def hooks_web(settings: Settings) -> AsyncIterator[HookReceiver]:
    receiver = HookReceiver(
        preauth_key=settings.STEVE_PREAUTH_HMAC_KEY.get_secret_value(),
        meter_key=settings.STEVE_METERVALUE_HMAC_KEY.get_secret_value(),
    )
    app = web.Application()
    app.router.add_post("/api/ocpp/pre-authorize", receiver.handle_preauth)
    app.router.add_post("/api/ocpp/meter-values", receiver.handle_meter_values)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}"
    yield receiver
    await runner.cleanup()


@pytest.fixture
def ocpp_settings(settings: Settings, hooks_web: HookReceiver) -> Settings:
    # Never the default 127.0.0.1:8000: another process may be a real web server there. Tests
    # send messages back to back: the per-charger rate limit has its own tests.
    return settings.model_copy(update={"WEB_INTERNAL_URL": hooks_web.url, "OCPP_MAX_MESSAGES_PER_SECOND": 10_000})


@pytest.fixture
async def charger(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, [CHARGER_ID], CHARGER_KEY)
    return CHARGER_ID


@dataclass
class Running:
    server: OcppServer
    ws_url: str  # ws://127.0.0.1:PORT/ocpp
    api_url: str
    api_auth: str

    async def api(self, method: str, path: str, body: Any = None, *, auth: str | None = None,
                  raw: bytes | None = None) -> tuple[int, Any]:
        headers = {"Authorization": auth if auth is not None else self.api_auth}
        async with aiohttp.ClientSession() as s:
            kwargs: dict[str, Any] = {"headers": headers}
            if raw is not None:
                kwargs["data"] = raw
            elif body is not None:
                kwargs["json"] = body
            async with s.request(method, self.api_url + path, **kwargs) as resp:
                text = await resp.text()
                try:
                    return resp.status, json.loads(text)
                except ValueError:
                    return resp.status, text


async def start_server(
    settings: Settings, pool: asyncpg.Pool, *, ssl_context: Any = None, **kw: Any
) -> tuple[OcppServer, web.AppRunner, Running]:
    kw.setdefault("instance", "test")
    server = OcppServer(settings, pool, hooks=Hooks(settings), **kw)
    await server.start("127.0.0.1", 0, ssl_context=ssl_context)
    runner = web.AppRunner(create_app(server), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    running = Running(
        server=server,
        ws_url=f"{'wss' if ssl_context else 'ws'}://127.0.0.1:{server.port}/ocpp",
        api_url=f"http://127.0.0.1:{api_port}",
        api_auth=basic(settings.STEVE_API_USERNAME, settings.STEVE_API_KEY.get_secret_value()),
    )
    return server, runner, running


@pytest.fixture
async def ocpp(ocpp_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Running]:
    server, runner, running = await start_server(ocpp_settings, pool, response_timeout=2.0)
    yield running
    await runner.cleanup()
    await server.close()


_ids = itertools.count(1)


class RawClient:
    """A charger speaking raw OCPP-J frames, so tests can send anything."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.incoming: asyncio.Queue[list] = asyncio.Queue()

    async def send_raw(self, text: str | bytes) -> None:
        await self.ws.send(text)

    async def recv(self, wait: float = 5) -> list:
        async with asyncio.timeout(wait):
            return json.loads(await self.ws.recv())

    async def call(self, action: str, payload: Any, *, unique_id: str | None = None) -> list:
        """Send a CALL; return the reply frame [3, id, payload] or [4, id, code, desc, details]."""
        unique_id = unique_id or f"m{next(_ids)}"
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        reply = await self.recv()
        assert reply[1] == unique_id, reply
        return reply

    async def ok(self, action: str, payload: Any) -> dict:
        reply = await self.call(action, payload)
        assert reply[0] == 3, reply
        return reply[2]

    async def boot(self) -> dict:
        return await self.ok("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})


async def open_client(ws_url: str, charge_box_id: str = CHARGER_ID, password: str | None = CHARGER_KEY,
                      *, subprotocols: list[str] | None = None, headers: dict | None = None, **kw: Any) -> RawClient:
    headers = {**({"Authorization": basic(charge_box_id, password)} if password is not None else {}),
               **(headers or {})}
    ws = await connect(
        f"{ws_url}/{charge_box_id}",
        subprotocols=["ocpp1.6"] if subprotocols is None else (subprotocols or None),  # type: ignore[arg-type]
        additional_headers=headers,
        open_timeout=5,
        **kw,
    )
    return RawClient(ws)


@pytest.fixture
def open_charger():
    """Factory: open_charger(ws_url, charge_box_id=CHARGER_ID, password=CHARGER_KEY, ...)."""
    return open_client


@pytest.fixture
def server_factory():
    """Factory: start_server(settings, pool, **OcppServer kwargs) -> (server, api runner, Running)."""
    return start_server


@pytest.fixture
async def sim(ocpp: Running, charger: str, conn: asyncpg.Connection):
    """A simulated charger (two connectors, no sessions of its own) with a customer's card SIMTAG."""
    from polaris.db.repos import id_tags
    from polaris.db.repos.customers import add_customer
    from polaris.sim.charger import SimulatedCharger

    await add_customer(conn, "driver@example.com")
    await id_tags.add_id_tag(conn, "SIMTAG", customer_email="driver@example.com")
    c = SimulatedCharger(ocpp.ws_url, charger, CHARGER_KEY, id_tag="SIMTAG", connectors=2, auto_sessions=False,
                         step_delay=0.05, heartbeat_interval=3600, seed=1)
    await c.start()
    yield c
    await c.stop()


@pytest.fixture
async def client(ocpp: Running, charger: str) -> AsyncIterator[RawClient]:
    c = await open_client(ocpp.ws_url)
    yield c
    await c.ws.close()


@pytest.fixture
def wait_until():
    return _wait_until


async def _wait_until(predicate, within: float = 5.0, interval: float = 0.02):
    """Poll an async or sync predicate until it returns something truthy."""
    async with asyncio.timeout(within):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval)
