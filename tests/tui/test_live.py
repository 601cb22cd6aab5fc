"""Live status over the admin API's real SSE stream: the OCPP server records a charger's
StatusNotification, the web process publishes it, the console's table shows it without a reload."""

from __future__ import annotations

import asyncio

from polaris.tui.api_client import AdminClient
from polaris.tui.app import PolarisApp
from polaris.tui.events import EventStream
from polaris.tui.screens.chargers import ChargersScreen


async def until(pilot, condition, wait: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.1)


async def test_status_changes_arrive_live_in_the_table(live_web, clock):
    live_web.require("GET", "/api/admin/v1/events")
    await live_web.add_chargers([f"CP-{k:04d}" for k in range(1, 21)])
    sim = await live_web.connect_charger("LIVE-1", connectors=2)
    app = PolarisApp(live_web.url, token=await live_web.token(), clock=clock, live=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, ChargersScreen) and len(app.store.rows) == 21)
        await until(pilot, lambda: app.live_connected)
        row = app.store.rows[app.store.index["LIVE-1"]]
        assert row.status == "Available"
        loads = []
        original = app.api.iter_chargers
        app.api.iter_chargers = lambda *a, **k: (loads.append(1), original(*a, **k))[1]

        # Connector 2 taken out of service: the charger answers, then sends a real
        # StatusNotification, which comes back to the console over SSE.
        result = await app.api.operation("LIVE-1", "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})
        assert result.status == "Accepted"
        await until(pilot, lambda: row.connectors.get(2) == "Unavailable")
        assert row.status == "Unavailable" and row.connectors[1] == "Available"

        # It drops off: the disconnect arrives live too.
        await sim.stop()
        await until(pilot, lambda: not row.connected)
        assert row.status == "Offline"
        assert loads == []  # no reload: the stream alone updated the table


async def test_event_stream_resumes_after_the_last_event_id(live_web):
    live_web.require("GET", "/api/admin/v1/events")
    token = await live_web.token()
    states: list[bool] = []
    async with AdminClient(live_web.url, token) as api:
        stream = EventStream(api, on_state=lambda ok, why: states.append(ok))
        seen = []

        async def read(n: int) -> None:
            async for event in stream:
                seen.append(event)
                if len(seen) >= n:
                    return

        reader = asyncio.create_task(read(1))
        await asyncio.sleep(0.5)
        sim = await live_web.connect_charger("LIVE-2")
        await asyncio.wait_for(reader, 30)
        assert seen[0].type.startswith("charger.") and seen[0].data["charge_box_id"] == "LIVE-2"
        assert stream.parser.last_event_id == seen[0].id
        first_id = int(seen[0].id)
        # A new connection with Last-Event-ID replays only what came after.
        await sim.stop()
        reader = asyncio.create_task(read(2))
        await asyncio.wait_for(reader, 30)
        assert int(seen[1].id) > first_id
        assert states and states[0] is True


async def test_revoked_token_stops_the_stream(live_web):
    live_web.require("GET", "/api/admin/v1/events")
    async with AdminClient(live_web.url, "not-a-token") as api:
        states: list[tuple[bool, str | None]] = []
        stream = EventStream(api, on_state=lambda ok, why: states.append((ok, why)))
        got = [e async for e in stream]
    assert got == [] and states == [(False, "not authorized for live events")]


async def test_a_refused_card_is_shown_to_the_operator_with_its_reason(live_web, clock):
    import json
    import secrets
    import time

    import httpx

    from polaris.db.repos import id_tags
    from polaris.services import hooks

    live_web.require("GET", "/api/admin/v1/events")
    async with live_web.pool.acquire() as conn:
        await id_tags.add_id_tag(conn, "LOOSE-1")  # registered, no customer
    app = PolarisApp(live_web.url, token=await live_web.token(), clock=clock, live=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await until(pilot, lambda: app.live_connected)
        raw = json.dumps({"idTag": "LOOSE-1", "chargeBoxId": "CB-9", "connectorId": 2, "isStartTx": True,
                          "ts": int(time.time() * 1000), "nonce": secrets.token_urlsafe(16)}).encode()
        key = live_web.settings.STEVE_PREAUTH_HMAC_KEY.get_secret_value()
        async with httpx.AsyncClient() as http:
            resp = await http.post(live_web.url + hooks.PRE_AUTHORIZE_PATH, content=raw,
                                   headers={"Content-Type": "application/json", "X-Signature": hooks.sign(key, raw)})
        assert resp.json() == {"override": "BLOCKED"}
        await until(pilot, lambda: any(n.title == "Card refused" for n in app._notifications))
        (note,) = [n for n in app._notifications if n.title == "Card refused"]
        assert note.message == ("Card LOOSE-1 at CB-9 connector 2: card not linked to a customer "
                                "(CHARGING_POLICY=subscription)")
