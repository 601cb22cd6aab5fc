"""Sign in by emailed link (web session or app token), sign out.

Issuing a link and its mail is polaris.services.auth.signin_links (the admin side invites
customers through it too); `invite` and `link_url` are re-exported from there.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from aiohttp import web

from polaris.customer_web import mail
from polaris.customer_web.portal.base import PortalError, pool_of
from polaris.db.errors import InvalidInput
from polaris.db.repos import customer_portal as repo
from polaris.db.repos import magic_links
from polaris.db.repos import sessions as sessions_repo
from polaris.db.repos.users import normalize_email
from polaris.logs import get_logger
from polaris.services import appkeys
from polaris.services.auth import AuthUser, signin_links
from polaris.services.auth.signin_links import invite, link_url
from polaris.services.email import category_enabled

log = get_logger(__name__)

__all__ = [
    "consume_link", "invite", "issue_app_token", "link_url", "peek_link", "request_link",
    "sign_out_everywhere", "start_browser_session",
]


# ------------------------------------------------------------------ sign in


async def request_link(
    app: web.Application, email: str, *, ip: str | None, return_to: str | None = None
) -> str:
    """Mail a sign-in link if the address belongs to a customer; return the normalized address.

    The answer is the same whether or not the address is known (nobody learns who has an
    account); rate limits apply to every request, known or not.
    """
    try:
        email = normalize_email(email)
    except InvalidInput:
        raise PortalError(400, "invalid_email", "email_invalid") from None
    settings = app[appkeys.SETTINGS]
    async with pool_of(app).acquire() as conn:
        async with conn.transaction():
            limited = await magic_links.record_request(conn, email, ip)
            if limited:
                raise PortalError(
                    429, "rate_limited", f"rate_limited_{limited}"
                ) from None
            customer = await repo.customer_for_signin(conn, email)
            if customer is None:
                log.info("sign-in link asked for an unknown address")
                return email
            await signin_links.mail_signin_link(conn, settings, customer, return_to=return_to, ip=ip)
    log.info("sign-in link queued", user_id=customer["user_id"])
    return email


def link_refusal(exc: magic_links.LinkRefused) -> PortalError:
    status = 410 if exc.reason in ("used", "expired") else 404 if exc.reason == "unknown" else 403
    return PortalError(status, f"link_{exc.reason}", f"link_{exc.reason}")


async def peek_link(app: web.Application, token: str) -> asyncpg.Record:
    async with pool_of(app).acquire() as conn:
        try:
            return await magic_links.peek_link(conn, token)
        except magic_links.LinkRefused as exc:
            raise link_refusal(exc) from None


async def consume_link(app: web.Application, token: str) -> asyncpg.Record:
    """Use a link (once). Returns it with its user id and purpose.

    A customer's first sign-in (no session or app token yet) also queues the welcome mail.
    """
    async with pool_of(app).acquire() as conn:
        try:
            link = await magic_links.consume_link(conn, token)
        except magic_links.LinkRefused as exc:
            raise link_refusal(exc) from None
        if link["purpose"] in ("signin", "invite") and link["role"] == "customer":
            settings = app[appkeys.SETTINGS]
            if category_enabled(settings, "welcome") and await sessions_repo.never_signed_in(conn, link["user_id"]):
                await mail.welcome(conn, user_id=link["user_id"], to=link["email"],
                                   portal_url=app[appkeys.SETTINGS].CUSTOMER_BASE_URL)
        return link


async def start_browser_session(app: web.Application, user_id: int, *, ip: str | None, user_agent: str | None) -> str:
    async with pool_of(app).acquire() as conn:
        idle = timedelta(seconds=app[appkeys.SETTINGS].CUSTOMER_SESSION_TTL_SECONDS)
        token, _ = await sessions_repo.create_session(
            conn, user_id, method="magic_link", ip=ip, user_agent=user_agent, idle=idle
        )
    return token


async def issue_app_token(app: web.Application, user_id: int, *, name: str) -> str:
    async with pool_of(app).acquire() as conn:
        token, _ = await sessions_repo.create_api_token(conn, user_id, name=name, method="magic_link")
    return token


async def sign_out_everywhere(app: web.Application, user: AuthUser) -> None:
    async with pool_of(app).acquire() as conn:
        await sessions_repo.delete_user_sessions(conn, user.id)
        await sessions_repo.revoke_user_tokens(conn, user.id)

