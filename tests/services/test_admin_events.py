"""The admin live stream (/api/admin/v1/events) as the app factory routes it: auth and delivery."""

from __future__ import annotations

import asyncio

from polaris.services import live


async def test_admin_stream_needs_staff_and_delivers(api, web_app, admin, make_user):
    assert (await api.get("/api/admin/v1/events")).status == 401
    resp = await api.get("/api/admin/v1/events", headers={"Host": "localhost:8000", **admin.headers})
    assert resp.status == 404, "admin stream only on the admin host"

    resp = await api.get("/api/admin/v1/events", headers=admin.headers)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    bus = web_app[live.EVENT_BUS]
    await bus.publish([live.ADMIN_TOPIC], "charger.status", {"charge_box_id": "CB-1", "status": "Faulted"})
    received = b""
    async with asyncio.timeout(5):
        while b"charger.status" not in received:
            received += await resp.content.readany()
    assert b"CB-1" in received
    resp.close()
