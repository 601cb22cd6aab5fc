"""Emailed sign-in links for customers: issue one (sign-in or invitation) and queue its mail.

Both the customer portal (a customer asks for a link) and the admin side (an operator
invites a customer, from the API or `polaris admin customer invite`) issue links here, so
neither calls the other. The link and its mail are written in the caller's connection,
inside one transaction: no link without its mail, no mail without its link.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from polaris.config import Settings
from polaris.db.errors import NotFound
from polaris.db.repos import customer_portal, magic_links
from polaris.db.repos.users import normalize_email
from polaris.services.email import send_mail


def link_url(base_url: str, token: str) -> str:
    """The portal page that uses a link's token (`/auth/link/{token}` on the customer host)."""
    return f"{base_url.rstrip('/')}/auth/link/{token}"


async def mail_signin_link(
    conn: asyncpg.Connection,
    settings: Settings,
    customer: asyncpg.Record,
    *,
    invite: bool = False,
    return_to: str | None = None,
    ip: str | None = None,
) -> asyncpg.Record:
    """Issue a link for `customer` (a `customer_for_signin` row) and queue the magic-link mail.

    `invite` makes it an invitation (valid 24 hours, worded for a first sign-in); otherwise
    a sign-in link (valid SIGNIN_TTL). Returns the link's row (id, expires_at, ...).
    """
    purpose = "invite" if invite else "signin"
    # MAGIC_LINK_TTL_SECONDS / MAGIC_LINK_INVITE_TTL_SECONDS (the original's names; 15 min / 24 h).
    seconds = settings.MAGIC_LINK_INVITE_TTL_SECONDS if invite else settings.MAGIC_LINK_TTL_SECONDS
    ttl = timedelta(seconds=seconds)
    async with conn.transaction():
        token, link = await magic_links.create_link(
            conn, customer["user_id"], customer["email"], purpose=purpose, return_to=return_to, ip=ip, ttl=ttl
        )
        await send_mail(
            conn, "magic-link", to=customer["email"], dedupe_key=f"magic-link:{link['id']}",
            link=link_url(settings.CUSTOMER_BASE_URL, token), expires_minutes=int(ttl.total_seconds() // 60),
            name=customer["name"], invite=invite,
        )
    return link


async def invite(conn: asyncpg.Connection, settings: Settings, email: str) -> asyncpg.Record:
    """Mail an existing, active customer an invitation link (valid 24 hours); NotFound otherwise."""
    customer = await customer_portal.customer_for_signin(conn, normalize_email(email))
    if customer is None:
        raise NotFound(f"no active customer with email {email.strip().lower()}; add them first")
    return await mail_signin_link(conn, settings, customer, invite=True)
