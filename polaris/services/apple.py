"""`GET /.well-known/apple-app-site-association`: the Universal Links manifest the original
product's iOS app expects, on the admin and the customer host alike.

Built from settings (APNS_TEAM_ID and APNS_TOPIC, the app's team and bundle id): the app id
is `<team>.<bundle>`, with the original's two link paths, the device-registration landing
page (`/expresscan/register/*`) and a customer's card QR (`/u/*`). Without both settings it
answers 404, so Apple's validator never caches a manifest naming no app.
"""

from __future__ import annotations

import json

from aiohttp import web

from polaris.config import Settings
from polaris.services.appkeys import SETTINGS

PATH = "/.well-known/apple-app-site-association"
LINK_PATHS = ("/expresscan/register/*", "/u/*")


def manifest(settings: Settings) -> dict | None:
    if not settings.APNS_TEAM_ID or not settings.APNS_TOPIC:
        return None
    app_id = f"{settings.APNS_TEAM_ID}.{settings.APNS_TOPIC}"
    return {
        "applinks": {
            "apps": [],
            "details": [{"appIDs": [app_id], "components": [{"/": p} for p in LINK_PATHS]}],
        }
    }


async def association(request: web.Request) -> web.Response:
    doc = manifest(request.config_dict[SETTINGS])
    if doc is None:
        return web.json_response(
            {"error": "not_found", "message": "set APNS_TEAM_ID and APNS_TOPIC (the iOS app's team and bundle id)"},
            status=404,
        )
    # Apple fetches it without auth, follows no redirect, and caches it.
    return web.Response(text=json.dumps(doc), content_type="application/json",
                        headers={"Cache-Control": "public, max-age=3600"})


def setup(app: web.Application) -> None:
    app.router.add_get(PATH, association, name="apple_app_site_association")
