"""The portal's own mail (welcome, email-change links), queued in the email outbox.

Sign-in and invite links use the shared `magic-link` template and are queued by
polaris.services.auth.signin_links; the email-change confirmation has its own words (from
strings.py) in the same category, because the email worker knows a fixed list of categories.
Without CF_EMAIL_WORKER_URL the mail stays in the outbox and `polaris admin outbox` shows
it, link included.
"""

from __future__ import annotations

from html import escape

import asyncpg

from polaris.customer_web.strings import text
from polaris.db.repos import email_outbox, users
from polaris.services.email import send_mail


async def welcome(conn: asyncpg.Connection, *, user_id: int, to: str, portal_url: str) -> int | None:
    """The welcome mail, once per person (its dedupe key), on their first sign-in."""
    user = await users.get_user(conn, user_id)
    name = user["name"] if user is not None else None
    return await send_mail(conn, "welcome", to=to, dedupe_key=f"welcome:{user_id}", name=name, portal_url=portal_url)


async def email_change_link(conn: asyncpg.Connection, *, to: str, url: str, dedupe_key: str) -> int | None:
    body = text("mail_email_change_text", email=to, url=url)
    html = "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in body.strip().split("\n\n"))
    html = html.replace(escape(url), f'<a href="{escape(url)}">{escape(url)}</a>')
    return await email_outbox.queue(
        conn, to=to, category="magic-link", subject=text("mail_email_change_subject"),
        html=f"<!doctype html><html><body>{html}</body></html>", text=body, dedupe_key=dedupe_key,
    )
