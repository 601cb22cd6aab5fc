"""Live events for admins: GET /api/admin/v1/events (SSE), served by the event bus module.

The stream itself (topics, Last-Event-ID replay) lives in polaris.services.events; this
module only routes it on the admin host when that module is present.
"""

from __future__ import annotations

import importlib
import importlib.util

from aiohttp import web


def setup(app: web.Application) -> None:
    if importlib.util.find_spec("polaris.services.events") is None:
        return
    events = importlib.import_module("polaris.services.events")
    if hasattr(events, "admin_events"):
        app.router.add_get("/api/admin/v1/events", events.admin_events, name="admin_events")
