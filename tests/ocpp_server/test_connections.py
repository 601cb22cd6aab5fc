"""Admission (paths, subprotocol, Basic auth, TLS), duplicate connections, shutdown."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import ssl
import sys

import aiohttp
import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from polaris.ocpp import admission
from polaris.ocpp import server as server_module
from tests.ports import free_port

KEY = "charger-key-0123456789"


async def _status(coro) -> int:
    with pytest.raises(InvalidStatus) as exc:
        await coro
    return exc.value.response.status_code


async def test_right_password_connects_on_both_paths(ocpp, charger, open_charger):
    c = await open_charger(ocpp.ws_url)
    assert c.ws.subprotocol == "ocpp1.6"
    assert (await c.boot())["status"] == "Accepted"
    await c.ws.close()
    steve = ocpp.ws_url.replace("/ocpp", "/steve/websocket/CentralSystemService")
    c = await open_charger(steve)
    assert (await c.boot())["status"] == "Accepted"
    await c.ws.close()


async def test_wrong_missing_and_mismatched_credentials_get_401(ocpp, charger, open_charger):
    assert await _status(open_charger(ocpp.ws_url, password="wrong-password-123456")) == 401
    assert await _status(open_charger(ocpp.ws_url, password=None)) == 401
    mismatched = connect(f"{ocpp.ws_url}/CB-0001", subprotocols=["ocpp1.6"],
                         additional_headers={"Authorization": "Basic " + base64.b64encode(
                             f"OTHER:{KEY}".encode()).decode()})
    assert await _status(mismatched) == 401
    garbage = connect(f"{ocpp.ws_url}/CB-0001", subprotocols=["ocpp1.6"],
                      additional_headers={"Authorization": "Basic %%%"})
    assert await _status(garbage) == 401


async def test_401_carries_www_authenticate(ocpp, charger):
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{ocpp.ws_url.replace('ws://', 'http://')}/CB-0001", headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Protocol": "ocpp1.6"}) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Basic")


async def test_lowercase_authorization_header_and_percent_encoded_id(ocpp, pool, conn):
    from polaris.db.repos import charge_boxes

    await charge_boxes.add_charge_boxes(conn, ["CB:01"], KEY)
    ws = await connect(f"{ocpp.ws_url}/CB%3A01", subprotocols=["ocpp1.6"], additional_headers={
        "authorization": "Basic " + base64.b64encode(f"CB:01:{KEY}".encode()).decode()})
    await ws.close()


async def test_unknown_charger_refused_by_default(ocpp, open_charger, conn):
    # SteVe answers an id it does not know with 404 (its handshake handler), so do we.
    assert await _status(open_charger(ocpp.ws_url, "NEW-1", KEY)) == 404
    assert await conn.fetchval("SELECT count(*) FROM ocpp.charge_boxes") == 0


async def test_unknown_charger_registered_pending_when_configured(ocpp_settings, pool, conn, open_charger,
                                                                   server_factory):
    settings = ocpp_settings.model_copy(update={"OCPP_UNKNOWN_CHARGERS": "pending"})
    server, runner, running = await server_factory(settings, pool)
    try:
        c = await open_charger(running.ws_url, "NEW-1", KEY)
        assert (await c.boot())["status"] == "Pending"
        await c.ws.close()
        row = await conn.fetchrow("SELECT * FROM ocpp.charge_boxes WHERE charge_box_id = 'NEW-1'")
        assert row["registration_status"] == "Pending"
        # The first password became its key: another one is refused.
        server.admission.forget()
        assert await _status(open_charger(running.ws_url, "NEW-1", "another-password-1234")) == 401
        await conn.execute("UPDATE ocpp.charge_boxes SET registration_status = 'Accepted'")
        c = await open_charger(running.ws_url, "NEW-1", KEY)
        assert (await c.boot())["status"] == "Accepted"
        await c.ws.close()
    finally:
        await runner.cleanup()
        await server.close()


async def test_subprotocols(ocpp, charger, open_charger):
    # None offered (Grizzl-E and others): accepted as OCPP 1.6J.
    c = await open_charger(ocpp.ws_url, subprotocols=[])
    assert c.ws.subprotocol is None
    assert (await c.boot())["status"] == "Accepted"
    await c.ws.close()
    # Of several offered, the newest we speak wins, whatever the client's order.
    c = await open_charger(ocpp.ws_url, subprotocols=["ocpp1.6", "ocpp2.0.1"])
    assert c.ws.subprotocol == "ocpp2.0.1"
    await c.ws.close()
    c = await open_charger(ocpp.ws_url, subprotocols=["ocpp1.5", "ocpp1.6"])
    assert c.ws.subprotocol == "ocpp1.6"
    await c.ws.close()
    with pytest.raises(InvalidStatus) as exc:
        await open_charger(ocpp.ws_url, subprotocols=["ocpp1.5"])
    assert exc.value.response.status_code == 400
    assert b"ocpp2.0.1" in exc.value.response.body and b"ocpp1.6" in exc.value.response.body


async def test_unknown_path_is_404_and_healthz_answers(ocpp, charger):
    with pytest.raises(InvalidStatus) as exc:
        await connect(ocpp.ws_url.replace("/ocpp", "/elsewhere") + "/CB-0001")
    assert exc.value.response.status_code == 404
    async with aiohttp.ClientSession() as s:
        async with s.get(ocpp.ws_url.replace("ws://", "http://").replace("/ocpp", "/healthz")) as r:
            assert r.status == 200


async def test_second_connection_replaces_the_first(ocpp, charger, open_charger, conn, wait_until):
    first = await open_charger(ocpp.ws_url)
    await first.boot()
    second = await open_charger(ocpp.ws_url)
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(5):
            await first.ws.recv()
    assert first.ws.close_reason == "replaced by a new connection"
    assert (await second.boot())["status"] == "Accepted"
    assert ocpp.server.connections["CB-0001"]._connection is not None
    assert len(ocpp.server.connections) == 1
    # The old socket's goodbye must not mark the charger disconnected.
    await asyncio.sleep(0.5)  # past the connection-state batch
    assert await conn.fetchval("SELECT connected FROM ocpp.charge_boxes") is True
    await second.ws.close()
    await wait_until(lambda: conn.fetchval("SELECT NOT connected FROM ocpp.charge_boxes"))


async def test_known_charger_reconnects_while_database_is_down(ocpp, charger, open_charger, monkeypatch):
    c = await open_charger(ocpp.ws_url)
    await c.ws.close()
    await ocpp.server.pool.close()
    monkeypatch.setattr(admission, "AUTH_CACHE_FRESH_S", 0.0)  # force a (failing) DB lookup
    c = await open_charger(ocpp.ws_url)
    assert "currentTime" in await c.ok("Heartbeat", {})
    await c.ws.close()
    assert await _status(open_charger(ocpp.ws_url, password="wrong-password-123456")) == 401
    assert await _status(open_charger(ocpp.ws_url, "NEVER-SEEN", KEY)) == 503


async def test_tls_security_profile_2(ocpp_settings, pool, charger, open_charger, server_factory, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    settings = ocpp_settings.model_copy(update={"OCPP_TLS_CERT": cert_path, "OCPP_TLS_KEY": key_path})
    server, runner, running = await server_factory(settings, pool,
                                                   ssl_context=server_module.tls_context(settings))
    try:
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        c = await open_charger(running.ws_url, ssl=client_ctx)
        assert running.ws_url.startswith("wss://")
        assert (await c.boot())["status"] == "Accepted"
        await c.ws.close()
        assert await _status(open_charger(running.ws_url, password="wrong-password-123456",
                                          ssl=client_ctx)) == 401
    finally:
        await runner.cleanup()
        await server.close()


def test_open_file_limit_is_raised():
    import resource

    server_module.raise_open_file_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY

async def test_polaris_ocpp_subprocess_serves_and_exits_0_on_sigterm(settings, charger, tmp_path,
                                                                      open_charger):
    port, api_port, nothing_there = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in type(settings).model_fields}
    env.update({
        "DATABASE_URL": settings.database_url,
        "STEVE_API_KEY": settings.STEVE_API_KEY.get_secret_value(),
        "STEVE_PREAUTH_HMAC_KEY": settings.STEVE_PREAUTH_HMAC_KEY.get_secret_value(),
        "WEB_INTERNAL_URL": f"http://127.0.0.1:{nothing_there}",
        "LOG_FORMAT": "json",
    })
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "ocpp", "--host", "127.0.0.1", "--port", str(port),
        "--api-port", str(api_port), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        api = f"http://127.0.0.1:{api_port}"
        auth = {"Authorization": "Basic " + base64.b64encode(
            f"admin:{settings.STEVE_API_KEY.get_secret_value()}".encode()).decode()}
        async with aiohttp.ClientSession() as s:
            async with asyncio.timeout(20):
                while True:
                    try:
                        async with s.get(api + "/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
            c = await open_charger(f"ws://127.0.0.1:{port}/ocpp")
            assert (await c.boot())["status"] == "Accepted"
            async with s.get(api + "/api/v1/status", headers=auth) as r:
                assert (await r.json())["connected"] == 1
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                await c.ws.recv()
        assert c.ws.close_code == 1001  # going away: the charger reconnects elsewhere / later
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_polaris_ocpp_refuses_to_start_without_database_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "ocpp", "--port", "0", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert b"DATABASE_URL" in err



async def test_reconnect_storm_state_is_batched_and_complete(ocpp, conn, open_charger, wait_until):
    from polaris.db.repos import charge_boxes

    ids = [f"STORM-{i:03d}" for i in range(60)]
    await charge_boxes.add_charge_boxes(conn, ids, KEY)
    clients = await asyncio.gather(*(open_charger(ocpp.ws_url, cbid) for cbid in ids))
    await wait_until(lambda: conn.fetchval(
        "SELECT count(*) = 60 FROM ocpp.charge_boxes WHERE connected AND connected_instance = 'test'"))
    await asyncio.gather(*(c.ws.close() for c in clients))
    await wait_until(lambda: conn.fetchval("SELECT NOT bool_or(connected) FROM ocpp.charge_boxes"))
