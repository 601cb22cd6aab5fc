"""`polaris health` against a real running deployment on free ports: Postgres, `polaris web`,
the OCPP server and its command API, a fake Lago (polaris.sim.lago) and a fake email worker,
both speaking their real HTTP contracts. The command runs in-process through
`polaris.cli.main.main` (in a thread: it runs its own event loop) with the environment a
service would have.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from polaris.cli import health as health_cli
from polaris.cli.main import main
from polaris.db.pool import create_pool
from polaris.db.repos import charge_boxes
from polaris.db.repos import health as health_repo
from polaris.logs import configure_logging
from polaris.ocpp.api import create_app
from polaris.ocpp.server import OcppServer
from polaris.services.app import app_factory
from polaris.sim.lago import FakeLago
from tests.conftest import TEST_SECRETS

LAGO_KEY = "lago-test-key-0123456789"
CHARGER_KEY = "health-test-charger-key-01"  # 16-40 characters, an OCPP AuthorizationKey


@dataclass
class Deployment:
    """The running services and the environment `polaris health` would see next to them."""

    env: dict[str, str]
    pool: asyncpg.Pool
    web: TestServer
    ocpp: OcppServer
    ocpp_api: web.AppRunner
    lago: FakeLago
    ocpp_ws_url: str
    chargers: list = field(default_factory=list)

    async def sql(self, query: str, *args: Any) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(query, *args)


@pytest.fixture
async def email_worker(aiohttp_server):
    """The email worker's contract as far as health touches it: GET /health."""

    async def ok(_request):
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/health", ok)
    app.router.add_post("/send", ok)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def deployment(settings, db_dsn, email_worker, monkeypatch, tmp_path) -> AsyncIterator[Deployment]:
    # As in every `polaris` process: logs on stderr, from the start, so stdout is health's alone.
    configure_logging("WARNING", "json")
    pool = await create_pool(db_dsn, min_size=1, max_size=5)
    ocpp = OcppServer(settings, pool, instance="health-test", response_timeout=5.0)
    await ocpp.start("127.0.0.1", 0)
    ocpp_api = web.AppRunner(create_app(ocpp), access_log=None)
    await ocpp_api.setup()
    site = web.TCPSite(ocpp_api, "127.0.0.1", 0)
    await site.start()
    api_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    web_settings = settings.model_copy(update={"SSE_TRANSPORT": "memory", "STEVE_BASE_URL": api_url})
    server = TestServer(app_factory(web_settings), host="127.0.0.1", port=0)
    await server.start_server()
    lago = FakeLago(api_key=LAGO_KEY)
    await lago.start()
    env = {
        **TEST_SECRETS,
        "DATABASE_URL": db_dsn,
        "WEB_INTERNAL_URL": str(server.make_url("")).rstrip("/"),
        "STEVE_BASE_URL": api_url,
        "LAGO_API_URL": lago.url,
        "LAGO_API_KEY": LAGO_KEY,
        "CF_EMAIL_WORKER_URL": email_worker,
        "LOG_LEVEL": "WARNING",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no stray .env
    d = Deployment(env, pool, server, ocpp, ocpp_api, lago, f"ws://127.0.0.1:{ocpp.port}/ocpp")
    try:
        yield d
    finally:
        for charger in d.chargers:
            await charger.stop()
        await server.close()
        await ocpp_api.cleanup()
        await ocpp.close()
        await lago.stop()
        await pool.close()


async def polaris_health(capsys, *args: str) -> tuple[int, str]:
    code = await asyncio.to_thread(main, ["health", "--timeout", "2", *args])
    return code, capsys.readouterr().out


async def health_json(capsys, *args: str) -> tuple[int, dict[str, Any]]:
    code, out = await polaris_health(capsys, "--json", *args)
    return code, json.loads(out)


async def charger_counts(deployment: Deployment) -> asyncpg.Record:
    async with deployment.pool.acquire() as conn:
        return await health_repo.charger_counts(conn)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"]}


# --- the green path ---------------------------------------------------------------------


async def test_fresh_deployment_is_all_green(deployment, capsys):
    code, out = await polaris_health(capsys)
    assert code == 0, out
    first, *rest = out.splitlines()
    assert first == "POLARIS OK (8 ok)"
    text = "\n".join(rest)
    assert "[ ok ] Database: PostgreSQL " in text and "migrations applied" in text
    assert "/readyz: ready" in text
    assert "[ ok ] OCPP server: up (instance health-test: 0 connected); no chargers registered yet" in text
    assert "[ ok ] Billing sync: no sync run yet" in text
    assert "[ ok ] Email: worker answers; no mail sent yet" in text
    assert "[ ok ] Lago: key accepted; metric ev_charging_kwh exists (EV charging)" in text
    assert "[ ok ] Unbillable backlog: no session held back" in text
    assert "[ ok ] Operator alerts: none open" in text
    assert "fix:" not in text
    assert ("GET", "/api/v1/billable_metrics/ev_charging_kwh", 200) in deployment.lago.requests


async def test_json_is_one_document_with_the_contract_shape(deployment, capsys):
    code, doc = await health_json(capsys)
    assert code == 0
    assert set(doc) == {"status", "checks", "checked_at"} and doc["status"] == "ok"
    assert [c["name"] for c in doc["checks"]] == [
        "database", "web", "ocpp", "sync", "email", "lago", "unbillable", "alerts",
    ]
    for check in doc["checks"]:
        assert set(check) == {"name", "status", "detail"} and check["status"] == "ok"
    assert doc["checked_at"].endswith("+00:00")


async def test_local_mode_without_worker_or_lago_is_ok(deployment, capsys, monkeypatch):
    monkeypatch.delenv("CF_EMAIL_WORKER_URL")
    monkeypatch.delenv("LAGO_API_KEY")
    # Mail queued long ago is expected in local mode: nobody sends it.
    await deployment.sql(
        "INSERT INTO app.email_outbox (to_address, category, subject, html, text, created_at) "
        "VALUES ('a@example.com', 'magic-link', 's', 'h', 't', now() - interval '3 days')"
    )
    code, doc = await health_json(capsys)
    checks = by_name(doc)
    assert code == 0, doc
    assert checks["email"]["detail"] == (
        "not configured; mail stays in the outbox (1 waiting; `polaris admin outbox` shows them)"
    )
    assert checks["lago"]["detail"] == "not configured (LAGO_API_KEY unset)"
    assert checks["sync"]["detail"] == "not configured (LAGO_API_KEY unset); no run yet"


# --- critical ---------------------------------------------------------------------------


async def test_ocpp_server_stopped_is_critical(deployment, capsys):
    await deployment.ocpp_api.cleanup()
    await deployment.ocpp.close()
    code, out = await polaris_health(capsys)
    assert code == 2, out
    assert out.startswith("POLARIS CRITICAL: ocpp (1 critical, 7 ok)")
    assert f"[CRIT] OCPP server: {deployment.env['STEVE_BASE_URL']}/api/v1/status: down (ConnectError" in out
    assert "fix: start the OCPP server (`docker compose up -d ocpp`)" in out


async def test_web_down_is_critical(deployment, capsys):
    await deployment.web.close()
    code, doc = await health_json(capsys)
    assert code == 2 and doc["status"] == "critical"
    web_check = by_name(doc)["web"]
    assert web_check["status"] == "critical" and "down (ConnectError" in web_check["detail"]
    assert "docker compose up -d web" in web_check["fix"]


async def test_web_not_ready_says_why(deployment, capsys):
    # The web's own view: a migration it knows is missing from the database, so /readyz is 503.
    await deployment.sql("DELETE FROM public.schema_migrations WHERE version = 60")
    code, doc = await health_json(capsys)
    checks = by_name(doc)
    assert code == 2
    assert "not ready (migrations_pending: the database needs `polaris migrate`)" in checks["web"]["detail"]
    assert checks["database"]["status"] == "critical"
    assert "1 migration(s) not applied: 0060_operations.sql" in checks["database"]["detail"]


async def test_database_unreachable_is_critical_with_one_clear_line(deployment, capsys, monkeypatch, unused_tcp_port):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://polaris:pw@127.0.0.1:{unused_tcp_port}/polaris")
    code, out = await polaris_health(capsys)
    assert code == 2, out
    assert "[CRIT] Database: unreachable: cannot reach the Postgres server in DATABASE_URL" in out
    assert "fix: start Postgres (`docker compose up -d postgres`)" in out
    for title in ("Billing sync", "Email", "Unbillable backlog", "Operator alerts"):
        assert f"[skip] {title}: not checked: the database is unreachable" in out
    # The OCPP server still answers; only the comparison with the database is left out.
    assert "[ ok ] OCPP server: up (instance health-test: 0 connected); registered chargers not compared" in out
    assert "pw@" not in out


async def test_hung_service_does_not_hang_health(deployment, capsys, monkeypatch):
    writers: list[asyncio.StreamWriter] = []

    async def never_answer(reader, writer):
        writers.append(writer)  # accepts the connection, reads the request, never answers

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("WEB_INTERNAL_URL", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    try:
        code, doc = await health_json(capsys, "--timeout", "0.5")
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
    assert time.monotonic() - started < 10
    assert code == 2 and by_name(doc)["web"]["detail"].endswith("down (ReadTimeout)")


# --- warnings ---------------------------------------------------------------------------


async def test_sync_overdue_is_a_warning(deployment, capsys):
    await deployment.sql(
        "INSERT INTO billing.sync_runs (started_at, finished_at, status, tier) "
        "VALUES (now() - interval '3 hours', now() - interval '3 hours', 'succeeded', 'active')"
    )
    code, out = await polaris_health(capsys)
    assert code == 1, out
    assert out.startswith("POLARIS WARNING: sync (1 warning, 7 ok)")
    assert "[WARN] Billing sync: overdue: last succeeded " in out and "(3 h ago); the active cadence */15 * * * *" in out
    assert "fix: check that the sync worker runs" in out


async def test_sync_within_cadence_is_ok_and_the_cron_override_counts(deployment, capsys, monkeypatch):
    await deployment.sql(
        "INSERT INTO billing.sync_runs (started_at, finished_at, status, tier) "
        "VALUES (now() - interval '3 hours', now() - interval '3 hours', 'succeeded', 'idle')"
    )
    await deployment.sql("UPDATE billing.cadence_state SET tier = 'dormant'")
    code, doc = await health_json(capsys)
    assert code == 0 and "dormant cadence 0 3 * * 0" in by_name(doc)["sync"]["detail"]
    monkeypatch.setenv("SYNC_CRON_SCHEDULE", "0 * * * *")
    code, doc = await health_json(capsys)
    assert code == 1 and "SYNC_CRON_SCHEDULE 0 * * * *" in by_name(doc)["sync"]["detail"]


async def test_failing_sync_runs_are_a_warning(deployment, capsys):
    await deployment.sql(
        "INSERT INTO billing.sync_runs (finished_at, status, error) "
        "SELECT now(), 'failed', 'Lago answered 500' FROM generate_series(1, 3)"
    )
    code, doc = await health_json(capsys)
    sync = by_name(doc)["sync"]
    assert code == 1 and sync["status"] == "warning"
    assert "the last 3 runs failed: Lago answered 500" in sync["detail"]
    assert "polaris sync --once" in sync["fix"]


async def test_stuck_outbox_is_a_warning(deployment, capsys):
    await deployment.sql(
        "INSERT INTO app.email_outbox (to_address, category, subject, html, text, status, created_at) "
        "VALUES ('a@example.com', 'welcome', 's', 'h', 't', 'pending', now() - interval '2 hours'), "
        "       ('b@example.com', 'welcome', 's', 'h', 't', 'held', now() - interval '5 minutes')"
    )
    code, doc = await health_json(capsys)
    email = by_name(doc)["email"]
    assert code == 1 and email["status"] == "warning"
    assert email["detail"].startswith("2 mail(s) undelivered, 1 held after the worker refused them; the oldest")
    assert "ALERT_OUTBOX_STUCK_MINUTES=30" in email["detail"]
    assert "polaris admin outbox --release-held" in email["fix"]


async def test_recent_mail_on_its_way_is_ok(deployment, capsys):
    await deployment.sql(
        "INSERT INTO app.email_outbox (to_address, category, subject, html, text) "
        "VALUES ('a@example.com', 'welcome', 's', 'h', 't')"
    )
    code, doc = await health_json(capsys)
    assert code == 0 and by_name(doc)["email"]["detail"] == "worker answers; 1 mail(s) on their way"


async def test_lago_and_email_worker_unreachable_are_warnings(deployment, capsys, monkeypatch, unused_tcp_port):
    monkeypatch.setenv("LAGO_API_URL", f"http://127.0.0.1:{unused_tcp_port}")
    monkeypatch.setenv("CF_EMAIL_WORKER_URL", f"http://127.0.0.1:{unused_tcp_port}")
    code, doc = await health_json(capsys)
    checks = by_name(doc)
    assert code == 1 and doc["status"] == "warning"
    assert checks["lago"]["status"] == "warning" and "ConnectError" in checks["lago"]["detail"]
    assert "allow outbound HTTPS" in checks["lago"]["fix"]
    assert checks["email"]["status"] == "warning" and "unreachable (ConnectError" in checks["email"]["detail"]


async def test_lago_refusing_the_key_is_a_warning(deployment, capsys, monkeypatch):
    monkeypatch.setenv("LAGO_API_KEY", "not-the-key")
    code, doc = await health_json(capsys)
    lago = by_name(doc)["lago"]
    assert code == 1 and lago["detail"] == "Lago refused LAGO_API_KEY (HTTP 401)"


async def test_registered_chargers_none_connected_warns_and_test_chargers_do_not_count(deployment, capsys):
    from polaris.sim.charger import SimulatedCharger

    async with deployment.pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["SMOKE-1"], CHARGER_KEY)
        await conn.execute("UPDATE ocpp.charge_boxes SET is_test = true WHERE charge_box_id = 'SMOKE-1'")
    code, doc = await health_json(capsys)
    assert code == 0 and by_name(doc)["ocpp"]["detail"].endswith("no chargers registered yet")

    async with deployment.pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CP-1", "CP-2"], CHARGER_KEY)
    code, doc = await health_json(capsys)
    ocpp = by_name(doc)["ocpp"]
    assert code == 1 and ocpp["status"] == "warning"
    assert "none of the 2 registered charger(s) is connected" in ocpp["detail"]

    charger = SimulatedCharger(
        deployment.ocpp_ws_url, "CP-1", CHARGER_KEY, id_tag="TAG-1", auto_sessions=False,
        step_delay=0.05, reconnect_max_delay=0.5, seed=1,
    )
    deployment.chargers.append(charger)
    await charger.start()
    # The OCPP server records connections in the database in batches, a moment later.
    deadline = time.monotonic() + 10
    while (await charger_counts(deployment))["connected"] == 0:
        assert time.monotonic() < deadline, "the OCPP server never recorded the connection"
        await asyncio.sleep(0.05)
    code, doc = await health_json(capsys)
    assert code == 0, doc
    assert by_name(doc)["ocpp"]["detail"] == "up (instance health-test: 1 connected); 1 of 2 registered charger(s) connected"


async def test_open_operator_alerts_are_listed(deployment, capsys):
    # Health only reads the table the web's alerting engine writes. The web is stopped so its
    # engine does not clear these hand-made incidents mid-test.
    await deployment.web.close()
    await deployment.sql(
        "INSERT INTO app.operator_alerts (kind, subject, detail, opened_at, cleared_at) VALUES "
        "('charger_offline', 'CP-9', 'last seen 2026-11-25T09:00:00+00:00', now() - interval '45 minutes', NULL), "
        "('sync_failing', 'sync', '', now() - interval '5 minutes', NULL), "
        "('outbox_stuck', 'email_outbox', '', now() - interval '1 day', now())"
    )
    code, out = await polaris_health(capsys)
    assert code == 2, out  # the web is down
    assert "[WARN] Operator alerts: 2 open\n       charger_offline CP-9 since " in out
    assert ": last seen 2026-11-25T09:00:00+00:00\n       sync_failing sync since " in out
    assert "outbox_stuck" not in out
    assert "fix: each alert clears by itself once its condition ends" in out


async def test_unbillable_backlog_over_the_threshold_warns(deployment, capsys, monkeypatch):
    async with deployment.pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CP-1"], CHARGER_KEY)
        await conn.execute(
            """
            WITH tx AS (
                INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp,
                                               meter_start, stop_timestamp, meter_stop)
                SELECT cb.id, 1, 'TAG-' || g, now() - interval '1 hour', 0, now(), 1000
                FROM ocpp.charge_boxes cb, generate_series(1, 11) g WHERE cb.charge_box_id = 'CP-1'
                RETURNING id
            )
            INSERT INTO billing.transaction_sync_state (transaction_id, unbillable_code, unbillable_reason, held_since)
            SELECT id, 'no_customer', 'card has no customer', now() FROM tx
            """
        )
    code, doc = await health_json(capsys)
    unbillable = by_name(doc)["unbillable"]
    assert code == 1 and unbillable["status"] == "warning"
    assert unbillable["detail"] == "11 session(s) held back (no_customer 11)"
    assert "polaris sync status" in unbillable["fix"]
    # A bigger fleet sets its own threshold.
    monkeypatch.setenv("ALERT_UNBILLABLE_SESSIONS", "20")
    code, doc = await health_json(capsys)
    assert by_name(doc)["unbillable"]["status"] == "ok"


# --- watch --------------------------------------------------------------------------------


async def test_watch_reruns_until_ctrl_c_and_exits_with_the_last_code(deployment, capsys, monkeypatch):
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt  # what Ctrl-C does during the pause

    monkeypatch.setattr(health_cli.time, "sleep", sleep)
    code, out = await polaris_health(capsys, "--json", "--watch", "0.1")
    docs = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and naps == [0.1, 0.1]
    assert [d["status"] for d in docs] == ["ok", "ok"]


async def test_ocpp_api_refusing_the_credentials_is_a_warning(deployment, capsys, monkeypatch):
    monkeypatch.setenv("STEVE_API_KEY", "x" * 32)
    code, doc = await health_json(capsys)
    ocpp = by_name(doc)["ocpp"]
    assert code == 1 and ocpp["status"] == "warning"
    assert "refused STEVE_API_USERNAME / STEVE_API_KEY" in ocpp["detail"]
    assert "same STEVE_API_USERNAME and STEVE_API_KEY" in ocpp["fix"]


async def test_without_database_url_health_says_where_to_run(deployment, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL")
    code, doc = await health_json(capsys)
    database = by_name(doc)["database"]
    assert code == 2 and database["status"] == "critical"
    assert database["detail"] == "DATABASE_URL is not set, so health cannot find the deployment's database"
    assert "docker compose exec web polaris health" in database["fix"]
    assert by_name(doc)["alerts"]["status"] == "unknown"


async def test_unreadable_settings_are_unknown_for_nagios(deployment, capsys, monkeypatch):
    monkeypatch.setenv("WEB_PORT", "not-a-port")
    code = await asyncio.to_thread(main, ["health"])
    assert code == 3  # UNKNOWN: health could not even start
    assert "WEB_PORT" in capsys.readouterr().err
