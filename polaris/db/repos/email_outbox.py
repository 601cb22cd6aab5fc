"""The email outbox: mail is queued here in the caller's transaction and delivered by a sender."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from polaris.db.errors import InvalidInput
from polaris.db.repos.users import normalize_email

# web -> email senders: new mail is due (payload empty). Sent at commit, so never too early.
EMAIL_OUTBOX_CHANNEL = "email_outbox"

COLUMNS = """
    id, to_address, category, subject, html, text, reply_to, headers, dedupe_key, status,
    attempts, next_attempt_at, locked_until, last_error, created_at, sent_at
"""


async def queue(
    conn: asyncpg.Connection,
    *,
    to: str,
    category: str,
    subject: str,
    html: str,
    text: str,
    dedupe_key: str | None = None,
    reply_to: str | None = None,
    headers: dict[str, str] | None = None,
) -> int | None:
    """Queue one mail; return its id, or None when `dedupe_key` was queued before.

    Call it inside the transaction of the change that causes the mail: if that rolls
    back, no mail; if it commits, the mail will be delivered (or stays visible in
    `polaris admin outbox`).
    """
    to = normalize_email(to)
    if not subject.strip() or "\n" in subject or "\r" in subject:
        raise InvalidInput("a mail subject is one non-empty line")
    if not text.strip() or not html.strip():
        raise InvalidInput("a mail needs both a text and an HTML body")
    if headers is not None and not all(
        isinstance(k, str) and isinstance(v, str) and "\n" not in v for k, v in headers.items()
    ):
        raise InvalidInput("mail headers are single-line strings")
    mail_id = await conn.fetchval(
        """
        INSERT INTO app.email_outbox
            (to_address, category, subject, html, text, reply_to, headers, dedupe_key)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING id
        """,
        to,
        category,
        subject.strip(),
        html,
        text,
        reply_to,
        headers,
        dedupe_key,
    )
    if mail_id is not None:
        await conn.execute("SELECT pg_notify($1, '')", EMAIL_OUTBOX_CHANNEL)
    return mail_id


async def claim_due(conn: asyncpg.Connection, *, limit: int, lease: timedelta) -> list[asyncpg.Record]:
    """Take up to `limit` due mails for this sender, leased for `lease`.

    SKIP LOCKED: two senders claiming at once get different rows. A row whose lease ran
    out (its sender died mid-send) is due again.
    """
    return await conn.fetch(
        f"""
        UPDATE app.email_outbox SET status = 'sending', attempts = attempts + 1,
               locked_until = now() + $2::interval
        WHERE id IN (
            SELECT id FROM app.email_outbox
            WHERE (status = 'pending' AND next_attempt_at <= now())
               OR (status = 'sending' AND locked_until < now())
            ORDER BY next_attempt_at, id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        )
        RETURNING {COLUMNS}
        """,
        limit,
        lease,
    )


async def mark_sent(conn: asyncpg.Connection, mail_id: int) -> None:
    await conn.execute(
        "UPDATE app.email_outbox SET status = 'sent', sent_at = now(), locked_until = NULL, "
        "last_error = NULL WHERE id = $1",
        mail_id,
    )


async def mark_retry(conn: asyncpg.Connection, mail_id: int, *, delay: timedelta, error: str) -> None:
    await conn.execute(
        "UPDATE app.email_outbox SET status = 'pending', locked_until = NULL, "
        "next_attempt_at = now() + $2::interval, last_error = $3 WHERE id = $1",
        mail_id,
        delay,
        error[:500],
    )


async def mark_held(conn: asyncpg.Connection, mail_id: int, *, reason: str) -> None:
    """Stop trying: the worker refused the mail itself (400) or our signature (401)."""
    await conn.execute(
        "UPDATE app.email_outbox SET status = 'held', locked_until = NULL, last_error = $2 WHERE id = $1",
        mail_id,
        reason[:500],
    )


async def release_held(conn: asyncpg.Connection, *, mail_id: int | None = None) -> int:
    """Put held mail back in the queue (after fixing the secret or the worker)."""
    status = await conn.execute(
        "UPDATE app.email_outbox SET status = 'pending', next_attempt_at = now() "
        "WHERE status = 'held' AND ($1::bigint IS NULL OR id = $1)",
        mail_id,
    )
    count = int(status.split()[-1])
    if count:
        await conn.execute("SELECT pg_notify($1, '')", EMAIL_OUTBOX_CHANNEL)
    return count


async def next_due_at(conn: asyncpg.Connection) -> datetime | None:
    return await conn.fetchval(
        "SELECT min(CASE WHEN status = 'pending' THEN next_attempt_at ELSE locked_until END) "
        "FROM app.email_outbox WHERE status IN ('pending', 'sending')"
    )


async def list_mail(
    conn: asyncpg.Connection, *, include_sent: bool = True, limit: int = 50
) -> list[asyncpg.Record]:
    """Newest first: what is waiting, held, and (optionally) what went out."""
    return await conn.fetch(
        f"""
        SELECT {COLUMNS} FROM app.email_outbox
        WHERE $1 OR status <> 'sent'
        ORDER BY id DESC LIMIT $2
        """,
        include_sent,
        limit,
    )


async def counts(conn: asyncpg.Connection) -> dict[str, Any]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM app.email_outbox GROUP BY status")
    return {r["status"]: r["n"] for r in rows}
