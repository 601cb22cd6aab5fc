"""Live events for admins: GET /api/admin/v1/events (SSE), served by the live-events package.

The stream itself (topics, Last-Event-ID replay) lives in polaris.services.live; this
module routes it on the admin API.
"""

from __future__ import annotations

from aiohttp import web

from polaris.services.live import admin_events


def setup(app: web.Application) -> None:
    app.router.add_get("/api/admin/v1/events", admin_events, name="admin_events")
