"""Fixtures for the customer portal: the real web app on real Postgres, a browser-like client
(cookies, CSRF tokens read from the pages, the customer Host header), customers with cards
and a cached Lago plan, and — for starting and stopping — a real OCPP server with a
simulated charger wired to the web app both ways (command API and hooks).
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from polaris.config import Settings
from polaris.db.repos import billing, charge_boxes, customers, id_tags
from polaris.services.app import app_factory

CHARGER_KEY = "charger-key-0123456789"
PLAN = {
    "code": "ev_standard",
    "name": "EV Standard",
    "amount_currency": "EUR",
    "amount_cents": 0,
    "interval": "monthly",
    "charges": [{"billable_metric_code": "ev_charging_kwh", "charge_model": "standard",
                 "properties": {"amount": "0.35"}}],
}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A test client that behaves like a browser on the customer host."""

    def __init__(self, client: TestClient, host: str):
        self.client = client
        self.host = host
        self.html = ""

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"Host": self.host, **(extra or {})}

    async def get(self, path: str, *, headers: dict[str, str] | None = None, **kw: Any):
        resp = await self.client.get(path, headers=self._headers(headers), allow_redirects=False, **kw)
        body = await resp.text()
        if resp.content_type == "text/html":
            self.html = body
        return resp, body

    async def follow(self, path: str, **kw: Any):
        """GET, following redirects on the customer host."""
        resp, body = await self.get(path, **kw)
        for _ in range(5):
            if resp.status not in (302, 303):
                break
            resp, body = await self.get(resp.headers["Location"])
        return resp, body

    @property
    def csrf(self) -> str:
        match = CSRF.search(self.html)
        assert match, "no CSRF token on the last page"
        return match.group(1)

    async def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
                   headers: dict[str, str] | None = None):
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        resp = await self.client.post(path, data=form, headers=self._headers(headers), allow_redirects=False)
        body = await resp.text()
        if resp.content_type == "text/html":
            self.html = body
        return resp, body

    async def api(self, method: str, path: str, *, json: Any = None, token: str | None = None,
                  headers: dict[str, str] | None = None):
        extra = dict(headers or {})
        if token:
            extra["Authorization"] = f"Bearer {token}"
        resp = await self.client.request(method, path, json=json, headers=self._headers(extra))
        try:
            body = await resp.json()
        except Exception:
            body = await resp.text()
        return resp, body


@pytest.fixture
def portal_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"SSE_TRANSPORT": "memory"})


@pytest.fixture
async def browser(aiohttp_client, portal_settings: Settings) -> Browser:
    client = await aiohttp_client(app_factory(portal_settings, pool_size=5))
    return Browser(client, portal_settings.customer_host)


@pytest.fixture
async def other_browser(browser: Browser) -> AsyncIterator[Browser]:
    """A second browser (its own cookies) on the same app as `browser`."""
    session = aiohttp.ClientSession(
        base_url=str(browser.client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    yield Browser(session, browser.host)  # type: ignore[arg-type]
    await session.close()


@dataclass
class Customer:
    id: int
    user_id: int
    email: str
    card_id: int
    id_tag: str


@pytest.fixture
def make_customer(pool: asyncpg.Pool):
    async def make(email: str = "ada@example.com", *, subscription: str | None = "sub-ada",
                   id_tag: str | None = "CARD-ADA", plan: bool = True) -> Customer:
        async with pool.acquire() as conn:
            row = await customers.add_customer(conn, email, name="Ada", lago_subscription_id=subscription)
            card_id = 0
            if id_tag:
                card_id = (await id_tags.add_id_tag(conn, id_tag, customer_email=email))["id"]
            if subscription and plan:
                await billing.save_lago_plan(conn, PLAN, "ev_charging_kwh")
                await billing.save_lago_subscription(
                    conn, subscription, {"status": "active", "plan_code": PLAN["code"]}
                )
        return Customer(row["id"], row["user_id"], row["email"], card_id, id_tag or "")

    return make


@pytest.fixture
async def make_charger(pool: asyncpg.Pool):
    async def make(charge_box_id: str = "CB-PORTAL-1", *, connected: bool = True,
                   statuses: dict[int, str] | None = None) -> asyncpg.Record:
        async with pool.acquire() as conn:
            await charge_boxes.add_charge_boxes(
                conn, [charge_box_id], CHARGER_KEY, description="Car park", site_name="Harbour",
                site_address="1 Quay Street",
            )
            pk = await conn.fetchval("SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = $1", charge_box_id)
            await conn.execute("UPDATE ocpp.charge_boxes SET connected = $2 WHERE id = $1", pk, connected)
            for cid, status in (statuses or {1: "Available"}).items():
                await conn.execute(
                    "INSERT INTO ocpp.connectors (charge_box_pk, connector_id, status, status_at) "
                    "VALUES ($1, $2, $3, now())",
                    pk, cid, status,
                )
            return await conn.fetchrow("SELECT * FROM ocpp.charge_boxes WHERE id = $1", pk)

    return make


async def last_link(pool: asyncpg.Pool, to: str) -> str:
    """The sign-in link in the newest mail queued for `to` (what `polaris admin outbox` shows)."""
    async with pool.acquire() as conn:
        body = await conn.fetchval(
            "SELECT text FROM app.email_outbox WHERE to_address = $1 AND category = 'magic-link' "
            "ORDER BY id DESC LIMIT 1", to
        )
    assert body, f"no mail queued for {to}"
    match = re.search(r"https?://\S+/auth/link/[A-Za-z0-9_-]+", body)
    assert match, body
    return match.group(0)


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


async def sign_in(browser: Browser, pool: asyncpg.Pool, email: str) -> None:
    await browser.get("/signin")
    resp, _ = await browser.post("/signin", {"email": email})
    assert resp.status == 200
    link = path_of(await last_link(pool, email))
    resp, _ = await browser.get(link)
    assert resp.status == 200
    resp, _ = await browser.post(link)
    assert resp.status == 303, resp.status


@pytest.fixture
def signed_in(pool):
    async def do(browser: Browser, email: str) -> None:
        await sign_in(browser, pool, email)

    return do


# ------------------------------------------------------------------ web + OCPP + simulator


@dataclass
class Stack:
    browser: Browser
    ws_url: str
    web_url: str
    settings: Settings


@pytest.fixture
async def stack(aiohttp_client, settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    """The web app and a real OCPP server (with its command API) that call each other."""
    from polaris.ocpp.api import create_app
    from polaris.ocpp.server import OcppServer

    api_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    api_sock.bind(("127.0.0.1", 0))
    api_port = api_sock.getsockname()[1]
    web_settings = settings.model_copy(
        update={"SSE_TRANSPORT": "memory", "STEVE_BASE_URL": f"http://127.0.0.1:{api_port}"}
    )
    client = await aiohttp_client(app_factory(web_settings, pool_size=5))
    web_url = str(client.make_url("")).rstrip("/")
    ocpp_settings = settings.model_copy(update={"WEB_INTERNAL_URL": web_url})
    server = OcppServer(ocpp_settings, pool, instance="portal-test", response_timeout=5.0)
    await server.start("127.0.0.1", 0)
    runner = web.AppRunner(create_app(server), access_log=None)
    await runner.setup()
    await web.SockSite(runner, api_sock).start()
    yield Stack(Browser(client, web_settings.customer_host), f"ws://127.0.0.1:{server.port}/ocpp", web_url,
                web_settings)
    await runner.cleanup()
    await server.close()


async def start_sim(stack: Stack, pool: asyncpg.Pool, charge_box_id: str):
    """A simulated charger on the stack's OCPP server, once the server has recorded it connected."""
    from polaris.sim.charger import SimulatedCharger

    sim = SimulatedCharger(stack.ws_url, charge_box_id, CHARGER_KEY, id_tag="SIM-OWN", auto_sessions=False,
                           meter_interval=1, step_delay=0.1, session_seconds=3600)
    await sim.start()
    # The server records connection state in batches (every 100 ms): wait until it has.
    await wait_until(lambda: pool.fetchval(
        "SELECT connected FROM ocpp.charge_boxes WHERE charge_box_id = $1", charge_box_id))
    return sim


async def wait_until(predicate, within: float = 10.0, interval: float = 0.1):
    async with asyncio.timeout(within):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval)


@pytest.fixture
def add_session(pool: asyncpg.Pool):
    """Record a session as the OCPP server would: start, meter readings every minute, stop."""
    from datetime import UTC, datetime, timedelta

    from polaris.db.repos import meter_values, transactions

    async def add(charger: asyncpg.Record, id_tag: str, *, kwh: float = 5.0, running: bool = False,
                  connector_id: int = 1, minutes: int = 30) -> int:
        start = datetime.now(UTC) - timedelta(minutes=minutes + 1)
        meter_start = 1_000_000
        async with pool.acquire() as conn:
            res = await transactions.start_transaction(
                conn, charge_box_pk=charger["id"], charge_box_id=charger["charge_box_id"],
                connector_id=connector_id, id_tag=id_tag, id_tag_status="Accepted",
                start_timestamp=start, meter_start=meter_start,
            )
            tx = res.transaction_id
            samples = []
            for m in range(1, minutes + 1):
                wh = meter_start + kwh * 1000 * m / minutes
                samples.append(meter_values.Sample(start + timedelta(minutes=m), str(int(wh)), wh,
                                                   "Energy.Active.Import.Register", "Wh", None,
                                                   "Sample.Periodic", None, None))
            samples.append(meter_values.Sample(start + timedelta(minutes=minutes), "7400", 7400.0,
                                               "Power.Active.Import", "W", None, "Sample.Periodic", None, None))
            await meter_values.insert_meter_values(conn, charger["id"], connector_id, tx, samples)
            if not running:
                await transactions.stop_transaction(
                    conn, charge_box_pk=charger["id"], charge_box_id=charger["charge_box_id"],
                    transaction_id=tx, id_tag=id_tag, stop_timestamp=start + timedelta(minutes=minutes),
                    meter_stop=int(meter_start + kwh * 1000), reason="EVDisconnected", transaction_data=None,
                    payload={},
                )
        return tx

    return add
