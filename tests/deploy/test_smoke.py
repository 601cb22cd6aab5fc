"""`polaris smoke` against the real OCPP server and the real web process, on free ports.

The command runs through `polaris.cli.main.main` in a thread (it has its own event loop)
while both servers run in the test's loop, so every step crosses a real socket: the
charger's WebSocket with HTTP Basic, the pre-authorize hook, the admin API by Host.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from pydantic import SecretStr

from polaris.cli.main import main
from polaris.config import Settings
from polaris.db.errors import InvalidInput
from polaris.db.repos import charge_boxes, customers, id_tags
from polaris.db.repos import smoke as smoke_repo
from tests.ports import free_port

EXISTING_CHARGER = "CP-REAL-0001"
EXISTING_KEY = "a-real-chargers-key-0001"
# Production-style hosts: with https:// base URLs the web process serves admin paths only on
# the admin host, so a passing run proves the Host header was sent.
HOSTS = {
    "ADMIN_BASE_URL": "https://manage.example.com",
    "CUSTOMER_BASE_URL": "https://polaris.example.com",
    "COOKIE_DOMAIN": ".example.com",
}


@dataclass
class Stack:
    ocpp_url: str
    web_url: str
    settings: Settings

@pytest.fixture
async def seeded(pool: asyncpg.Pool) -> None:
    """Rows an operator already has: the smoke test must leave every one of them alone."""
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, [EXISTING_CHARGER], EXISTING_KEY)
        await customers.add_customer(conn, "ana@example.com", name="Ana", lago_subscription_id="sub_ana")
        await id_tags.add_id_tag(conn, "04A2B3C4D5", customer_email="ana@example.com")
        await conn.execute(
            "INSERT INTO app.events (topics, type, data) VALUES ('{admin}', 'charger.status', $1)",
            {"charge_box_id": EXISTING_CHARGER},
        )


@pytest.fixture
async def stack(settings: Settings, pool: asyncpg.Pool, seeded: None) -> AsyncIterator[Stack]:
    """`polaris web` and `polaris ocpp` in-process; the OCPP server's hooks go to the real web."""
    from aiohttp.test_utils import TestServer

    from polaris.ocpp.server import OcppServer
    from polaris.services.app import app_factory

    web_settings = settings.model_copy(update={"SSE_TRANSPORT": "memory", **HOSTS})
    web = TestServer(app_factory(web_settings), host="127.0.0.1", port=0)
    await web.start_server()
    web_url = str(web.make_url("")).rstrip("/")
    ocpp_settings = settings.model_copy(update={"WEB_INTERNAL_URL": web_url})
    ocpp = OcppServer(ocpp_settings, pool, instance="smoke-test", response_timeout=5.0)
    await ocpp.start("127.0.0.1", 0)
    try:
        yield Stack(f"ws://127.0.0.1:{ocpp.port}/ocpp", web_url, web_settings)
    finally:
        await ocpp.close()
        await web.close()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads its settings from the environment, like the services do."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    for name in ("AUTH_SECRET", "STEVE_PREAUTH_HMAC_KEY", "STEVE_METERVALUE_HMAC_KEY", "STEVE_API_KEY"):
        monkeypatch.setenv(name, getattr(settings, name).get_secret_value())
    for name, value in HOSTS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.delenv("OCPP_HOST", raising=False)


async def polaris(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


# Not records: the signatures of hook calls already answered (replay protection); the web
# drops them once ten minutes old.
TRANSIENT = {"app.hook_signatures"}


async def row_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows in every table of our schemas (the smoke test must leave these as it found them)."""
    tables = await conn.fetch(
        "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables "
        "WHERE table_schema IN ('ocpp', 'app', 'billing') AND table_type = 'BASE TABLE' ORDER BY 1"
    )
    return {r["t"]: await conn.fetchval(f"SELECT count(*) FROM {r['t']}") for r in tables if r["t"] not in TRANSIENT}


async def test_green_run_passes_every_step_and_leaves_no_rows(stack, cli_env, conn, capsys):
    before = await row_counts(conn)
    code = await polaris("smoke", "--ocpp-url", stack.ocpp_url, "--admin-url", stack.web_url, "--timeout", "45")
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("register test charger", "connect over the OCPP URL", "BootNotification Accepted",
                 "StatusNotification", "Authorize Accepted", "StartTransaction", "MeterValues",
                 "StopTransaction", "admin API shows the session", "not billable", "cleanup"):
        assert f"[ ok ] {name} (" in out, out
    assert "billing state test" in out and "Smoke test passed" in out
    assert "(Host: manage.example.com)" in out
    after = await row_counts(conn)
    assert after == before
    assert await conn.fetchval("SELECT count(*) FROM ocpp.charge_boxes WHERE charge_box_id = $1", EXISTING_CHARGER)


async def test_kept_session_is_a_test_session_the_sync_never_sends(stack, cli_env, conn, pool, capsys):
    from polaris.sim.lago import FakeLago
    from polaris.sync.lago import LagoClient
    from polaris.sync.worker import SyncEngine

    before = await row_counts(conn)
    code = await polaris("smoke", "--ocpp-url", stack.ocpp_url, "--admin-url", stack.web_url, "--keep", "--json")
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc
    assert doc["ok"] is True and doc["kept"] is True
    assert [s["name"] for s in doc["steps"]][-1] == "cleanup"
    assert all(set(s) >= {"name", "ok", "detail", "ms"} and s["ok"] for s in doc["steps"])
    assert all(isinstance(s["ms"], int) for s in doc["steps"])
    assert "--cleanup " + doc["chargeBoxId"] in doc["steps"][-1]["detail"]
    tx = await conn.fetchrow(
        "SELECT t.is_test, t.stop_timestamp, t.meter_stop - t.meter_start AS wh, cb.is_test AS box_is_test "
        "FROM ocpp.transactions t JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk "
        "WHERE t.id = $1 AND cb.charge_box_id = $2",
        doc["transactionId"], doc["chargeBoxId"],
    )
    assert tx["is_test"] and tx["box_is_test"] and tx["stop_timestamp"] is not None and tx["wh"] > 0

    # A real sync pass against Lago's wire protocol: nothing is sent for the test session.
    lago = FakeLago()
    await lago.start()
    client = LagoClient(lago.url, lago.api_key, timeout=2, max_attempts=2, backoff_base=0.01, backoff_cap=0.05)
    try:
        sync_settings = stack.settings.model_copy(update={
            "LAGO_API_URL": lago.url, "LAGO_API_KEY": SecretStr(lago.api_key), "SYNC_LOOKBACK_MINUTES": 60,
        })
        result = await SyncEngine(pool, client, sync_settings).run(trigger="manual")
    finally:
        await client.aclose()
        await lago.stop()
    assert result.status == "succeeded", result
    assert lago.events == {} and lago.batches_received == 0
    state = await conn.fetchrow(
        "SELECT unbillable_code, done FROM billing.transaction_sync_state WHERE transaction_id = $1",
        doc["transactionId"],
    )
    assert state is not None and state["unbillable_code"] == "test" and state["done"]

    # --cleanup removes the kept run, the sync state included; the sync run itself stays.
    assert await polaris("smoke", "--cleanup", doc["chargeBoxId"]) == 0
    assert "removed" in capsys.readouterr().out
    after = await row_counts(conn)
    assert after.pop("billing.sync_runs") == before.pop("billing.sync_runs") + 1
    before.pop("billing.cadence_state"), after.pop("billing.cadence_state")
    assert after == before


@pytest.mark.parametrize("as_json", [False, True])
async def test_ocpp_server_down_fails_clearly_and_cleans_up(settings, cli_env, conn, capsys, as_json):
    before = await row_counts(conn)
    url = f"ws://127.0.0.1:{free_port()}/ocpp"
    code = await polaris(
        "smoke", "--ocpp-url", url, "--admin-url", "http://127.0.0.1:9", *(["--json"] if as_json else [])
    )
    out = capsys.readouterr().out
    assert code == 1, out
    if as_json:
        doc = json.loads(out)
        assert doc["ok"] is False and doc["transactionId"] is None
        steps = {s["name"]: s for s in doc["steps"]}
        assert steps["register test charger"]["ok"]
        connect = steps["connect over the OCPP URL"]
        assert not connect["ok"] and f"charger could not connect to {url}/SMOKE-" in connect["detail"]
        assert "Caddy and OCPP_HOST" in connect["hint"]
        assert steps["StopTransaction"]["skipped"] and not steps["StopTransaction"]["ok"]
        assert steps["cleanup"]["ok"]
    else:
        assert "[FAIL] connect over the OCPP URL" in out and f"charger could not connect to {url}/SMOKE-" in out
        assert "hint: check Caddy and OCPP_HOST" in out
        assert "[skip] BootNotification Accepted" in out and "[ ok ] cleanup" in out
        assert "Smoke test FAILED at 'connect over the OCPP URL'" in out
    assert await row_counts(conn) == before


async def test_admin_api_on_the_wrong_host_names_the_host_routing(stack, cli_env, conn, capsys):
    before = await row_counts(conn)
    code = await polaris(
        "smoke", "--ocpp-url", stack.ocpp_url, "--admin-url", stack.web_url, "--admin-host", "127.0.0.1"
    )
    out = capsys.readouterr().out
    assert code == 1, out
    assert "[ ok ] StopTransaction" in out
    assert "[FAIL] admin API shows the session" in out and "is not served for Host 127.0.0.1" in out
    assert "routes admin paths by Host" in out and "[skip] not billable" in out and "[ ok ] cleanup" in out
    assert await row_counts(conn) == before


async def test_overall_timeout_mid_session_still_cleans_up(stack, cli_env, conn, capsys):
    before = await row_counts(conn)
    # Meter values come every second, so 0.9 s ends the run with a session still open.
    code = await polaris("smoke", "--ocpp-url", stack.ocpp_url, "--admin-url", stack.web_url, "--timeout", "0.9")
    out = capsys.readouterr().out
    assert code == 1, out
    assert "[ ok ] StartTransaction" in out
    assert "[FAIL] MeterValues" in out and "overall time limit of 0.9 s (--timeout)" in out
    assert "[skip] StopTransaction" in out and "[ ok ] cleanup" in out
    assert await row_counts(conn) == before


async def test_interrupted_run_cleans_up(stack, settings, conn):
    """Ctrl-C: asyncio.run cancels the command's task; the clean-up still runs before it ends."""
    from polaris.ops.smoke import START, SmokeOptions, run_smoke

    before = await row_counts(conn)
    started = asyncio.Event()
    seen: list[str] = []

    def on_step(step) -> None:
        seen.append(step.name)
        if step.name == START and step.ok:
            started.set()

    opts = SmokeOptions(
        database_url=settings.database_url or "", ocpp_url=stack.ocpp_url, admin_url=stack.web_url,
        admin_host="manage.example.com", timeout=30,
    )
    task = asyncio.create_task(run_smoke(opts, on_step))
    await asyncio.wait_for(started.wait(), 20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen[-1] == "cleanup"
    assert await row_counts(conn) == before


async def test_cleanup_only_touches_test_chargers(conn):
    with pytest.raises(InvalidInput):
        smoke_repo.SmokeNames.from_charge_box_id(EXISTING_CHARGER)
    # A real charger that happens to carry a smoke-shaped id is never deleted.
    names = smoke_repo.SmokeNames("ABCD1234")
    await charge_boxes.add_charge_boxes(conn, [names.charge_box_id], EXISTING_KEY)
    with pytest.raises(InvalidInput, match="not a test charger"):
        await smoke_repo.delete_smoke_data(conn, names)
    assert await conn.fetchval("SELECT count(*) FROM ocpp.charge_boxes WHERE charge_box_id = $1", names.charge_box_id)


def test_default_ocpp_url_follows_caddy_setting(settings, monkeypatch):
    from polaris.cli.smoke import default_ocpp_url

    monkeypatch.delenv("OCPP_HOST", raising=False)
    assert default_ocpp_url(settings) == f"ws://127.0.0.1:{settings.OCPP_PORT}/ocpp"
    monkeypatch.setenv("OCPP_HOST", "OCPP.example.com")
    assert default_ocpp_url(settings) == "wss://ocpp.example.com/ocpp"
