"""`polaris sim` as a process: naming, auth, sessions, clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys

from websockets.asyncio.server import serve


async def run_sim(*args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["LOG_FORMAT"] = "json"
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "sim", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )


async def test_fleet_names_chargers_boots_them_and_runs_sessions(central_system):
    proc = await run_sim(
        "--url", central_system.url, "--chargers", "3", "--id-prefix", "CLI-", "--password", "fleet-password-0001",
        "--tag", "FLEETTAG,OTHERTAG", "--connectors", "2", "--session-seconds", "1", "--idle-seconds", "0.3",
        "--meter-interval", "1",
    )
    try:
        for _ in range(300):
            done = [cid for cid in ("CLI-0001", "CLI-0002", "CLI-0003") if central_system.actions(cid, "StopTransaction")]
            if len(done) == 3:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"sessions did not complete; got {dict(central_system.received)}")
        assert set(central_system.received) == {"CLI-0001", "CLI-0002", "CLI-0003"}
        # Several tags: charger k presents the k-th, in turn.
        tags = [central_system.actions(cid, "StartTransaction")[0]["id_tag"] for cid in ("CLI-0001", "CLI-0002", "CLI-0003")]
        assert tags == ["FLEETTAG", "OTHERTAG", "FLEETTAG"]
        statuses = {p["connector_id"] for p in central_system.actions("CLI-0003", "StatusNotification")}
        assert statuses == {0, 1, 2}
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, stderr.decode()
    assert stdout == b""  # logs go to stderr only
    assert b"stopping simulated chargers" in stderr


async def test_basic_auth_header_carries_the_charge_box_id_and_password(unused_tcp_port):
    seen: list[tuple[str, str | None, str | None]] = []

    def record(connection, request):
        seen.append((request.path, request.headers.get("Authorization"), request.headers.get("Sec-WebSocket-Protocol")))
        return connection.respond(401, "no\n")

    async with serve(lambda ws: None, "127.0.0.1", unused_tcp_port, process_request=record):
        proc = await run_sim("--url", f"ws://127.0.0.1:{unused_tcp_port}/steve/websocket/CentralSystemService",
                             "--chargers", "1", "--password", "s3cret-password-16")
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    path, auth, subprotocol = seen[0]
    assert path == "/steve/websocket/CentralSystemService/SIM-0001"
    assert auth == "Basic " + base64.b64encode(b"SIM-0001:s3cret-password-16").decode()
    assert subprotocol == "ocpp1.6"
    assert b"connection refused" in stderr and b"401" in stderr


async def test_bad_arguments_get_a_clear_message():
    proc = await run_sim("--url", "http://example.com", "--chargers", "2")
    _, stderr = await proc.communicate()
    assert proc.returncode == 1
    assert b"--url must start with ws:// or wss://" in stderr
    proc = await run_sim("--url", "ws://127.0.0.1:9/ocpp", "--quirks", "sneezes")
    _, stderr = await proc.communicate()
    assert proc.returncode == 1 and b"unknown quirk(s) sneezes" in stderr
    proc = await run_sim("--url", "ws://127.0.0.1:9/ocpp", "--tag", "GOOD,,")
    _, stderr = await proc.communicate()
    assert proc.returncode == 1 and b"--tag: each id tag is 1 to 20 characters" in stderr
    proc = await run_sim("--url", "ws://127.0.0.1:9/ocpp", "--ocpp", "1.6,2.1")
    _, stderr = await proc.communicate()
    assert proc.returncode == 1 and b"--ocpp: each version is one of 1.6, 2.0.1" in stderr
