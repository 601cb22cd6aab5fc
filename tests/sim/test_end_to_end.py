"""End to end: `polaris ocpp` + real Postgres + `polaris sim`, chargers registered with `polaris admin`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from aiohttp import web

from polaris.config import Settings
from tests.ports import free_port

CHARGER_KEY = "e2e-charger-key-0123"
API_KEY = "k" * 32

def polaris_env(db_dsn: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    env.update(
        DATABASE_URL=db_dsn,
        STEVE_API_KEY=API_KEY,
        STEVE_PREAUTH_HMAC_KEY="p" * 40,
        STEVE_METERVALUE_HMAC_KEY="m" * 40,
        AUTH_SECRET="a" * 40,
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        **extra,
    )
    return env


async def polaris(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"polaris {' '.join(args)}: {err.decode()}"
    return out.decode()


async def stop(proc: asyncio.subprocess.Process) -> bytes:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-3000:]
    return err


@pytest.fixture
async def hooks() -> AsyncIterator[str]:
    """The web process's hooks, as far as the OCPP server can tell: no override."""

    async def pre_authorize(request: web.Request) -> web.Response:
        return web.json_response({"override": None})

    async def meter_values(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/api/ocpp/pre-authorize", pre_authorize)
    app.router.add_post("/api/ocpp/meter-values", meter_values)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    await runner.cleanup()


@pytest.fixture
async def ocpp_server(db_dsn: str, hooks: str) -> AsyncIterator[dict]:
    env = polaris_env(db_dsn, WEB_INTERNAL_URL=hooks)
    await polaris(env, "admin", "charger", "add", "E2E-0001", "E2E-0002", "--password", CHARGER_KEY)
    await polaris(env, "admin", "customer", "add", "driver@example.com", "--name", "Driver")
    await polaris(env, "admin", "tag", "add", "E2ETAG", "--customer", "driver@example.com")
    port, api_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "ocpp", "--host", "127.0.0.1", "--port", str(port),
        "--api-port", str(api_port), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    for _ in range(400):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", api_port)
            w.close()
            break
        except OSError:
            if proc.returncode is not None:
                raise AssertionError((await proc.stderr.read()).decode()) from None
            await asyncio.sleep(0.05)
    yield {"url": f"ws://127.0.0.1:{port}/ocpp", "api": f"http://127.0.0.1:{api_port}", "env": env}
    await stop(proc)


async def sim(server: dict, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "sim", "--url", server["url"], "--id-prefix", "E2E-",
        "--password", CHARGER_KEY, "--tag", "E2ETAG", *args,
        env=server["env"], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def poll(conn: asyncpg.Connection, sql: str, *params, within: float = 30.0):
    for _ in range(int(within / 0.1)):
        row = await conn.fetchrow(sql, *params)
        if row is not None:
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing matched in {within:g} s: {sql}")


async def test_simulated_sessions_are_recorded_by_the_real_server(ocpp_server, db_dsn):
    proc = await sim(ocpp_server, "--chargers", "1", "--session-seconds", "3", "--idle-seconds", "0.3",
                     "--meter-interval", "1")
    conn = await asyncpg.connect(db_dsn)
    try:
        tx = await poll(
            conn,
            "SELECT t.* FROM ocpp.transactions t JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk "
            "WHERE cb.charge_box_id = 'E2E-0001' AND t.stop_timestamp IS NOT NULL ORDER BY t.id LIMIT 1",
        )
        assert tx["id_tag"] == "E2ETAG" and tx["id_tag_status"] == "Accepted"
        assert tx["stopped_by"] == "charger" and tx["meter_stop"] >= tx["meter_start"]
        assert tx["transaction_data"]  # kept as sent
        energy = await conn.fetch(
            "SELECT value_num FROM ocpp.meter_values WHERE transaction_id = $1 "
            "AND measurand = 'Energy.Active.Import.Register' AND context = 'Sample.Periodic' ORDER BY sampled_at, id",
            tx["id"],
        )
        readings = [r["value_num"] for r in energy]
        assert readings and readings == sorted(readings)
        assert tx["meter_start"] <= readings[0] and readings[-1] <= tx["meter_stop"]
        box = await conn.fetchrow("SELECT * FROM ocpp.charge_boxes WHERE charge_box_id = 'E2E-0001'")
        assert box["connected"] and box["vendor"] == "Polaris"
    finally:
        await conn.close()
        err = await stop(proc)
    assert b"transaction stopped" in err


async def test_command_api_drives_a_simulated_charger(ocpp_server, db_dsn):
    proc = await sim(ocpp_server, "--chargers", "1", "--first", "2", "--no-sessions", "--meter-interval", "1")
    auth = ("admin", API_KEY)
    conn = await asyncpg.connect(db_dsn)
    try:
        await poll(conn, "SELECT 1 FROM ocpp.charge_boxes WHERE charge_box_id = 'E2E-0002' AND connected")
        async with httpx.AsyncClient(base_url=ocpp_server["api"], auth=auth, timeout=30) as api:

            async def op(name: str, **body):
                # The charger may still be reporting its statuses right after connecting: retry on 409.
                for _ in range(50):
                    r = await api.post(f"/api/v1/operations/{name}", json={"chargeBoxId": "E2E-0002", **body})
                    if r.status_code != 409:
                        break
                    await asyncio.sleep(0.1)
                assert r.status_code == 200, r.text
                return r.json()["response"]

            assert (await op("RemoteStartTransaction", idTag="E2ETAG", connectorId=1))["status"] == "Accepted"
            tx = await poll(
                conn,
                "SELECT t.id FROM ocpp.transactions t JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk "
                "WHERE cb.charge_box_id = 'E2E-0002' AND t.stop_timestamp IS NULL",
            )
            conf = await op("GetConfiguration", key=["NumberOfConnectors"])
            assert conf["configurationKey"] == [{"key": "NumberOfConnectors", "readonly": True, "value": "1"}]
            assert (await op("RemoteStopTransaction", transactionId=tx["id"]))["status"] == "Accepted"
            stopped = await poll(
                conn, "SELECT stop_reason FROM ocpp.transactions WHERE id = $1 AND stop_timestamp IS NOT NULL", tx["id"]
            )
            assert stopped["stop_reason"] == "Remote"
            assert (await op("Reset", type="Soft"))["status"] == "Accepted"
    finally:
        await conn.close()
        await stop(proc)


async def test_quirky_charger_is_still_recorded(ocpp_server, db_dsn):
    """No subprotocol, a lower-case auth header, kWh as JSON numbers: NOTES.md's real-charger habits."""
    proc = await sim(ocpp_server, "--chargers", "1", "--session-seconds", "3", "--idle-seconds", "0.3",
                     "--meter-interval", "1", "--quirks", "no-subprotocol,lowercase-auth,kwh,numeric-values")
    conn = await asyncpg.connect(db_dsn)
    try:
        tx = await poll(
            conn,
            "SELECT t.* FROM ocpp.transactions t JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk "
            "WHERE cb.charge_box_id = 'E2E-0001' AND t.stop_timestamp IS NOT NULL ORDER BY t.id LIMIT 1",
        )
        rows = await conn.fetch(
            "SELECT value, value_num, unit FROM ocpp.meter_values WHERE transaction_id = $1 "
            "AND measurand = 'Energy.Active.Import.Register' AND context = 'Sample.Periodic'",
            tx["id"],
        )
        assert rows and {r["unit"] for r in rows} == {"kWh"}
        # Recorded as received: a number with three decimals, in kWh.
        assert all(abs(float(r["value"]) * 1000 - tx["meter_start"]) < 100_000 for r in rows)
    finally:
        await conn.close()
        await stop(proc)
