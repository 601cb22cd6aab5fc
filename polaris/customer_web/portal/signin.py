"""Sign in by emailed link (web session or app token), sign out, invitations."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from polaris.customer_web import mail
from polaris.customer_web.portal.base import PortalError, pool_of
from polaris.db.errors import InvalidInput, NotFound
from polaris.db.repos import customer_portal as repo
from polaris.db.repos import magic_links
from polaris.db.repos import sessions as sessions_repo
from polaris.db.repos.users import normalize_email
from polaris.logs import get_logger
from polaris.services import appkeys
from polaris.services.auth import AuthUser

log = get_logger(__name__)


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
            token, link = await magic_links.create_link(
                conn, customer["user_id"], email, purpose="signin", return_to=return_to, ip=ip
            )
            url = link_url(settings.CUSTOMER_BASE_URL, token)
            await mail.signin_link(
                conn,
                to=email,
                url=url,
                minutes=int(magic_links.SIGNIN_TTL.total_seconds() // 60),
                name=customer["name"],
                invite=False,
                dedupe_key=f"magic-link:{link['id']}",
            )
    log.info("sign-in link queued", user_id=customer["user_id"])
    return email


def link_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/auth/link/{token}"


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
            if await sessions_repo.never_signed_in(conn, link["user_id"]):
                await mail.welcome(conn, user_id=link["user_id"], to=link["email"],
                                   portal_url=app[appkeys.SETTINGS].CUSTOMER_BASE_URL)
        return link


async def start_browser_session(app: web.Application, user_id: int, *, ip: str | None, user_agent: str | None) -> str:
    async with pool_of(app).acquire() as conn:
        token, _ = await sessions_repo.create_session(
            conn, user_id, method="magic_link", ip=ip, user_agent=user_agent
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




async def invite(conn: asyncpg.Connection, settings: Any, email: str) -> asyncpg.Record:
    """Mail an existing customer an invitation link (valid 24 hours) to their first sign-in."""
    customer = await repo.customer_for_signin(conn, normalize_email(email))
    if customer is None:
        raise NotFound(f"no active customer with email {email.strip().lower()}; add them first")
    async with conn.transaction():
        token, link = await magic_links.create_link(conn, customer["user_id"], customer["email"], purpose="invite")
        await mail.signin_link(
            conn,
            to=customer["email"],
            url=link_url(settings.CUSTOMER_BASE_URL, token),
            minutes=int(magic_links.INVITE_TTL.total_seconds() // 60),
            name=customer["name"],
            invite=True,
            dedupe_key=f"magic-link:{link['id']}",
        )
    return link
