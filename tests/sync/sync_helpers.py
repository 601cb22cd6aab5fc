"""Small SQL helpers that put chargers, customers, transactions and meter values in a test DB.

The OCPP server owns the transaction repository; the sync only reads these tables, so
tests write them directly, the way the OCPP server's rows look.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import asyncpg

from polaris.db.repos import customers, id_tags
from polaris.sync.lago import LagoClient
from polaris.sync.rating import short_id

_serial = itertools.count(1)
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


async def add_charger(conn: asyncpg.Connection, charge_box_id: str | None = None) -> int:
    charge_box_id = charge_box_id or f"CB-{next(_serial):05d}"
    return await conn.fetchval(
        "INSERT INTO ocpp.charge_boxes (charge_box_id, public_id) VALUES ($1, $2) RETURNING id",
        charge_box_id,
        f"pub{charge_box_id}",
    )


async def add_customer(
    conn: asyncpg.Connection, email: str, *, subscription: str | None, tag: str | None = None
) -> None:
    await customers.add_customer(conn, email, lago_subscription_id=subscription)
    if tag:
        await id_tags.add_id_tag(conn, tag, customer_email=email)


async def set_subscription(conn: asyncpg.Connection, email: str, subscription: str | None) -> None:
    await conn.execute(
        "UPDATE app.customers SET lago_subscription_id = $2 "
        "WHERE user_id = (SELECT id FROM app.users WHERE email = $1)",
        email,
        subscription,
    )


async def start_tx(
    conn: asyncpg.Connection,
    charger_pk: int,
    id_tag: str,
    *,
    start: datetime = T0,
    meter_start: int = 1000,
    connector_id: int = 1,
    is_test: bool = False,
) -> int:
    return await conn.fetchval(
        """
        INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp,
                                       meter_start, is_test)
        VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
        """,
        charger_pk,
        connector_id,
        id_tag,
        start,
        meter_start,
        is_test,
    )


async def stop_tx(conn: asyncpg.Connection, tx_id: int, *, stop: datetime, meter_stop: int) -> None:
    await conn.execute(
        """
        UPDATE ocpp.transactions SET stop_timestamp = $2, meter_stop = $3, stopped_by = 'charger',
               updated_at = now() WHERE id = $1
        """,
        tx_id,
        stop,
        meter_stop,
    )


async def add_session(
    conn: asyncpg.Connection,
    charger_pk: int,
    id_tag: str,
    *,
    energy_wh: int,
    start: datetime = T0,
    minutes: int = 60,
    meter_start: int | None = None,
    is_test: bool = False,
) -> int:
    """A finished session (a distinct meterStart by default: the OCPP dedupe key includes it)."""
    if meter_start is None:
        meter_start = next(_serial) * 1_000_000
    tx = await start_tx(conn, charger_pk, id_tag, start=start, meter_start=meter_start, is_test=is_test)
    await stop_tx(conn, tx, stop=start + timedelta(minutes=minutes), meter_stop=meter_start + energy_wh)
    return tx


async def add_register(
    conn: asyncpg.Connection,
    charger_pk: int,
    tx_id: int,
    *,
    at: datetime,
    value: float | str,
    unit: str | None = "Wh",
    measurand: str | None = "Energy.Active.Import.Register",
    phase: str | None = None,
) -> None:
    text = str(value)
    try:
        num: float | None = float(text)
    except ValueError:
        num = None
    await conn.execute(
        """
        INSERT INTO ocpp.meter_values (charge_box_pk, connector_id, transaction_id, sampled_at, value,
                                       value_num, measurand, unit, phase, context)
        VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, 'Sample.Periodic')
        """,
        charger_pk,
        tx_id,
        at,
        text,
        num,
        measurand,
        unit,
        phase,
    )


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime | None = None):
        self.current = now or datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> datetime:
        self.current += timedelta(**kwargs)
        return self.current


def make_client(fake, **kwargs) -> LagoClient:
    """A client for the fake Lago with short timeouts and backoff, so fault tests are quick."""
    opts = {"timeout": 0.5, "backoff_base": 0.01, "backoff_cap": 0.05, "max_attempts": 4}
    opts.update(kwargs)
    return LagoClient(fake.url, fake.api_key, **opts)


def short(events: dict) -> dict:
    """Lago's events by their ids without deployment and start: `steve_tx_<id>_final`."""
    return {short_id(tid): e for tid, e in events.items()}
