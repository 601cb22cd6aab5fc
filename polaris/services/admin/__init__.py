"""The admin JSON API (`/api/admin/v1/...`): one module of views per area."""

from __future__ import annotations

import importlib

from aiohttp import web

from polaris.services import openapi

AREAS = (
    "dashboard",
    "chargers",
    "transactions",
    "customers",
    "users",
    "id_tags",
    "billing",
    "audit_log",
    "live",
    "alerts",
)


def setup(app: web.Application) -> None:
    openapi.setup(app)
    for area in AREAS:
        name = f"{__name__}.{area}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # area not written yet
        module.setup(app)
