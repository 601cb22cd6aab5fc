"""Cards: list, name, report lost; "tap your card" windows to link a card or sign in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiohttp import web

from polaris.customer_web.portal.base import PortalError, pool_of, require_customer
from polaris.customer_web.strings import text
from polaris.db.errors import NotFound, RepoError
from polaris.db.repos import card_pairings
from polaris.db.repos import customer_portal as repo
from polaris.logs import get_logger
from polaris.services.auth import AuthUser
from polaris.services.errors import ApiError

log = get_logger(__name__)


# ------------------------------------------------------------------ cards


async def list_cards(app: web.Application, user: AuthUser) -> list[asyncpg.Record]:
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        return await repo.list_cards(conn, user.customer_id)


async def name_card(app: web.Application, user: AuthUser, card_id: int, label: str) -> asyncpg.Record:
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        try:
            return await repo.name_card(conn, user.customer_id, card_id, label)
        except NotFound:
            raise ApiError(404, "not_found", f"no card {card_id} on your account") from None


async def report_lost(app: web.Application, user: AuthUser, card_id: int) -> asyncpg.Record:
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        try:
            row = await repo.block_card(conn, user.customer_id, card_id)
        except NotFound:
            raise ApiError(404, "not_found", f"no card {card_id} on your account") from None
    log.info("card reported lost", customer_id=user.customer_id, card_id=card_id)
    return row


async def arm_link_pairing(app: web.Application, user: AuthUser, public_id: str) -> asyncpg.Record:
    """Open a window in which the next card tapped at this charger is linked to the customer."""
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        cb = await repo.charger_by_public_id(conn, public_id)
        if cb is None:
            raise PortalError(404, "not_found", "charger_not_found")
        return await card_pairings.arm_pairing(
            conn, cb["charge_box_id"], "link", customer_id=user.customer_id, user_id=user.id
        )


async def arm_signin_pairing(app: web.Application, browser: str, public_id: str) -> asyncpg.Record:
    async with pool_of(app).acquire() as conn:
        cb = await repo.charger_by_public_id(conn, public_id)
        if cb is None:
            raise PortalError(404, "not_found", "charger_not_found")
        return await card_pairings.arm_pairing(conn, cb["charge_box_id"], "signin", browser_session=browser)


@dataclass
class PairingResult:
    id: int
    state: str  # armed, tapped, expired, cancelled, linked, signed_in, refused
    charge_box_id: str
    expires_at: datetime
    message: str | None = None
    card: asyncpg.Record | None = None
    user_id: int | None = None


async def link_pairing_result(app: web.Application, user: AuthUser, pairing_id: int) -> PairingResult:
    """The window's state; a tapped card is linked to the customer here (idempotent)."""
    user = require_customer(user)
    async with pool_of(app).acquire() as conn:
        try:
            p = await card_pairings.get_pairing_result(conn, pairing_id, customer_id=user.customer_id)
        except NotFound:
            raise ApiError(404, "not_found", f"no pairing {pairing_id}") from None
        result = PairingResult(p["id"], p["state"], p["charge_box_id"], p["expires_at"])
        if p["state"] == "tapped":
            try:
                result.card = await repo.link_card(conn, user.customer_id, p["tapped_id_tag"])
                result.state = "linked"
                result.message = text("tap_linked", tag=p["tapped_id_tag"])
            except RepoError as exc:  # another account's card, or not a valid id tag: shown, not raised
                result.state = "refused"
                result.message = str(exc)
        elif p["state"] in ("expired", "cancelled"):
            result.message = text("tap_expired")
    return result


async def signin_pairing_result(app: web.Application, browser: str, pairing_id: int) -> PairingResult:
    """The signed-out window's state; a tapped card of an active customer signs them in."""
    async with pool_of(app).acquire() as conn:
        try:
            p = await card_pairings.get_pairing_result(conn, pairing_id, browser_session=browser)
        except NotFound:
            raise ApiError(404, "not_found", f"no pairing {pairing_id}") from None
        result = PairingResult(p["id"], p["state"], p["charge_box_id"], p["expires_at"])
        if p["state"] == "tapped":
            owner = await repo.card_owner(conn, p["tapped_id_tag"])
            if owner is None:
                result.state = "refused"
                result.message = text("tap_signin_unknown")
            else:
                # Only the browser holding the window's secret id can read this result.
                result.state = "signed_in"
                result.user_id = owner["user_id"]
        elif p["state"] in ("expired", "cancelled"):
            result.message = text("tap_expired")
    return result
