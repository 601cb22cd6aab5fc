"""Chargers as the admin API lists, shows and edits them (the web process's side of
`ocpp.charge_boxes`; registration, keys and what the OCPP server keeps are in charge_boxes)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from polaris.db.errors import InvalidInput
from polaris.db.repos.charge_boxes import LIST_COLUMNS, SECURITY_PROFILES, ensure_site

# Charger states the admin lists filter on (what an operator scans for).
CHARGER_STATES = ("online", "offline", "faulted", "charging")
CHARGING_STATUSES = ("Charging", "SuspendedEV", "SuspendedEVSE")

_CONNECTORS_JSON = """
    (SELECT coalesce(json_agg(json_build_object(
                'connector_id', c.connector_id, 'status', c.status, 'error_code', c.error_code,
                'info', c.info, 'status_at', c.status_at) ORDER BY c.connector_id), '[]'::json)
     FROM ocpp.connectors c WHERE c.charge_box_pk = cb.id) AS connectors
"""

_FAULTED = "(c.status = 'Faulted' OR coalesce(c.error_code, 'NoError') <> 'NoError')"
_CHARGING = "c.status IN ('Charging', 'SuspendedEV', 'SuspendedEVSE')"
# Matches the partial index connectors_attention_idx (migration 0021).
_ATTENTION = (
    "(c.status IN ('Faulted', 'Charging', 'SuspendedEV', 'SuspendedEVSE') "
    "OR coalesce(c.error_code, 'NoError') <> 'NoError')"
)
_STATE_SQL = {
    "online": "cb.connected",
    "offline": "NOT cb.connected",
    # ARRAY(...) is computed once: the few matching chargers are fetched by id and sorted,
    # instead of probing every charger in id order.
    "faulted": f"cb.id = ANY(ARRAY(SELECT c.charge_box_pk FROM ocpp.connectors c WHERE {_ATTENTION} AND {_FAULTED}))",
    "charging": f"cb.id = ANY(ARRAY(SELECT c.charge_box_pk FROM ocpp.connectors c WHERE {_ATTENTION} AND {_CHARGING}))",
}


async def list_charge_boxes_page(
    conn: asyncpg.Connection,
    *,
    limit: int,
    after: str | None = None,
    q: str | None = None,
    state: str | None = None,
    active: bool | None = None,
    site: str | None = None,
) -> list[asyncpg.Record]:
    """Chargers ordered by id with their connectors; `after` continues a previous page.

    Only the filters given become SQL, so each query gets a plan fit for it.
    """
    if state is not None and state not in _STATE_SQL:
        raise InvalidInput(f"state must be one of {', '.join(CHARGER_STATES)}")
    where: list[str] = []
    args: list = [limit]

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    if after is not None:
        where.append(f"cb.charge_box_id > {arg(after)}")
    if q is not None and q.strip():
        # strpos on lower() is a plain substring test: no LIKE wildcards to escape, and
        # several times cheaper than ILIKE over a whole fleet.
        p = arg(q.strip().lower())
        where.append(
            f"(strpos(lower(cb.charge_box_id), {p}) > 0 OR strpos(lower(coalesce(cb.description, '')), {p}) > 0 "
            f"OR strpos(lower(coalesce(s.name, '')), {p}) > 0)"
        )
    if active is not None:
        where.append(f"cb.active = {arg(active)}")
    if site is not None:
        where.append(f"s.name = {arg(site)}")
    if state is not None:
        where.append(_STATE_SQL[state])
    condition = " AND ".join(where) or "true"
    return await conn.fetch(
        f"""
        SELECT {LIST_COLUMNS}, cb.registration_status, {_CONNECTORS_JSON}
        FROM ocpp.charge_boxes cb LEFT JOIN ocpp.sites s ON s.id = cb.site_id
        WHERE {condition}
        ORDER BY cb.charge_box_id
        LIMIT $1
        """,
        *args,
    )


async def get_charge_box_detail(conn: asyncpg.Connection, charge_box_id: str) -> asyncpg.Record | None:
    """One charger with everything the detail screen shows (never its key)."""
    return await conn.fetchrow(
        f"""
        SELECT {LIST_COLUMNS}, cb.charge_point_serial_number, cb.charge_box_serial_number,
               cb.iccid, cb.imsi, cb.meter_type, cb.meter_serial_number, cb.ocpp_protocol,
               cb.connected_instance, cb.diagnostics_status, cb.diagnostics_status_at,
               cb.firmware_status, cb.firmware_status_at, cb.updated_at, {_CONNECTORS_JSON}
        FROM ocpp.charge_boxes cb LEFT JOIN ocpp.sites s ON s.id = cb.site_id
        WHERE cb.charge_box_id = $1
        """,
        charge_box_id,
    )


async def update_charge_box(
    conn: asyncpg.Connection,
    charge_box_id: str,
    changes: dict,
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Edit description, site, active and registration status; return (before, after).

    `changes` holds only the fields to change; site_name None removes the site.
    """
    from polaris.db.errors import NotFound

    editable = {"description", "site_name", "site_address", "active", "registration_status", "security_profile",
                "ocpp_version_pinned"}
    unknown = set(changes) - editable
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a charger")
    if changes.get("registration_status") not in (None, "Accepted", "Pending", "Rejected"):
        raise InvalidInput("registration status is Accepted, Pending or Rejected")
    if changes.get("ocpp_version_pinned") not in (None, "1.6", "2.0.1"):
        raise InvalidInput("a charger is pinned to OCPP 1.6 or 2.0.1 (null: whichever it offers)")
    async with conn.transaction():
        before = await conn.fetchrow(
            f"SELECT {LIST_COLUMNS} FROM ocpp.charge_boxes cb LEFT JOIN ocpp.sites s ON s.id = cb.site_id "
            "WHERE cb.charge_box_id = $1 FOR UPDATE OF cb",
            charge_box_id,
        )
        if before is None:
            raise NotFound(f"no charger {charge_box_id}")
        profile = changes.get("security_profile")
        if profile is not None:
            if profile not in SECURITY_PROFILES:
                raise InvalidInput(f"security profile is one of {', '.join(map(str, SECURITY_PROFILES))}")
            if profile > 0 and await conn.fetchval(
                "SELECT key_hash IS NULL FROM ocpp.charge_boxes WHERE id = $1", before["id"]
            ):
                raise InvalidInput(f"charger {charge_box_id} has no password: set one first (it moves to profile 1)")
        site_id = None
        if "site_name" in changes:
            site_id = await ensure_site(conn, changes["site_name"], changes.get("site_address"))
        elif "site_address" in changes and before["site_name"]:
            await ensure_site(conn, before["site_name"], changes["site_address"])
        await conn.execute(
            """
            UPDATE ocpp.charge_boxes SET
                description = CASE WHEN $2 THEN $3 ELSE description END,
                active = coalesce($4, active),
                site_id = CASE WHEN $7 THEN $5::bigint ELSE site_id END,
                registration_status = coalesce($6, registration_status),
                security_profile = coalesce($8, security_profile),
                ocpp_version_pinned = CASE WHEN $9 THEN $10 ELSE ocpp_version_pinned END,
                updated_at = now()
            WHERE charge_box_id = $1
            """,
            charge_box_id,
            "description" in changes,
            changes.get("description"),
            changes.get("active"),
            site_id,
            changes.get("registration_status"),
            "site_name" in changes,
            profile,
            "ocpp_version_pinned" in changes,
            changes.get("ocpp_version_pinned"),
        )
        after = await conn.fetchrow(
            f"SELECT {LIST_COLUMNS} FROM ocpp.charge_boxes cb LEFT JOIN ocpp.sites s ON s.id = cb.site_id "
            "WHERE cb.charge_box_id = $1",
            charge_box_id,
        )
    return before, after


async def charge_boxes_seen_with_tag(conn: asyncpg.Connection, id_tag: str, *, recent: int = 20) -> list[str]:
    """Chargers a card was last seen on or recently charged at (where a cached copy may live)."""
    rows = await conn.fetch(
        """
        SELECT cb.charge_box_id FROM app.id_tags t
        JOIN ocpp.charge_boxes cb ON cb.id = t.last_seen_charge_box_pk
        WHERE lower(t.id_tag) = lower($1)
        UNION
        SELECT cb.charge_box_id FROM (
            SELECT charge_box_pk FROM ocpp.transactions
            WHERE lower(id_tag) = lower($1) ORDER BY start_timestamp DESC LIMIT $2
        ) r JOIN ocpp.charge_boxes cb ON cb.id = r.charge_box_pk
        """,
        id_tag,
        recent,
    )
    return sorted(r["charge_box_id"] for r in rows)


async def fleet_counts(conn: asyncpg.Connection, offline_for: timedelta) -> asyncpg.Record:
    """Active chargers online / offline / faulted / charging (the dashboard's first line),
    and how many have been offline longer than `offline_for` after having connected once.
    Test chargers (`polaris smoke`) are not part of the fleet."""
    return await conn.fetchrow(
        f"""
        WITH per_box AS (
            SELECT c.charge_box_pk, bool_or({_FAULTED}) AS faulted, bool_or({_CHARGING}) AS charging
            FROM ocpp.connectors c WHERE {_ATTENTION} GROUP BY c.charge_box_pk
        )
        SELECT count(*) FILTER (WHERE cb.connected) AS online,
               count(*) FILTER (WHERE NOT cb.connected) AS offline,
               count(*) FILTER (WHERE p.faulted) AS faulted,
               count(*) FILTER (WHERE p.charging) AS charging,
               count(*) FILTER (WHERE NOT cb.connected AND cb.last_seen_at < now() - $1::interval)
                   AS long_offline
        FROM ocpp.charge_boxes cb LEFT JOIN per_box p ON p.charge_box_pk = cb.id
        WHERE cb.active AND NOT cb.is_test
        """,
        offline_for,
    )
