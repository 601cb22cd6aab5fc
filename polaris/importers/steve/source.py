"""Reading SteVe's database (MySQL / MariaDB) and the original web app's (Postgres), read only.

SteVe's schema as its migrations publish it (db/migration: the stevedb baseline and the
OCPP 1.6 security update): `charge_box` (`security_profile` and a bcrypt `auth_password`
only from the security update on: before it every charger is profile 0), `address`,
`connector` (charge box id + connector id), `ocpp_tag` (blocked is
`max_active_transaction_count = 0`), `user` (one `ocpp_tag_pk`, an `address_pk`),
`transaction_start` / `transaction_stop` (the latest stop event counts, as its `transaction`
view does), `connector_meter_value`, `reservation`. SteVe writes its timestamps in UTC.

The original web app (expressync) keeps the 8-character QR public ids in
`chargers_cache.public_id`, Lago subscriptions per card in `user_mappings`, and what it
billed per SteVe transaction in `transaction_sync_state`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomysql
import asyncpg


class SourceError(Exception):
    """The SteVe database cannot be read (unreachable, not SteVe's schema): one line for people."""


@dataclass
class SteveData:
    charge_boxes: list[dict] = field(default_factory=list)
    tags: list[dict] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)
    connectors: dict[int, tuple[str, int]] = field(default_factory=dict)  # connector_pk -> (cbid, connector id)
    transactions: list[dict] = field(default_factory=list)
    meter_values: dict[int, list[dict]] = field(default_factory=dict)  # transaction_pk -> readings
    reservations: list[dict] = field(default_factory=list)
    has_security_columns: bool = False


@dataclass
class OriginalApp:
    """What the original web app's database adds: QR public ids, Lago subscriptions, billed energy."""

    public_ids: dict[str, str] = field(default_factory=dict)  # lower(charge box id) -> public id
    subscriptions: dict[int, str] = field(default_factory=dict)  # SteVe ocpp_tag_pk -> Lago subscription
    billed: dict[int, dict] = field(default_factory=dict)  # SteVe transaction_pk -> its sync state


def mysql_params(url: str) -> dict:
    """aiomysql.connect() arguments for mysql://user:pass@host:3306/db (also mariadb://)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        raise SourceError(f"the SteVe database URL starts with mysql:// (got {parts.scheme or 'no scheme'}://)")
    database = parts.path.lstrip("/")
    if not database:
        raise SourceError("name SteVe's database in the URL: mysql://user:pass@host:3306/stevedb")
    return {"host": parts.hostname or "127.0.0.1", "port": parts.port or 3306, "user": unquote(parts.username or "root"),
            "password": unquote(parts.password or ""), "db": database}


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def read_steve(url: str) -> SteveData:
    try:
        conn = await aiomysql.connect(**mysql_params(url), autocommit=True, init_command="SET time_zone = '+00:00'",
                                      connect_timeout=10)
    except (OSError, aiomysql.Error) as exc:
        raise SourceError(f"cannot read SteVe's database at {urlsplit(url).hostname}: {exc}") from None
    try:
        return await _read(conn)
    except aiomysql.Error as exc:
        raise SourceError(f"this does not look like SteVe's database: {exc}") from None
    finally:
        conn.close()


async def _rows(conn: aiomysql.Connection, sql: str) -> list[dict]:
    async with conn.cursor(aiomysql.DictCursor) as cur:
        await cur.execute(sql)
        return list(await cur.fetchall())


async def _read(conn: aiomysql.Connection) -> SteveData:
    data = SteveData()
    columns = {r["COLUMN_NAME"].lower() for r in await _rows(conn, (
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = 'charge_box'"))}
    data.has_security_columns = {"security_profile", "auth_password"} <= columns
    security = "cb.security_profile, cb.auth_password" if data.has_security_columns else "0 AS security_profile, NULL AS auth_password"
    data.charge_boxes = await _rows(conn, f"""
        SELECT cb.charge_box_pk, cb.charge_box_id, cb.registration_status, cb.description, cb.note,
               cb.charge_point_vendor, cb.charge_point_model, cb.charge_point_serial_number,
               cb.charge_box_serial_number, cb.fw_version, cb.iccid, cb.imsi, cb.meter_type,
               cb.meter_serial_number, cb.last_heartbeat_timestamp, {security},
               a.street, a.house_number, a.zip_code, a.city, a.country
        FROM charge_box cb LEFT JOIN address a ON a.address_pk = cb.address_pk
        ORDER BY cb.charge_box_pk""")
    data.tags = await _rows(conn, """
        SELECT ocpp_tag_pk, id_tag, parent_id_tag, expiry_date, max_active_transaction_count, note
        FROM ocpp_tag ORDER BY ocpp_tag_pk""")
    data.users = await _rows(conn, """
        SELECT u.user_pk, u.ocpp_tag_pk, u.first_name, u.last_name, u.e_mail, u.phone, u.note,
               a.street, a.house_number, a.zip_code, a.city, a.country
        FROM `user` u LEFT JOIN address a ON a.address_pk = u.address_pk ORDER BY u.user_pk""")
    for r in await _rows(conn, "SELECT connector_pk, charge_box_id, connector_id FROM connector"):
        data.connectors[r["connector_pk"]] = (r["charge_box_id"], r["connector_id"])
    data.transactions = await _rows(conn, """
        SELECT s.transaction_pk, s.connector_pk, s.id_tag, s.start_timestamp, s.start_value,
               p.stop_timestamp, p.stop_value, p.stop_reason, p.event_actor AS stop_event_actor
        FROM transaction_start s
        LEFT JOIN transaction_stop p ON p.transaction_pk = s.transaction_pk AND p.event_timestamp =
            (SELECT max(p2.event_timestamp) FROM transaction_stop p2 WHERE p2.transaction_pk = s.transaction_pk)
        ORDER BY s.transaction_pk""")
    for r in await _rows(conn, """
            SELECT transaction_pk, connector_pk, value_timestamp, value, reading_context, format, measurand,
                   location, unit, phase
            FROM connector_meter_value WHERE transaction_pk IS NOT NULL ORDER BY value_timestamp"""):
        data.meter_values.setdefault(r["transaction_pk"], []).append(r)
    data.reservations = await _rows(conn, """
        SELECT reservation_pk, connector_pk, transaction_pk, id_tag, start_datetime, expiry_datetime, status
        FROM reservation ORDER BY reservation_pk""")
    for table in (data.charge_boxes, data.tags, data.transactions, data.reservations):
        for row in table:
            for k, v in row.items():
                if isinstance(v, datetime):
                    row[k] = _utc(v)
    for rows in data.meter_values.values():
        for row in rows:
            row["value_timestamp"] = _utc(row["value_timestamp"])
    return data


async def read_original(url: str) -> OriginalApp:
    """The original web app's Postgres: what it knows that SteVe does not (tables it lacks are skipped)."""
    app = OriginalApp()
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SourceError(f"cannot read the original web app's database: {exc}") from None
    try:
        present = {r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
        if "chargers_cache" in present:
            for r in await conn.fetch("SELECT charge_box_id, public_id FROM chargers_cache WHERE public_id IS NOT NULL"):
                app.public_ids[r["charge_box_id"].lower()] = r["public_id"]
        if "user_mappings" in present:
            for r in await conn.fetch("SELECT steve_ocpp_tag_pk, lago_subscription_external_id FROM user_mappings "
                                      "WHERE lago_subscription_external_id IS NOT NULL"):
                app.subscriptions[r["steve_ocpp_tag_pk"]] = r["lago_subscription_external_id"]
        if "transaction_sync_state" in present:
            for r in await conn.fetch("SELECT steve_transaction_id, last_synced_meter_value, total_kwh_billed, "
                                      "is_finalized FROM transaction_sync_state"):
                app.billed[r["steve_transaction_id"]] = dict(r)
    finally:
        await conn.close()
    return app
