"""The customer portal: server-rendered pages on the customer host, and the customer JSON API.

`setup(app)` is called by the web app factory (polaris.services.app).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from polaris.customer_web import api
from polaris.customer_web.common import JINJA
from polaris.customer_web.security import add_security_headers, error_pages
from polaris.customer_web.views import account, auth, charge, sessions

HERE = Path(__file__).parent
STATIC_PREFIX = "/static/portal/"


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return ""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        app_key=JINJA,
        autoescape=jinja2.select_autoescape(default=True),
    )
    env.filters["duration"] = _duration
    env.filters["when"] = _when
    env.globals["static"] = lambda name: STATIC_PREFIX + name
    # Before the auth middleware, so its refusals (a form without its CSRF token) get a page too.
    auth_at = next((i for i, m in enumerate(app.middlewares) if m.__name__ == "auth_middleware"),
                   len(app.middlewares))
    app.middlewares.insert(auth_at, error_pages)
    app.on_response_prepare.append(add_security_headers)
    for module in (auth, charge, sessions, account):
        app.router.add_routes(module.routes)
    app.router.add_static(STATIC_PREFIX, HERE / "static", name="portal_static", append_version=False)
    api.setup(app)
