"""Fixtures for the web process: the real app (app_factory) on real Postgres, users, tokens.

Other test files in this folder may define their own `client` fixture; these names
(`web_settings`, `web_app`, `api`, `make_user`, `staff`) are the app-factory ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from polaris.db.repos import users
from polaris.keys import hash_password
from polaris.services.app import app_factory

PASSWORD = "correct horse battery staple"
# argon2 with the library defaults costs ~50 ms per hash; hash once per test run.
_HASH: dict[str, str] = {}


def password_hash(password: str = PASSWORD) -> str:
    if password not in _HASH:
        _HASH[password] = hash_password(password)
    return _HASH[password]


@pytest.fixture
def web_settings(settings):
    """Test settings for the web process (in-memory event transport).

    STEVE_BASE_URL points at a closed port unless a test starts the fake command API.
    """
    return settings.model_copy(update={"SSE_TRANSPORT": "memory", "STEVE_BASE_URL": "http://127.0.0.1:9"})


@pytest.fixture
def web_app(web_settings):
    return app_factory(web_settings, pool_size=5)


@pytest.fixture
async def api(aiohttp_client, web_app):
    """A test client of the whole app (requests go to 127.0.0.1: both sides in local mode)."""
    return await aiohttp_client(web_app)


@pytest.fixture
def make_user(pool):
    async def make(email: str, role: str = "admin", password: str | None = PASSWORD, **kw):
        async with pool.acquire() as conn:
            return await users.add_user(
                conn, email, role, password_hash=password_hash(password) if password else None, **kw
            )

    return make


@dataclass
class Staff:
    email: str
    id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def staff(api, make_user):
    """Create a staff user and a bearer token for them: `await staff("admin")`."""

    async def make(role: str = "admin", email: str | None = None) -> Staff:
        email = email or f"{role}@example.com"
        row = await make_user(email, role)
        resp = await api.post("/api/admin/v1/auth/token", json={"email": email, "password": PASSWORD})
        assert resp.status == 201, await resp.text()
        return Staff(email=email, id=row["id"], token=(await resp.json())["token"])

    return make


@pytest.fixture
async def admin(staff) -> Staff:
    return await staff("admin")


@pytest.fixture
async def operator(staff) -> Staff:
    return await staff("operator")


class FakeCommandApi:
    """A local stand-in for the OCPP server's command API, speaking its HTTP contract.

    `answers[(operation, charge_box_id)]` is the charger's reply; `offline` ids get 409,
    `slow` ids get 504, as the real OCPP server does. Every call is recorded.
    """

    def __init__(self, username: str, password: str):
        self.username, self.password = username, password
        self.calls: list[tuple[str, dict]] = []
        self.answers: dict[tuple[str, str], dict] = {}
        self.offline: set[str] = set()
        self.slow: set[str] = set()

    async def handle(self, request):
        import base64

        from aiohttp import web

        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "unauthorized", "message": "bad credentials"}, status=401)
        op = request.match_info["operation"]
        body = await request.json()
        self.calls.append((op, body))
        cid = body.get("chargeBoxId")
        if cid in self.offline:
            return web.json_response({"error": "charger_offline", "message": f"charger {cid} is not connected"}, status=409)
        if cid in self.slow:
            return web.json_response({"error": "timeout", "message": f"charger {cid} did not answer within 30 s"}, status=504)
        answer = self.answers.get((op, cid), {"status": "Accepted"})
        return web.json_response({"chargeBoxId": cid, "operation": op, "response": answer})


@pytest.fixture
async def command_api(aiohttp_server, web_settings):
    """The fake command API on a free port; web settings point STEVE_BASE_URL at it."""
    from aiohttp import web

    fake = FakeCommandApi(web_settings.STEVE_API_USERNAME, web_settings.STEVE_API_KEY.get_secret_value())
    app = web.Application()
    app.router.add_post("/api/v1/operations/{operation}", fake.handle)
    server = await aiohttp_server(app)
    web_settings.STEVE_BASE_URL = str(server.make_url("")).rstrip("/")
    return fake


# ------------------------------------------------------------------ the real OCPP server beside the web


class Charger:
    """A charger on a real WebSocket: answers the central system's calls, sends its own.

    `answers[action]` is the CALLRESULT payload it gives (default `{"status": "Accepted"}`);
    every call it received is in `received`.
    """

    def __init__(self, ws):
        import asyncio

        self.ws = ws
        self.received: list[tuple[str, dict]] = []
        self.answers: dict[str, dict] = {}
        self._waiting: dict[str, asyncio.Future] = {}
        self._next = 0
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        import json

        from websockets.exceptions import ConnectionClosed

        try:
            async for text in self.ws:
                frame = json.loads(text)
                if frame[0] == 2:
                    self.received.append((frame[2], frame[3]))
                    answer = self.answers.get(frame[2], {"status": "Accepted"})
                    await self.ws.send(json.dumps([3, frame[1], answer]))
                elif frame[1] in self._waiting:
                    self._waiting.pop(frame[1]).set_result(frame)
        except ConnectionClosed:
            pass

    async def call(self, action: str, payload: dict) -> dict:
        """Send a CALL and return the CALLRESULT payload (fails on a CALLERROR)."""
        import asyncio
        import json

        self._next += 1
        unique_id = f"c{self._next}"
        self._waiting[unique_id] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        async with asyncio.timeout(5):
            frame = await self._waiting[unique_id]
        assert frame[0] == 3, frame
        return frame[2]

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


@dataclass
class OcppStack:
    """The web app (`api`, a test client) and the OCPP server with its command API, wired together."""

    api: object
    server: object
    ws_url: str
    api_url: str

    async def charger(self, charge_box_id: str, password: str) -> Charger:
        """Connect a charger (HTTP Basic) and boot it."""
        import base64

        from websockets.asyncio.client import connect

        auth = "Basic " + base64.b64encode(f"{charge_box_id}:{password}".encode()).decode()
        ws = await connect(f"{self.ws_url}/{charge_box_id}", subprotocols=["ocpp1.6"],
                           additional_headers={"Authorization": auth}, open_timeout=5)
        charger = Charger(ws)
        boot = await charger.call("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"})
        assert boot["status"] == "Accepted", boot
        return charger


@pytest.fixture
async def ocpp_stack(aiohttp_client, web_settings, pool, unused_tcp_port_factory):
    """`polaris ocpp` (WebSocket + command API) and `polaris web` in-process, each calling the other."""
    from aiohttp import web

    from polaris.ocpp.api import create_app
    from polaris.ocpp.server import OcppServer

    web_port = unused_tcp_port_factory()
    ocpp_settings = web_settings.model_copy(update={"WEB_INTERNAL_URL": f"http://127.0.0.1:{web_port}"})
    server = OcppServer(ocpp_settings, pool, instance="stack-test", response_timeout=5.0)
    await server.start("127.0.0.1", 0)
    runner = web.AppRunner(create_app(server), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    settings = web_settings.model_copy(update={"STEVE_BASE_URL": api_url})
    client = await aiohttp_client(app_factory(settings, pool_size=5), server_kwargs={"port": web_port})
    try:
        yield OcppStack(api=client, server=server, ws_url=f"ws://127.0.0.1:{server.port}/ocpp", api_url=api_url)
    finally:
        await runner.cleanup()
        await server.close()
