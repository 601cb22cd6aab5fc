"""'Tap your card' pairing windows: arm one at a charger, let the pre-authorize hook catch the tap."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from polaris.db.errors import InvalidInput, NotFound

PURPOSES = ("link", "signin")
DEFAULT_WINDOW = timedelta(seconds=90)
MAX_WINDOW = timedelta(minutes=10)

COLUMNS = """
    p.id, p.purpose, p.user_id, p.customer_id, p.browser_session, p.armed_at, p.expires_at,
    p.cancelled_at, p.tapped_id_tag, p.tapped_at, cb.charge_box_id
"""


async def arm_pairing(
    conn: asyncpg.Connection,
    charge_box_id: str,
    purpose: str,
    *,
    customer_id: int | None = None,
    user_id: int | None = None,
    browser_session: str | None = None,
    window: timedelta = DEFAULT_WINDOW,
) -> asyncpg.Record:
    """Open a window in which the next card tapped at this charger is caught, not charged.

    `link` needs the signed-in customer; `signin` needs the signed-out browser's session id.
    Arming again for the same customer or browser replaces their earlier open window.
    """
    if purpose not in PURPOSES:
        raise InvalidInput(f"a pairing's purpose is one of {', '.join(PURPOSES)}, not {purpose!r}")
    if purpose == "link" and customer_id is None:
        raise InvalidInput("linking a card needs a signed-in customer")
    if purpose == "signin" and not (browser_session and 16 <= len(browser_session) <= 200):
        raise InvalidInput("signing in by card needs the browser's session id (16-200 characters)")
    if not timedelta(seconds=5) <= window <= MAX_WINDOW:
        raise InvalidInput("a pairing window lasts between 5 seconds and 10 minutes")
    async with conn.transaction():
        charge_box_pk = await conn.fetchval(
            "SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = $1 AND active", charge_box_id
        )
        if charge_box_pk is None:
            raise NotFound(f"no charger {charge_box_id}")
        # One open window per person: a second click replaces the first.
        await conn.execute(
            """
            UPDATE app.card_pairings SET cancelled_at = now()
            WHERE cancelled_at IS NULL AND tapped_at IS NULL AND expires_at > now()
              AND ((customer_id = $1) OR (browser_session = $2))
            """,
            customer_id,
            browser_session,
        )
        return await conn.fetchrow(
            f"""
            WITH p AS (
                INSERT INTO app.card_pairings
                    (charge_box_pk, purpose, user_id, customer_id, browser_session, expires_at)
                VALUES ($1, $2, $3, $4, $5, now() + $6::interval)
                RETURNING *
            )
            SELECT {COLUMNS} FROM p JOIN ocpp.charge_boxes cb ON cb.id = p.charge_box_pk
            """,
            charge_box_pk,
            purpose,
            user_id,
            customer_id,
            browser_session,
            window,
        )


async def get_pairing_result(
    conn: asyncpg.Connection,
    pairing_id: int,
    *,
    customer_id: int | None = None,
    browser_session: str | None = None,
) -> asyncpg.Record:
    """The window as its owner sees it: `state` is armed, tapped, expired or cancelled.

    The owner (customer or browser session) must match, else NotFound: nobody learns
    another person's tapped card.
    """
    row = await conn.fetchrow(
        f"""
        SELECT {COLUMNS},
               CASE WHEN p.tapped_at IS NOT NULL THEN 'tapped'
                    WHEN p.cancelled_at IS NOT NULL THEN 'cancelled'
                    WHEN p.expires_at <= now() THEN 'expired'
                    ELSE 'armed' END AS state
        FROM app.card_pairings p JOIN ocpp.charge_boxes cb ON cb.id = p.charge_box_pk
        WHERE p.id = $1
          AND (($2::bigint IS NOT NULL AND p.customer_id = $2)
               OR ($3::text IS NOT NULL AND p.browser_session = $3))
        """,
        pairing_id,
        customer_id,
        browser_session,
    )
    if row is None:
        raise NotFound(f"no pairing {pairing_id}")
    return row


async def cancel_pairing(
    conn: asyncpg.Connection,
    pairing_id: int,
    *,
    customer_id: int | None = None,
    browser_session: str | None = None,
) -> None:
    status = await conn.execute(
        """
        UPDATE app.card_pairings SET cancelled_at = now()
        WHERE id = $1 AND cancelled_at IS NULL AND tapped_at IS NULL
          AND (($2::bigint IS NOT NULL AND customer_id = $2)
               OR ($3::text IS NOT NULL AND browser_session = $3))
        """,
        pairing_id,
        customer_id,
        browser_session,
    )
    if status == "UPDATE 0":
        raise NotFound(f"no open pairing {pairing_id}")


async def catch_tap(conn: asyncpg.Connection, charge_box_id: str, id_tag: str) -> asyncpg.Record | None:
    """Record a tap into a live window at this charger; None when no window wants this card.

    A window takes the first card tapped in it. The same card tapped again (Authorize then
    StartTransaction, or a charger retrying) is caught by the same window; a different
    card afterwards is not caught and charges normally. One statement, so two web
    instances answering at once cannot both claim the same window for different cards.
    """
    return await conn.fetchrow(
        f"""
        WITH target AS (
            SELECT p.id FROM app.card_pairings p
            JOIN ocpp.charge_boxes cb ON cb.id = p.charge_box_pk
            WHERE cb.charge_box_id = $1 AND p.cancelled_at IS NULL AND p.expires_at > now()
              AND (p.tapped_id_tag IS NULL OR lower(p.tapped_id_tag) = lower($2))
            ORDER BY (p.tapped_id_tag IS NULL), p.armed_at
            LIMIT 1
            FOR UPDATE OF p
        ), p AS (
            UPDATE app.card_pairings c
            SET tapped_id_tag = COALESCE(c.tapped_id_tag, $2), tapped_at = COALESCE(c.tapped_at, now())
            FROM target WHERE c.id = target.id
            RETURNING c.*, (c.tapped_at = now()) AS first_tap
        )
        SELECT {COLUMNS}, p.first_tap FROM p JOIN ocpp.charge_boxes cb ON cb.id = p.charge_box_pk
        """,
        charge_box_id,
        id_tag,
    )
