"""Sites: grid limits, circuits, chargers' ranges, and the live load the controller sees."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from polaris.db.repos import sites
from polaris.services.admin import actions
from polaris.services.admin.chargers import ChargerParams
from polaris.services.admin.common import actor_of, pool
from polaris.services.errors import ApiError
from polaris.services.openapi import Call, Model, Out, add_endpoints, endpoint

TAG = "sites"
BASE = "/api/admin/v1/sites"
SiteName = Field(min_length=1, max_length=200)


class SiteParams(Model):
    name: str = SiteName


class CircuitParams(SiteParams):
    circuit: str = Field(min_length=1, max_length=200)


class SiteOut(Out):
    id: int
    name: str
    address: str | None = None
    limit_amps: float | None = Field(None, description="grid limit per phase (A); null: not managed")
    limit_kw: float | None = None
    phases: int
    margin_amps: float
    policy: str
    chargers: int | None = None
    drawn_amps: list[float] | None = Field(None, description="what the cars draw now, per phase (A)")
    allocated_amps: list[float] | None = None
    over_since: datetime | None = None
    controller: str | None = Field(None, description="the OCPP server instance managing the site")


class SitePage(Out):
    items: list[SiteOut]


class SitePut(Model):
    limit_amps: float | None = Field(None, gt=0, le=10_000)
    limit_kw: float | None = Field(None, gt=0, le=100_000)
    phases: Literal[1, 3] | None = None
    margin_amps: float | None = Field(None, ge=0, le=10_000)
    policy: Literal["equal", "first_come"] | None = None
    address: str | None = Field(None, max_length=500)


class CircuitPut(Model):
    limit_amps: float = Field(gt=0, le=10_000)
    parent: str | None = Field(None, min_length=1, max_length=200, description="another circuit of the site")


class ChargerLoadPatch(Model):
    circuit: str | None = Field(None, max_length=200, description="null: straight under the site")
    min_amps: float | None = Field(None, ge=0, le=1000)
    max_amps: float | None = Field(None, gt=0, le=1000)


class CircuitOut(Out):
    name: str
    limit_amps: float
    parent: str | None = None


class ChargerLoadOut(Out):
    circuit: str | None = None
    min_amps: float | None = None
    max_amps: float | None = None


class SiteDetailOut(Out):
    site: dict[str, Any]
    circuits: list[dict[str, Any]]
    load: dict[str, Any] | None
    sessions: list[dict[str, Any]]
    chargers: list[dict[str, Any]]


@endpoint("GET", BASE, summary="Sites with their limits and live load", tag=TAG, response=SitePage)
async def list_sites(request: web.Request, call: Call) -> SitePage:
    async with pool(request).acquire() as conn:
        rows = await sites.list_sites(conn)
    return SitePage(items=[SiteOut.model_validate(dict(r)) for r in rows])


@endpoint("GET", BASE + "/{name}", summary="One site: limits, circuits, live totals, each session's allocation",
          tag=TAG, params=SiteParams, response=SiteDetailOut)
async def get_site(request: web.Request, call: Call) -> SiteDetailOut:
    async with pool(request).acquire() as conn:
        view = await sites.site_view(conn, call.params.name)
    if view is None:
        raise ApiError(404, "not_found", f"no site {call.params.name}")
    return SiteDetailOut.model_validate(view)


@endpoint("PUT", BASE + "/{name}", summary="Create a site or set its grid limit, phases, margin and policy",
          tag=TAG, params=SiteParams, body=SitePut, response=SiteOut)
async def put_site(request: web.Request, call: Call) -> SiteOut:
    body = call.body.model_dump(exclude_unset=True)
    address = body.pop("address", None)
    async with pool(request).acquire() as conn:
        await actions.set_site(conn, actor_of(request, call), call.params.name, body, address=address)
        row = await sites.get_site(conn, call.params.name)
    return SiteOut.model_validate(dict(row))


@endpoint("PUT", BASE + "/{name}/circuits/{circuit}", summary="Create or change a circuit (breaker) of a site",
          tag=TAG, params=CircuitParams, body=CircuitPut, response=CircuitOut)
async def put_circuit(request: web.Request, call: Call) -> CircuitOut:
    async with pool(request).acquire() as conn:
        row = await actions.set_circuit(conn, actor_of(request, call), call.params.name, call.params.circuit,
                                        call.body.limit_amps, parent=call.body.parent)
    return CircuitOut(name=row["name"], limit_amps=row["limit_amps"], parent=call.body.parent)


@endpoint("PATCH", "/api/admin/v1/chargers/{charge_box_id}/load",
          summary="A charger's circuit and its own min/max current for load management",
          tag=TAG, params=ChargerParams, body=ChargerLoadPatch, response=ChargerLoadOut)
async def patch_charger_load(request: web.Request, call: Call) -> ChargerLoadOut:
    async with pool(request).acquire() as conn:
        return ChargerLoadOut.model_validate(await actions.set_charger_load(conn, actor_of(request, call), call.params.charge_box_id,
                                              call.body.model_dump(exclude_unset=True)))


def setup(app: web.Application) -> None:
    add_endpoints(app, list_sites, get_site, put_site, put_circuit, patch_charger_load)
