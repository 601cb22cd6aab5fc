"""The app factory: health, readiness, host routing, one error shape (metrics: test_metrics.py)."""

from __future__ import annotations

import asyncio
import io

import asyncpg

from polaris.services.app import app_factory
from tests.ports import free_port

ADMIN = {"Host": "admin.localhost:8000"}
CUSTOMER = {"Host": "localhost:8000"}


async def test_healthz_and_readyz_answer_on_any_host(api):
    for host in ("admin.localhost", "localhost", "127.0.0.1", "web.internal"):
        resp = await api.get("/healthz", headers={"Host": host})
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"
        resp = await api.get("/readyz", headers={"Host": host})
        assert resp.status == 200, await resp.text()


async def test_readyz_says_when_migrations_are_pending(api, web_app, db_dsn):
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute("DELETE FROM public.schema_migrations WHERE version = 20")
    finally:
        await conn.close()
    resp = await api.get("/readyz")
    assert resp.status == 503
    assert await resp.json() == {
        "error": "migrations_pending",
        "message": "the database needs `polaris migrate`",
    }


async def test_readyz_reports_an_unreachable_database(aiohttp_client, web_settings, pg_server_dsn, conn):
    app = app_factory(web_settings)
    client = await aiohttp_client(app)
    dbname = await conn.fetchval("SELECT current_database()")
    await conn.close()
    # Kill every connection and forbid new ones: the pool cannot reconnect.
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", dbname
        )
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["error"] == "database_unavailable"
        assert (await client.get("/healthz")).status == 200
    finally:
        await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        await admin.close()
    resp = await client.get("/readyz")
    assert resp.status == 200, "the pool reconnects once the database is back"


async def test_admin_api_answers_only_on_the_admin_host(api, web_settings):
    resp = await api.get("/api/admin/v1/openapi.json", headers=ADMIN)
    assert resp.status == 200
    resp = await api.get("/api/admin/v1/openapi.json", headers=CUSTOMER)
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    # The customer API is not on the admin host.
    resp = await api.get("/api/v1/me", headers=ADMIN)
    assert resp.status == 404
    resp = await api.get("/api/v1/me", headers=CUSTOMER)
    assert resp.status == 401


async def test_production_hosts_refuse_unknown_hosts_except_any_host_paths(aiohttp_client, web_settings):
    settings = web_settings.model_copy(
        update={
            "ADMIN_BASE_URL": "https://manage.example.com",
            "CUSTOMER_BASE_URL": "https://polaris.example.com",
            "COOKIE_DOMAIN": ".example.com",
        }
    )
    client = await aiohttp_client(app_factory(settings))
    assert (await client.get("/api/admin/v1/openapi.json", headers={"Host": "127.0.0.1"})).status == 404
    assert (await client.get("/api/admin/v1/openapi.json", headers={"Host": "manage.example.com"})).status == 200
    assert (await client.get("/healthz", headers={"Host": "127.0.0.1:8000"})).status == 200
    assert (await client.get("/api/v1/me", headers={"Host": "polaris.example.com"})).status == 401


async def test_unknown_paths_and_methods_are_json_errors(api):
    resp = await api.get("/api/admin/v1/nope")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    resp = await api.put("/api/admin/v1/openapi.json")
    assert resp.status == 405
    body = await resp.json()
    assert body["error"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


async def test_malformed_bodies_are_400_not_500(api):
    for raw, code in (
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'{"email": 5, "password": []}', "invalid_input"),
        (b'{"email": "a@b.c", "password": "x", "extra": 1}', "invalid_input"),
        ("\u00e9".encode("latin-1"), "invalid_json"),
    ):
        resp = await api.post(
            "/api/admin/v1/auth/login", data=raw, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400, (raw, await resp.text())
        body = await resp.json()
        assert body["error"] == code, (raw, body)
        assert body["message"]


async def test_oversized_body_is_413_json(api):
    resp = await api.post(
        "/api/admin/v1/auth/login", data=io.BytesIO(b"x" * (2 * 1024 * 1024)), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert (await resp.json())["error"] == "payload_too_large"

def _env(db_dsn: str | None) -> dict:
    import os

    from polaris.config import Settings

    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    if db_dsn:
        env.update(
            DATABASE_URL=db_dsn,
            AUTH_SECRET="a" * 40,
            STEVE_PREAUTH_HMAC_KEY="p" * 40,
            STEVE_API_KEY="k" * 32,
            SSE_TRANSPORT="memory",
            LOG_FORMAT="json",
        )
    return env


async def test_polaris_web_serves_and_stops_cleanly_on_sigterm(db_dsn, tmp_path):
    import signal
    import sys

    import httpx

    port, metrics_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "web", "--host", "127.0.0.1", "--port", str(port),
        env={**_env(db_dsn), "WEB_METRICS_PORT": str(metrics_port)}, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    resp = await http.get(f"http://127.0.0.1:{port}/readyz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert resp.status_code == 200
            # Metrics on the internal listener only, never on the public port.
            assert (await http.get(f"http://127.0.0.1:{port}/metrics")).status_code == 404
            resp = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert resp.status_code == 200 and "polaris_metrics_database_up 1.0" in resp.text
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out == b"", "stdout stays empty: logs go to stderr"
    assert b"optional feature off" in err and b"ADMIN_OIDC_ISSUER unset" in err


async def test_polaris_web_names_missing_settings(tmp_path):
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "web", env=_env(None), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    text = err.decode()
    assert "DATABASE_URL is not set" in text and "AUTH_SECRET is not set" in text and "STEVE_API_KEY" in text
