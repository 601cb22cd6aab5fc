"""Fixtures for the console's tests: a real `polaris web` on a free port, seeded through the repos.

The console is driven with `App.run_test()` in the same event loop as the aiohttp test
server, so its httpx calls reach the real admin API over a real socket.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from polaris.config import Settings

# Snapshots and pilots must not depend on animation timing.
os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")

FROZEN_NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
ADMIN_EMAIL = "ops@example.com"
ADMIN_PASSWORD = "correct horse battery staple"


def frozen_clock() -> datetime:
    return FROZEN_NOW


@dataclass
class LiveWeb:
    """A running `polaris web` and what the test seeded into it."""

    url: str
    dsn: str
    settings: Settings
    paths: set[str] = field(default_factory=set)
    admin_email: str = ADMIN_EMAIL
    admin_password: str = ADMIN_PASSWORD
    pool: Any = None
    ocpp_ws_url: str = ""
    chargers: list = field(default_factory=list)

    async def add_chargers(self, ids: list[str], *, site: str | None = "Depot", description: str | None = None) -> None:
        """Register chargers through the same repository function the admin API uses."""
        from polaris.db.repos import charge_boxes

        async with self.pool.acquire() as conn:
            await charge_boxes.add_charge_boxes(conn, ids, CHARGER_KEY, site_name=site, description=description)

    async def connect_charger(self, charge_box_id: str, **kwargs: Any):
        """A simulated charger connected to the real OCPP server (registered first if needed)."""
        from polaris.db.repos import charge_boxes
        from polaris.sim.charger import SimulatedCharger

        async with self.pool.acquire() as conn:
            if await charge_boxes.get_charge_box(conn, charge_box_id) is None:
                await charge_boxes.add_charge_boxes(conn, [charge_box_id], CHARGER_KEY, site_name="Depot")
        kwargs.setdefault("id_tag", "TUI-TAG-1")
        kwargs.setdefault("auto_sessions", False)
        kwargs.setdefault("step_delay", 0.05)
        kwargs.setdefault("reconnect_max_delay", 0.5)
        kwargs.setdefault("seed", 1)
        charger = SimulatedCharger(self.ocpp_ws_url, charge_box_id, CHARGER_KEY, **kwargs)
        self.chargers.append(charger)
        await charger.start()
        return charger

    def require(self, method: str, path: str) -> None:
        """Skip (naming the endpoint) when the admin API does not serve it yet."""
        if f"{method.upper()} {path}" not in self.paths:
            pytest.skip(f"admin API has no {method.upper()} {path} yet (web-core helper)")

    async def token(self) -> str:
        """A bearer token through the real endpoint (what the login screen does)."""
        from polaris.tui.api_client import AdminClient

        async with AdminClient(self.url) as api:
            grant = await api.login(self.admin_email, self.admin_password)
        return grant.token


CHARGER_KEY = "tui-test-charger-key-0001"  # a valid AuthorizationKey (16-40 characters)


@pytest.fixture
async def live_web(settings: Settings, db_dsn: str) -> AsyncIterator[LiveWeb]:
    """The real stack on free ports: `polaris ocpp` (server + command API) and `polaris web`.

    Commands from the console go web -> the OCPP server's command API -> the charger, so a
    charger that is not connected answers 409 from the real OCPP server.
    """
    try:
        from polaris.services.app import app_factory
    except ImportError as exc:  # the web process has not landed in this checkout
        pytest.skip(f"polaris.services.app.app_factory is not available: {exc}")
    import httpx
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from polaris.db.pool import create_pool
    from polaris.db.repos import users
    from polaris.keys import hash_password
    from polaris.ocpp.api import create_app
    from polaris.ocpp.server import OcppServer

    pool = await create_pool(db_dsn, min_size=1, max_size=5)
    async with pool.acquire() as conn:
        await users.add_user(conn, ADMIN_EMAIL, "admin", password_hash=hash_password(ADMIN_PASSWORD), name="Ops")

    # The OCPP server's hooks are not needed here; point them at a closed port so a failed
    # hook falls back to the server's own decision (the documented behaviour).
    ocpp_settings = settings.model_copy(update={"WEB_INTERNAL_URL": "http://127.0.0.1:9"})
    ocpp = OcppServer(ocpp_settings, pool, instance="tui-test", response_timeout=5.0)
    await ocpp.start("127.0.0.1", 0)
    ocpp_api = web.AppRunner(create_app(ocpp), access_log=None)
    await ocpp_api.setup()
    site = web.TCPSite(ocpp_api, "127.0.0.1", 0)
    await site.start()
    api_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    web_settings = settings.model_copy(
        update={"SSE_TRANSPORT": "memory", "STEVE_BASE_URL": f"http://127.0.0.1:{api_port}"}
    )
    server = TestServer(app_factory(web_settings), host="127.0.0.1", port=0)
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    async with httpx.AsyncClient(base_url=url) as http:
        doc = (await http.get("/api/admin/v1/openapi.json")).json()
        paths = {f"{method.upper()} {path}" for path, ops in doc.get("paths", {}).items() for method in ops}
        # The SSE stream is routed outside the OpenAPI document: probe it (401 = it exists).
        if (await http.get("/api/admin/v1/events")).status_code == 401:
            paths.add("GET /api/admin/v1/events")
    live = LiveWeb(
        url=url, dsn=db_dsn, settings=web_settings, paths=paths, pool=pool,
        ocpp_ws_url=f"ws://127.0.0.1:{ocpp.port}/ocpp",
    )
    try:
        yield live
    finally:
        for charger in live.chargers:
            await charger.stop()
        await server.close()
        await ocpp_api.cleanup()
        await ocpp.close()
        await pool.close()


@pytest.fixture
def clock():
    """A frozen clock for the console ("5m ago" must not move between runs)."""
    return frozen_clock
