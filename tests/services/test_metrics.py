"""/metrics of the web and the OCPP server: internal listeners only, METRICS_TOKEN, figures cached.

The web process's public port (behind Caddy on the customer and admin hostnames) has no
/metrics; its internal listener serves /metrics and nothing else. The OCPP server's metrics
stay on its internal command API port. Both ask for METRICS_TOKEN when it is set.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from pydantic import SecretStr

from polaris.services.app import app_factory

TOKEN = "metrics-token-0123456789abcdef0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def web_settings(web_settings, unused_tcp_port):
    """The app-factory settings with a metrics token and a free internal port."""
    return web_settings.model_copy(update={"METRICS_TOKEN": SecretStr(TOKEN), "WEB_METRICS_PORT": unused_tcp_port})


@pytest.fixture
async def scrape(aiohttp_client, web_settings):
    """The whole app with its internal listener on 127.0.0.1; `scrape(path, headers)` asks that listener."""
    public = await aiohttp_client(app_factory(web_settings, metrics_host="127.0.0.1"))
    base = f"http://127.0.0.1:{web_settings.WEB_METRICS_PORT}"
    http = aiohttp.ClientSession()

    async def get(path: str = "/metrics", headers: dict | None = AUTH) -> tuple[int, str]:
        async with http.get(base + path, headers=headers) as resp:
            return resp.status, await resp.text()

    get.public = public  # type: ignore[attr-defined]
    yield get
    await http.close()


def _sample(text: str, name: str) -> float:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])


async def test_metrics_are_never_on_the_public_port(scrape):
    public = scrape.public
    for host in ("polaris.example.com", "manage.example.com", "localhost", "admin.localhost", "127.0.0.1"):
        for headers in ({"Host": host}, {"Host": host, **AUTH}):
            resp = await public.get("/metrics", headers=headers)
            assert resp.status == 404, host
    # The internal listener serves metrics and nothing else (it is no back door to the API).
    assert (await scrape("/api/admin/v1/openapi.json"))[0] == 404
    assert (await scrape("/healthz"))[0] == 404
    status, text = await scrape()
    assert status == 200 and "polaris_http_requests_total" in text


async def test_the_token_is_required_when_set(scrape):
    assert (await scrape(headers=None))[0] == 401
    assert (await scrape(headers={"Authorization": "Bearer wrong"}))[0] == 401
    assert (await scrape(headers={"Authorization": f"Basic {TOKEN}"}))[0] == 401
    assert (await scrape())[0] == 200


async def test_requests_and_hook_failures_are_counted(scrape):
    await scrape.public.get("/healthz")
    resp = await scrape.public.post("/api/ocpp/pre-authorize", data=b"{}", headers={"X-Signature": "nope"})
    assert resp.status == 401
    _, text = await scrape()
    assert 'polaris_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'polaris_web_hook_failures_total{route="/api/ocpp/pre-authorize",status="401"}' in text


async def test_deployment_figures_come_from_the_database_at_most_every_few_seconds(scrape, conn):
    from polaris.services.metrics import FIGURES_TTL_S

    _, text = await scrape()  # a fresh deployment: nothing waiting, no sync run (lag NaN, not 0)
    assert _sample(text, "polaris_metrics_database_up") == 1
    assert _sample(text, "polaris_email_outbox_depth") == 0
    assert str(_sample(text, "polaris_sync_lag_seconds")) == "nan"
    await conn.execute(
        "INSERT INTO ocpp.charge_boxes (charge_box_id, public_id, connected, is_test) "
        "VALUES ('M-1', 'pm1', true, false), ('M-2', 'pm2', false, false), ('M-T', 'pmt', true, true)"
    )
    await conn.execute(
        "INSERT INTO app.email_outbox (to_address, category, subject, html, text, created_at) "
        "VALUES ('a@example.com', 'welcome', 's', 'h', 't', now() - interval '10 minutes')"
    )
    await conn.execute(
        "INSERT INTO billing.sync_runs (started_at, finished_at, status) "
        "VALUES (now() - interval '20 minutes', now() - interval '19 minutes', 'succeeded'), "
        "       (now() - interval '5 minutes', now() - interval '4 minutes', 'failed')"
    )
    # Many scrapes at once within the window get the figures read a moment ago: had any of
    # them queried Postgres, it would see the mail just queued.
    texts = await asyncio.gather(*(scrape() for _ in range(20)))
    assert all(_sample(t, "polaris_email_outbox_depth") == 0 for _, t in texts)
    await asyncio.sleep(FIGURES_TTL_S + 0.2)
    _, text = await scrape()
    assert _sample(text, "polaris_chargers_connected") == 1  # the test charger does not count
    assert _sample(text, "polaris_chargers_registered") == 2
    assert _sample(text, "polaris_email_outbox_depth") == 1
    assert 590 < _sample(text, "polaris_email_outbox_oldest_seconds") < 700
    assert 1130 < _sample(text, "polaris_sync_lag_seconds") < 1250  # the failed run does not count


async def test_the_ocpp_servers_metrics_want_the_token_too(ocpp_stack):
    async with aiohttp.ClientSession() as http:
        async with http.get(ocpp_stack.api_url + "/metrics") as resp:
            assert resp.status == 401
        async with http.get(ocpp_stack.api_url + "/metrics", headers=AUTH) as resp:
            assert resp.status == 200 and "polaris_ocpp_connected_chargers" in await resp.text()
