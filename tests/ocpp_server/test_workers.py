"""`polaris ocpp --workers 2`: two processes share the ports (SO_REUSEPORT); chargers spread over
both; a command reaches its charger whichever worker's API it lands on; SIGTERM stops both."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys

import aiohttp

from polaris.db.repos import charge_boxes

from .conftest import CHARGER_KEY, open_client

IDS = [f"W-{i:02d}" for i in range(16)]


async def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _answer_calls(client) -> None:
    """A charger that accepts whatever it is asked."""
    async for raw in client.ws:
        frame = json.loads(raw)
        if frame[0] == 2:
            await client.ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))


async def test_two_workers_share_the_port_and_route_commands(settings, pool, tmp_path, wait_until):
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, IDS, CHARGER_KEY)
    port, api_port, nothing_there = await _free_port(), await _free_port(), await _free_port()
    env = {k: v for k, v in os.environ.items() if k not in type(settings).model_fields}
    env.update({"DATABASE_URL": settings.database_url, "STEVE_API_KEY": settings.STEVE_API_KEY.get_secret_value(),
                "STEVE_PREAUTH_HMAC_KEY": settings.STEVE_PREAUTH_HMAC_KEY.get_secret_value(),
                "WEB_INTERNAL_URL": f"http://127.0.0.1:{nothing_there}", "LOG_FORMAT": "json"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "ocpp", "--host", "127.0.0.1", "--port", str(port),
        "--api-port", str(api_port), "--workers", "2", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    clients, readers = [], []
    try:
        api = f"http://127.0.0.1:{api_port}"
        auth = {"Authorization": "Basic " + base64.b64encode(
            f"admin:{settings.STEVE_API_KEY.get_secret_value()}".encode()).decode()}
        async with aiohttp.ClientSession() as s:
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with s.get(api + "/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # the second worker may still be starting
            for cid in IDS:
                c = await open_client(f"ws://127.0.0.1:{port}/ocpp", cid)
                assert (await c.boot())["status"] == "Accepted"
                clients.append(c)
                readers.append(asyncio.create_task(_answer_calls(c)))
            instances = await wait_until(lambda: _instances(pool), within=10)
            assert len(instances) == 2, instances  # 16 connections, two workers: both hold some
            for cid in IDS:
                async with s.post(api + "/api/v1/operations/ClearCache", json={"chargeBoxId": cid},
                                  headers=auth) as r:
                    body = await r.json()
                    assert r.status == 200, body
                    assert body["response"] == {"status": "Accepted"}
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert err.count(b'"stopped"') == 2
    finally:
        for t in readers:
            t.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _instances(pool) -> set[str] | None:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT connected_instance FROM ocpp.charge_boxes WHERE connected")
    if len(rows) < len(IDS):
        return None
    return {r["connected_instance"] for r in rows}


async def test_a_command_for_a_201_charger_held_elsewhere_is_checked_as_201(ocpp, charger, conn):
    # The charger booted with 2.0.1 on another instance: its Reset is a 2.0.1 Reset.
    await conn.execute("UPDATE ocpp.charge_boxes SET ocpp_version = '2.0.1' WHERE charge_box_id = $1", charger)
    status, body = await ocpp.api("POST", "/api/v1/operations/Reset", {"chargeBoxId": charger, "type": "Soft"})
    assert status == 400 and "Reset" in body["message"], body  # Soft is 1.6's word
    status, body = await ocpp.api("POST", "/api/v1/operations/Reset", {"chargeBoxId": charger, "type": "OnIdle"})
    assert status == 409, body  # valid 2.0.1: refused only because it is not connected
