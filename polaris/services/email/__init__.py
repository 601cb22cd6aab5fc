"""Email: templates, the outbox sender, and session receipts.

Anything that mails calls `send_mail(conn, category, to=..., **context)` inside the
transaction of the change that causes the mail. Without CF_EMAIL_WORKER_URL, mail stays
in the outbox (`polaris admin outbox` shows it, links included).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
from aiohttp import web

from polaris.config import OPTIONAL_EMAIL_CATEGORIES, Settings
from polaris.db.repos import email_outbox
from polaris.logs import get_logger
from polaris.services.appkeys import HTTP_CLIENT, PG_POOL, SETTINGS
from polaris.services.email import receipts
from polaris.services.email.sender import EmailSender
from polaris.services.email.templates import CATEGORIES, RenderedMail, render

log = get_logger(__name__)

EMAIL_SENDER = web.AppKey("email_sender", EmailSender)
CATCH_UP_SECONDS = 300.0
_told_outbox_only = False

__all__ = ["CATEGORIES", "EMAIL_SENDER", "RenderedMail", "category_enabled", "render", "send_mail", "setup"]


def category_enabled(settings: Settings, category: str) -> bool:
    """False for mail the original never sent (welcome, account-inactive, account-reactivated)
    unless EMAIL_OPTIONAL_CATEGORIES names it; every other category is always on."""
    return category not in OPTIONAL_EMAIL_CATEGORIES or category in settings.email_optional_categories


async def send_mail(
    conn: asyncpg.Connection,
    category: str,
    *,
    to: str,
    dedupe_key: str | None = None,
    reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> int | None:
    """Render a mail of `category` and queue it; None when `dedupe_key` was queued before."""
    mail = render(category, **context)
    return await email_outbox.queue(
        conn,
        to=to,
        category=category,
        subject=mail.subject,
        html=mail.html,
        text=mail.text,
        dedupe_key=dedupe_key,
        reply_to=reply_to,
        headers=headers,
    )


async def _receipt_reaction(app: web.Application, notice: Any) -> None:
    async with app[PG_POOL].acquire() as conn:
        mail_id = await receipts.on_session_stopped(
            conn, app[SETTINGS], notice.channel, notice.payload, notice.session
        )
    if mail_id is not None:
        log.info("receipt queued", mail_id=mail_id, transaction_id=notice.payload.get("transaction_id"))


async def _catch_up_loop(app: web.Application) -> None:
    while True:
        try:
            async with app[PG_POOL].acquire() as conn:
                await receipts.catch_up(conn, app[SETTINGS])
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("receipt catch-up failed", error=str(exc))
        await asyncio.sleep(CATCH_UP_SECONDS)


async def _email_ctx(app: web.Application) -> AsyncIterator[None]:
    global _told_outbox_only
    settings = app[SETTINGS]
    sender = own_client = None
    if settings.email_sender_problem():
        # A sender the worker refuses would get every mail held: none is attempted.
        log.warning(settings.email_sender_problem() or "")
    elif settings.email_worker_enabled and settings.CF_EMAIL_WORKER_SECRET:
        http = app.get(HTTP_CLIENT)
        if http is None:
            http = own_client = httpx.AsyncClient()
        sender = EmailSender(app[PG_POOL], settings, http)
        app[EMAIL_SENDER] = sender
        sender.start()
    elif not _told_outbox_only:
        _told_outbox_only = True
        log.info("mail is kept in the outbox (CF_EMAIL_WORKER_URL unset); see `polaris admin outbox`")
    catch_up = asyncio.create_task(_catch_up_loop(app), name="receipt-catch-up")
    yield
    catch_up.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await catch_up
    if sender is not None:
        await sender.close()
    if own_client is not None:
        await own_client.aclose()


def setup(app: web.Application) -> None:
    """The outbox sender (when CF_EMAIL_WORKER_URL is set) and session receipts."""
    from polaris.services.live import add_reaction

    app.cleanup_ctx.append(_email_ctx)
    add_reaction(app, _receipt_reaction)
