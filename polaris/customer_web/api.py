"""The customer JSON API for the iOS app (`/api/v1/...` on the customer host), with its own
OpenAPI document at /api/v1/openapi.json. (Device registration for push and the live event
stream are routed by their own modules, polaris.services.push and the event stream's.)

Each endpoint calls the same function in `portal` as the matching page, so the app and
the portal can never disagree. Sign-in ends in a bearer token; cookie-authenticated
writes need the X-CSRF-Token header like everywhere else.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from polaris.customer_web import portal
from polaris.services import appkeys, expresscan_openapi
from polaris.services.auth.middleware import require_user
from polaris.services.auth.views import client_ip
from polaris.services.live import jsonable
from polaris.services.openapi import Call, Model, endpoint, openapi_document

CUSTOMER = ("customer",)
TAG_AUTH, TAG_CHARGE, TAG_SESSIONS, TAG_CARDS, TAG_BILLING, TAG_ACCOUNT = (
    "sign in", "charging", "sessions", "cards", "billing", "account",
)
ENDPOINTS = web.AppKey("customer_api_endpoints", list)
_DOC = web.AppKey("customer_api_doc", dict)


# ------------------------------------------------------------------ models


class LinkRequest(Model):
    email: str = Field(min_length=3, max_length=254)
    return_to: str | None = Field(None, max_length=300, description="a path on the customer host")


class LinkSent(BaseModel):
    email: str
    message: str


class ConsumeBody(Model):
    token: str = Field(min_length=20, max_length=200, description="the last path segment of the emailed link")
    device_name: str = Field("iPhone", min_length=1, max_length=100)


class AppToken(BaseModel):
    token: str = Field(description="send as Authorization: Bearer <token>")
    user_id: int
    return_to: str | None


class PublicIdParams(Model):
    public_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class IdParams(Model):
    id: int = Field(ge=1, le=2**31 - 1)


class ConnectorOut(BaseModel):
    connector_id: int
    status: str | None
    status_text: str
    available: bool
    refusal: str | None
    my_transaction_id: int | None


class CardOut(BaseModel):
    id: int
    id_tag: str
    label: str | None
    blocked: bool
    expiry_date: datetime | None
    last_seen_at: datetime | None


class ChargerOut(BaseModel):
    public_id: str
    charge_box_id: str
    name: str
    site_name: str | None
    site_address: str | None
    online: bool
    connectors: list[ConnectorOut]
    price_per_kwh: str | None
    currency: str | None
    plan: str | None
    may_charge: bool
    refusal: str | None
    cards: list[CardOut]


class StartBody(Model):
    connector_id: int = Field(ge=1, le=100)
    card_id: int | None = Field(None, ge=1, le=2**63 - 1)


class StartOut(BaseModel):
    transaction_id: int | None = Field(description="null: the charger accepted but has not started yet")
    message: str | None


# One session: the portal's own model (its pages render the same), served as is.
SessionOut = portal.SessionOut


class SessionList(BaseModel):
    items: list[SessionOut]
    next_before: int | None = Field(description="pass as `before` for older sessions")


class SessionQuery(Model):
    before: int | None = Field(None, ge=1, le=2**31 - 1)
    limit: int = Field(50, ge=1, le=500)


class EnergyPoint(BaseModel):
    at: datetime
    kwh: float


class CardList(BaseModel):
    items: list[CardOut]


class CardPatch(Model):
    label: str = Field(max_length=60)


class PairingBody(Model):
    public_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class PairingOut(BaseModel):
    id: int
    state: str = Field(description="armed, linked, refused, expired or cancelled")
    charge_box_id: str
    expires_at: datetime
    message: str | None
    card: CardOut | None


class InvoiceOut(BaseModel):
    id: int
    number: str | None
    issuing_date: date | None
    status: str | None
    payment_status: str | None
    currency: str | None
    total_amount_cents: int | None
    total: str | None
    file_url: str | None


class BillingOut(BaseModel):
    subscription_id: str | None
    subscription_status: str | None
    plan: str | None
    price_per_kwh: str | None
    currency: str | None
    invoices: list[InvoiceOut]


class ProfileOut(BaseModel):
    email: str
    name: str | None
    receipts_enabled: bool
    subscription_id: str | None


class ProfilePatch(Model):
    name: str | None = Field(None, max_length=100)
    receipts_enabled: bool | None = None


class EmailChange(Model):
    email: str = Field(min_length=3, max_length=254)


# ------------------------------------------------------------------ sign in


@endpoint("POST", "/api/v1/auth/magic-link", summary="Email a sign-in link", tag=TAG_AUTH, roles=None,
          body=LinkRequest, response=LinkSent, status=202, errors=(429,))
async def request_magic_link(request: web.Request, call: Call) -> LinkSent:
    """The answer is the same whether or not the address has an account."""
    email = await portal.request_link(request.app, call.body.email, ip=client_ip(request),
                                      return_to=call.body.return_to)
    return LinkSent(email=email, message=portal.text("link_sent_body", email=email))


@endpoint("POST", "/api/v1/auth/magic-link/consume", summary="Use a sign-in link; get a bearer token",
          tag=TAG_AUTH, roles=None, body=ConsumeBody, response=AppToken, errors=(404, 410))
async def consume_magic_link(request: web.Request, call: Call) -> AppToken:
    """The app opens the emailed link (a universal link) and posts its token here, once."""
    link = await portal.consume_link(request.app, call.body.token)
    token = await portal.issue_app_token(request.app, link["user_id"], name=call.body.device_name)
    return AppToken(token=token, user_id=link["user_id"], return_to=link["return_to"])


@endpoint("POST", "/api/v1/auth/signout-everywhere", summary="End every session and revoke every token",
          tag=TAG_AUTH, roles=CUSTOMER, status=204)
async def signout_everywhere(request: web.Request, call: Call) -> None:
    await portal.sign_out_everywhere(request.app, call.user)


async def me(request: web.Request) -> web.Response:
    """The signed-in person (the iOS app checks its session with this); documented by hand below."""
    user = require_user(request)
    return web.json_response(
        {"id": user.id, "email": user.email, "role": user.role, "customer_id": user.customer_id}
    )


# ------------------------------------------------------------------ charging


def _card(row: Any) -> CardOut:
    return CardOut(**{k: row[k] for k in CardOut.model_fields})


@endpoint("GET", "/api/v1/chargers/{public_id}", summary="A charger by the public id in its QR code",
          tag=TAG_CHARGE, roles=None, params=PublicIdParams, response=ChargerOut)
async def get_charger(request: web.Request, call: Call) -> ChargerOut:
    view = await portal.charger_view(request.app, call.params.public_id, call.user)
    return ChargerOut(
        public_id=view.public_id, charge_box_id=view.charge_box_id, name=view.name,
        site_name=view.site_name, site_address=view.site_address, online=view.online,
        connectors=[ConnectorOut(**c.__dict__) for c in view.connectors],
        price_per_kwh=str(view.price.per_kwh) if view.price.per_kwh is not None else None,
        currency=view.price.currency, plan=view.price.plan, may_charge=view.may_charge,
        refusal=view.refusal, cards=[_card(c) for c in view.cards],
    )


@endpoint("POST", "/api/v1/chargers/{public_id}/start", summary="Start charging (RemoteStartTransaction)",
          tag=TAG_CHARGE, roles=CUSTOMER, params=PublicIdParams, body=StartBody, response=StartOut,
          errors=(409, 502, 504))
async def start_charging(request: web.Request, call: Call) -> StartOut:
    tx = await portal.start_charging(request.app, call.user, call.params.public_id, call.body.connector_id,
                                     call.body.card_id)
    return StartOut(transaction_id=tx, message=None if tx else portal.text("start_waiting"))


# ------------------------------------------------------------------ sessions


@endpoint("GET", "/api/v1/sessions", summary="My sessions, newest first", tag=TAG_SESSIONS, roles=CUSTOMER,
          query=SessionQuery, response=SessionList)
async def list_sessions(request: web.Request, call: Call) -> SessionList:
    views = await portal.list_sessions(request.app, call.user, limit=call.query.limit + 1,
                                       before_id=call.query.before)
    more = len(views) > call.query.limit
    views = views[: call.query.limit]
    return SessionList(items=views, next_before=views[-1].id if more else None)


@endpoint("GET", "/api/v1/sessions/{id}", summary="One session with live figures (poll this, or follow "
          "/api/v1/events)", tag=TAG_SESSIONS, roles=CUSTOMER, params=IdParams, response=SessionOut)
async def get_session(request: web.Request, call: Call) -> SessionOut:
    return await portal.session_view(request.app, call.user, call.params.id)


@endpoint("GET", "/api/v1/sessions/{id}/energy", summary="Energy over time of one session", tag=TAG_SESSIONS,
          roles=CUSTOMER, params=IdParams, response={"type": "array", "items": {"type": "object"}})
async def session_energy(request: web.Request, call: Call) -> list[EnergyPoint]:
    points = await portal.session_chart_points(request.app, call.user, call.params.id)
    return [EnergyPoint(at=t, kwh=round(k, 3)) for t, k in points]


@endpoint("POST", "/api/v1/sessions/{id}/stop", summary="Stop charging (RemoteStopTransaction)",
          tag=TAG_SESSIONS, roles=CUSTOMER, params=IdParams, status=204, errors=(409, 502, 504))
async def stop_session(request: web.Request, call: Call) -> None:
    await portal.stop_charging(request.app, call.user, call.params.id)


@endpoint("GET", "/api/v1/sessions.csv", summary="My sessions as CSV", tag=TAG_SESSIONS, roles=CUSTOMER,
          response={"type": "string"})
async def sessions_csv(request: web.Request, call: Call) -> web.Response:
    body = await portal.sessions_csv(request.app, call.user)
    return web.Response(text=body, content_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="sessions.csv"'})


# ------------------------------------------------------------------ cards


@endpoint("GET", "/api/v1/cards", summary="My cards", tag=TAG_CARDS, roles=CUSTOMER, response=CardList)
async def list_cards(request: web.Request, call: Call) -> CardList:
    return CardList(items=[_card(r) for r in await portal.list_cards(request.app, call.user)])


@endpoint("PATCH", "/api/v1/cards/{id}", summary="Name a card", tag=TAG_CARDS, roles=CUSTOMER,
          params=IdParams, body=CardPatch, response=CardOut)
async def name_card(request: web.Request, call: Call) -> CardOut:
    return _card(await portal.name_card(request.app, call.user, call.params.id, call.body.label))


@endpoint("POST", "/api/v1/cards/{id}/lost", summary="Report a card lost (blocked at once)", tag=TAG_CARDS,
          roles=CUSTOMER, params=IdParams, response=CardOut)
async def report_lost(request: web.Request, call: Call) -> CardOut:
    return _card(await portal.report_lost(request.app, call.user, call.params.id))


def _pairing(result: portal.PairingResult) -> PairingOut:
    return PairingOut(id=result.id, state=result.state, charge_box_id=result.charge_box_id,
                      expires_at=result.expires_at, message=result.message,
                      card=_card(result.card) if result.card is not None else None)


@endpoint("POST", "/api/v1/pairings", summary="Wait for a card tapped at a charger, to link it",
          tag=TAG_CARDS, roles=CUSTOMER, body=PairingBody, response=PairingOut, status=201)
async def arm_pairing(request: web.Request, call: Call) -> PairingOut:
    row = await portal.arm_link_pairing(request.app, call.user, call.body.public_id)
    return PairingOut(id=row["id"], state="armed", charge_box_id=row["charge_box_id"],
                      expires_at=row["expires_at"], message=None, card=None)


@endpoint("GET", "/api/v1/pairings/{id}", summary="The pairing window's state (links the tapped card)",
          tag=TAG_CARDS, roles=CUSTOMER, params=IdParams, response=PairingOut)
async def get_pairing(request: web.Request, call: Call) -> PairingOut:
    return _pairing(await portal.link_pairing_result(request.app, call.user, call.params.id))


# ------------------------------------------------------------------ billing and account


@endpoint("GET", "/api/v1/billing", summary="My subscription, price per kWh and invoices", tag=TAG_BILLING,
          roles=CUSTOMER, response=BillingOut)
async def billing(request: web.Request, call: Call) -> BillingOut:
    return BillingOut(**await portal.billing_view(request.app, call.user))


def _profile(row: Any) -> ProfileOut:
    return ProfileOut(email=row["email"], name=row["name"], receipts_enabled=row["receipts_enabled"],
                      subscription_id=row["lago_subscription_id"])


@endpoint("GET", "/api/v1/profile", summary="My profile", tag=TAG_ACCOUNT, roles=CUSTOMER, response=ProfileOut)
async def get_profile(request: web.Request, call: Call) -> ProfileOut:
    return _profile(await portal.profile(request.app, call.user))


@endpoint("PATCH", "/api/v1/profile", summary="Change my name or receipt emails", tag=TAG_ACCOUNT,
          roles=CUSTOMER, body=ProfilePatch, response=ProfileOut)
async def patch_profile(request: web.Request, call: Call) -> ProfileOut:
    row = await portal.update_profile(request.app, call.user, name=call.body.name,
                                      receipts=call.body.receipts_enabled)
    return _profile(row)


@endpoint("POST", "/api/v1/profile/email", summary="Change my email (confirmed by a link sent there)",
          tag=TAG_ACCOUNT, roles=CUSTOMER, body=EmailChange, response=LinkSent, status=202, errors=(409, 429))
async def change_email(request: web.Request, call: Call) -> LinkSent:
    email = await portal.request_email_change(request.app, call.user, call.body.email, ip=client_ip(request))
    return LinkSent(email=email, message=portal.text("email_change_sent", email=email))


@endpoint("GET", "/api/v1/account/export", summary="Download my data", tag=TAG_ACCOUNT, roles=CUSTOMER,
          response={"type": "object"})
async def export_data(request: web.Request, call: Call) -> web.Response:
    data = jsonable(await portal.export_data(request.app, call.user))
    return web.Response(text=json.dumps(data, default=str), content_type="application/json")


@endpoint("DELETE", "/api/v1/account", summary="Delete my account (keeps what billing law needs)",
          tag=TAG_ACCOUNT, roles=CUSTOMER, status=204)
async def delete_account(request: web.Request, call: Call) -> None:
    await portal.delete_account(request.app, call.user)


HANDLERS = (
    request_magic_link, consume_magic_link, signout_everywhere, get_charger, start_charging,
    list_sessions, sessions_csv, get_session, session_energy, stop_session, list_cards, name_card,
    report_lost, arm_pairing, get_pairing, billing, get_profile, patch_profile, change_email,
    export_data, delete_account,
)


# ------------------------------------------------------------------ document


async def openapi_view(request: web.Request) -> web.Response:
    cache = request.app[_DOC]
    if "doc" not in cache:
        cache["doc"] = customer_openapi(request.app)
    return web.json_response(cache["doc"], dumps=lambda v: json.dumps(v, default=str))


def customer_openapi(app: web.Application) -> dict[str, Any]:
    """The customer API's own document (the admin API has another)."""
    settings = app[appkeys.SETTINGS]
    doc = openapi_document({appkeys.ENDPOINTS: app[ENDPOINTS], appkeys.SETTINGS: settings})  # type: ignore[arg-type]
    doc["info"] = {
        "title": "Polaris Express customer API",
        "version": doc["info"]["version"],
        "description": (
            "What the iOS app (and the portal) can do for a customer. Sign in: POST "
            "/api/v1/auth/magic-link, then POST the emailed link's token to "
            "/api/v1/auth/magic-link/consume for a bearer token. Live updates: GET /api/v1/events "
            "(Server-Sent Events) or poll GET /api/v1/sessions/{id}. Errors are "
            '{"error": code, "message": text}; the message is meant for the person.'
        ),
    }
    doc["servers"] = [{"url": settings.CUSTOMER_BASE_URL.rstrip("/")}]
    # Plain routes (me here, the event stream in its own module) on the same host, for the same clients.
    secured = [{"bearerAuth": []}, {"cookieAuth": []}]
    doc["paths"]["/api/v1/me"] = {"get": {
        "operationId": "me", "summary": "Who am I (the app checks its token with this)", "tags": [TAG_AUTH],
        "security": secured,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                      "401": _error_response("Not signed in")}}}
    doc["paths"]["/api/v1/events"] = {"get": {
        "operationId": "events",
        "summary": "Live updates of my sessions (Server-Sent Events; send Last-Event-ID to resume)",
        "tags": [TAG_SESSIONS], "security": secured,
        "responses": {"200": {"description": "An event stream: session.meter, session.started, "
                              "session.stopped, charger.status, pairing.tapped",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                      "401": _error_response("Not signed in")}}}
    # The original product's iOS app API (its own paths and bodies), over the same services.
    expresscan_openapi.add_to_document(doc)
    return doc


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


def setup(app: web.Application) -> None:
    registry: list = []
    app[ENDPOINTS] = registry
    app[_DOC] = {}
    for h in HANDLERS:
        ep = h.endpoint
        path = ep.path.replace("{id}", r"{id:\d+}")
        app.router.add_route(ep.method, path, h, name=f"customer_api_{h.__name__}")
        registry.append(ep)
    app.router.add_get("/api/v1/me", me, name="customer_me")
    app.router.add_get("/api/v1/openapi.json", openapi_view, name="customer_api_openapi")
