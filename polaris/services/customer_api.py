"""The customer side's JSON API (`/api/v1/...`, customer host) — the part this process owns.

The portal pages and most customer endpoints come with the portal; device registration
(push) and the live event stream are wired in by their own modules.
"""

from __future__ import annotations

from aiohttp import web

from polaris.services.auth.middleware import require_user


async def me(request: web.Request) -> web.Response:
    """The signed-in customer (the iOS app checks its session with this)."""
    user = require_user(request)
    return web.json_response(
        {"id": user.id, "email": user.email, "role": user.role, "customer_id": user.customer_id}
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/me", me, name="customer_me")
