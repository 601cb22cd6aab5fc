"""The admin JSON API (`/api/admin/v1/...`): its OpenAPI document and one module of views per area.

The views parse and present; what a change does (its transaction, audit entry and mail)
is in polaris.services.admin.actions, which `polaris admin ...` calls too.
"""

from __future__ import annotations

from aiohttp import web

from polaris.services import openapi
from polaris.services.admin import (
    alerts,
    audit_log,
    billing,
    chargers,
    customers,
    dashboard,
    id_tags,
    live,
    sites,
    transactions,
    users,
)


def setup(app: web.Application) -> None:
    openapi.setup(app)
    # In this order (the OpenAPI document lists the areas so).
    dashboard.setup(app)
    chargers.setup(app)
    transactions.setup(app)
    customers.setup(app)
    users.setup(app)
    id_tags.setup(app)
    billing.setup(app)
    audit_log.setup(app)
    live.setup(app)
    alerts.setup(app)
    sites.setup(app)
