"""Meter values: every sampled value a charger sends, written in one statement per message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

INT4_MAX = 2**31 - 1
ENERGY_REGISTER = "Energy.Active.Import.Register"


@dataclass(frozen=True, slots=True)
class Sample:
    sampled_at: datetime
    value: str  # as received
    value_num: float | None
    measurand: str | None
    unit: str | None
    phase: str | None
    context: str | None
    location: str | None
    format: str | None


async def insert_meter_values(
    conn: asyncpg.Connection,
    charge_box_pk: int,
    connector_id: int,
    transaction_id: int | None,
    samples: list[Sample],
) -> int | None:
    """Store samples (UNNEST, one round trip); return the transaction id they were linked to.

    A transaction id that is not this charger's is dropped from the rows (the samples are
    kept, unlinked) instead of failing the message.
    """
    if transaction_id is not None and not 0 < transaction_id <= INT4_MAX:
        transaction_id = None
    # One statement, one round trip (this is the hottest write): find the session, clear its
    # stuck flag (fresh data means it is alive after all), insert every sample.
    return await conn.fetchval(
        """
        WITH tx AS (
            SELECT id, stuck_since, stop_timestamp FROM ocpp.transactions
            WHERE id = $3 AND charge_box_pk = $1
        ), unstuck AS (
            UPDATE ocpp.transactions SET stuck_since = NULL
            WHERE id = (SELECT id FROM tx WHERE stuck_since IS NOT NULL AND stop_timestamp IS NULL)
        ), ins AS (
            INSERT INTO ocpp.meter_values
                (charge_box_pk, connector_id, transaction_id, sampled_at, value, value_num,
                 measurand, unit, phase, context, location, format)
            SELECT $1, $2, (SELECT id FROM tx), s.* FROM UNNEST(
                $4::timestamptz[], $5::text[], $6::float8[], $7::text[], $8::text[],
                $9::text[], $10::text[], $11::text[], $12::text[]) AS s
        )
        SELECT id FROM tx
        """,
        charge_box_pk,
        connector_id,
        transaction_id,
        [s.sampled_at for s in samples],
        [s.value for s in samples],
        [s.value_num for s in samples],
        [s.measurand for s in samples],
        [s.unit for s in samples],
        [s.phase for s in samples],
        [s.context for s in samples],
        [s.location for s in samples],
        [s.format for s in samples],
    )


def energy_wh(value_num: float | None, unit: str | None) -> int | None:
    """An energy register reading in Wh; chargers label kWh and Wh inconsistently."""
    if value_num is None:
        return None
    if unit and unit.lower() == "kwh":
        return round(value_num * 1000)
    return round(value_num)


async def last_energy_reading(
    conn: asyncpg.Connection, transaction_id: int
) -> tuple[int, datetime] | None:
    """The latest total energy register reading of a session, in Wh, and when it was taken."""
    row = await conn.fetchrow(
        """
        SELECT value_num, unit, sampled_at FROM ocpp.meter_values
        WHERE transaction_id = $1 AND value_num IS NOT NULL
          AND coalesce(measurand, $2) = $2 AND phase IS NULL
          AND coalesce(location, 'Outlet') = 'Outlet'
          AND coalesce(format, 'Raw') = 'Raw'
        ORDER BY sampled_at DESC, id DESC LIMIT 1
        """,
        transaction_id,
        ENERGY_REGISTER,
    )
    if row is None:
        return None
    wh = energy_wh(row["value_num"], row["unit"])
    return (wh, row["sampled_at"]) if wh is not None else None


async def list_meter_values(conn: asyncpg.Connection, transaction_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM ocpp.meter_values WHERE transaction_id = $1 ORDER BY sampled_at, id",
        transaction_id,
    )
