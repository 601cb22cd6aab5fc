"""Sites and their load management: grid limits, circuits, chargers' ranges, allocations, live load."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from polaris.db.errors import NotFound

SITE_COLUMNS = ("s.id, s.name, s.address, s.limit_amps::float8 AS limit_amps, s.limit_kw::float8 AS limit_kw, "
                "s.phases, s.margin_amps::float8 AS margin_amps, s.policy, s.updated_at")
LIMIT_FIELDS = ("limit_amps", "limit_kw", "phases", "margin_amps", "policy")


def _num(x: float | None, places: int) -> Decimal | None:
    """A float as the decimal people read (asyncpg would store 18.1 as 18.10000000000000142...)."""
    return None if x is None else Decimal(f"{x:.{places}f}")


async def get_site(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {SITE_COLUMNS} FROM ocpp.sites s WHERE s.name = $1", name.strip())


async def list_sites(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every site with its limits, charger count and live load (when managed)."""
    return await conn.fetch(
        f"""
        SELECT {SITE_COLUMNS},
               (SELECT count(*) FROM ocpp.charge_boxes cb WHERE cb.site_id = s.id) AS chargers,
               l.drawn_amps::float8[] AS drawn_amps, l.allocated_amps::float8[] AS allocated_amps,
               l.over_since, l.controller, l.updated_at AS load_at
        FROM ocpp.sites s LEFT JOIN ocpp.site_load l ON l.site_id = s.id
        ORDER BY s.name
        """
    )


async def set_site_limits(conn: asyncpg.Connection, name: str, changes: dict[str, Any],
                          *, address: str | None = None) -> tuple[dict, dict]:
    """Create the site if new, change its limits; (before, after) of the limit fields."""
    name = name.strip()
    if not name:
        raise ValueError("a site needs a name")
    await conn.execute(
        "INSERT INTO ocpp.sites (name, address) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE "
        "SET address = COALESCE(EXCLUDED.address, ocpp.sites.address)", name, address,
    )
    before = await conn.fetchrow(f"SELECT {SITE_COLUMNS} FROM ocpp.sites s WHERE s.name = $1 FOR UPDATE", name)
    fields = {k: _num(v, 2) if isinstance(v, float) else v for k, v in changes.items() if k in LIMIT_FIELDS}
    if fields:
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, start=2))
        await conn.execute(f"UPDATE ocpp.sites SET {sets}, updated_at = now() WHERE name = $1",
                           name, *fields.values())
    after = await conn.fetchrow(f"SELECT {SITE_COLUMNS} FROM ocpp.sites s WHERE s.name = $1", name)
    keys = ("id", "name", *LIMIT_FIELDS)
    return {k: before[k] for k in keys}, {k: after[k] for k in keys}


async def set_circuit(conn: asyncpg.Connection, site_name: str, name: str, limit_amps: float,
                      parent: str | None = None) -> asyncpg.Record:
    """Create or change a circuit (a breaker) under the site or under another of its circuits."""
    site = await get_site(conn, site_name)
    if site is None:
        raise NotFound(f"no site {site_name}")
    parent_id = None
    if parent:
        parent_id = await conn.fetchval("SELECT id FROM ocpp.circuits WHERE site_id = $1 AND name = $2",
                                        site["id"], parent)
        if parent_id is None:
            raise NotFound(f"no circuit {parent} at site {site_name}")
    row = await conn.fetchrow(
        """
        INSERT INTO ocpp.circuits (site_id, name, limit_amps, parent_id) VALUES ($1, $2, $3, $4)
        ON CONFLICT (site_id, name) DO UPDATE SET limit_amps = EXCLUDED.limit_amps, parent_id = EXCLUDED.parent_id
        RETURNING id, name, limit_amps::float8 AS limit_amps, parent_id
        """,
        site["id"], name.strip(), _num(float(limit_amps), 2), parent_id,
    )
    if parent_id is not None and await _has_cycle(conn, row["id"]):
        raise ValueError(f"circuit {name} cannot sit under {parent}: {parent} is under {name}")
    return row


async def _has_cycle(conn: asyncpg.Connection, circuit_id: int) -> bool:
    return bool(await conn.fetchval(
        """
        WITH RECURSIVE up(id, depth) AS (
            SELECT parent_id, 1 FROM ocpp.circuits WHERE id = $1
            UNION ALL SELECT c.parent_id, depth + 1 FROM ocpp.circuits c JOIN up ON c.id = up.id
            WHERE up.id IS NOT NULL AND depth < 100
        ) SELECT EXISTS (SELECT 1 FROM up WHERE id = $1)
        """, circuit_id))


async def list_circuits(conn: asyncpg.Connection, site_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT c.id, c.name, c.limit_amps::float8 AS limit_amps, c.parent_id, p.name AS parent "
        "FROM ocpp.circuits c LEFT JOIN ocpp.circuits p ON p.id = c.parent_id WHERE c.site_id = $1 ORDER BY c.name",
        site_id,
    )


async def set_charger_load(conn: asyncpg.Connection, charge_box_id: str, changes: dict[str, Any]) -> tuple[dict, dict]:
    """A charger's circuit (by name, at its site) and its own min/max amps; (before, after)."""
    row = await conn.fetchrow(
        "SELECT cb.id, cb.site_id, c.name AS circuit, cb.min_amps::float8 AS min_amps, "
        "cb.max_amps::float8 AS max_amps FROM ocpp.charge_boxes cb "
        "LEFT JOIN ocpp.circuits c ON c.id = cb.circuit_id WHERE lower(cb.charge_box_id) = lower($1) FOR UPDATE OF cb",
        charge_box_id,
    )
    if row is None:
        raise NotFound(f"no charger {charge_box_id}")
    before = {k: row[k] for k in ("circuit", "min_amps", "max_amps")}
    if "circuit" in changes:
        circuit_id = None
        if changes["circuit"]:
            circuit_id = await conn.fetchval("SELECT id FROM ocpp.circuits WHERE site_id = $1 AND name = $2",
                                             row["site_id"], changes["circuit"])
            if circuit_id is None:
                raise NotFound(f"no circuit {changes['circuit']} at the charger's site")
        await conn.execute("UPDATE ocpp.charge_boxes SET circuit_id = $2 WHERE id = $1", row["id"], circuit_id)
    for key in ("min_amps", "max_amps"):
        if key in changes:
            value = changes[key]
            await conn.execute(f"UPDATE ocpp.charge_boxes SET {key} = $2 WHERE id = $1", row["id"],
                               _num(float(value), 2) if value is not None else None)
    after = {**before, **{k: v for k, v in changes.items() if k in before}}
    return before, after


# --- what the controller reads and writes -------------------------------------------------


async def managed_sites_in_use(conn: asyncpg.Connection) -> list[int]:
    """Sites with a limit and at least one connected charger: the ones a controller must hold."""
    rows = await conn.fetch(
        """
        SELECT s.id FROM ocpp.sites s
        WHERE (s.limit_amps IS NOT NULL OR s.limit_kw IS NOT NULL)
          AND EXISTS (SELECT 1 FROM ocpp.charge_boxes cb WHERE cb.site_id = s.id AND cb.connected)
        ORDER BY s.id
        """
    )
    return [r["id"] for r in rows]


async def site_inputs(conn: asyncpg.Connection, site_id: int) -> dict[str, Any] | None:
    """Everything the allocator needs about one site, in three reads."""
    site = await conn.fetchrow(f"SELECT {SITE_COLUMNS} FROM ocpp.sites s WHERE s.id = $1", site_id)
    if site is None:
        return None
    circuits = await conn.fetch(
        "SELECT id, limit_amps::float8 AS limit_amps, parent_id FROM ocpp.circuits WHERE site_id = $1", site_id)
    chargers = await conn.fetch(
        """
        SELECT cb.id AS pk, cb.charge_box_id, cb.circuit_id, cb.connected, cb.ocpp_protocol,
               cb.min_amps::float8 AS min_amps, cb.max_amps::float8 AS max_amps,
               (SELECT count(*) FROM ocpp.connectors c WHERE c.charge_box_pk = cb.id AND c.connector_id > 0)
                   AS connectors
        FROM ocpp.charge_boxes cb WHERE cb.site_id = $1 AND cb.active ORDER BY cb.id
        """, site_id)
    sessions = await conn.fetch(
        """
        SELECT t.id AS transaction_id, t.charge_box_pk, t.connector_id, t.start_timestamp,
               a.limit_amps::float8 AS limit_amps, a.sent_amps::float8 AS sent_amps, a.answer, a.sent_at,
               a.transaction_id AS allocated_transaction_id,
               m.amps, m.watts, m.phases_seen
        FROM ocpp.transactions t
        JOIN ocpp.charge_boxes cb ON cb.id = t.charge_box_pk
        LEFT JOIN ocpp.load_allocations a ON a.charge_box_pk = t.charge_box_pk AND a.connector_id = t.connector_id
        LEFT JOIN LATERAL (
            -- The newest sample's readings: the highest phase current, the power, the phases drawn on.
            SELECT max(v.value_num) FILTER (WHERE v.measurand = 'Current.Import') AS amps,
                   max(v.value_num) FILTER (WHERE v.measurand = 'Power.Active.Import'
                                            AND coalesce(v.unit, 'W') = 'W') AS watts,
                   array_agg(DISTINCT v.phase) FILTER (WHERE v.measurand = 'Current.Import'
                                                       AND v.value_num > 0.5 AND v.phase IS NOT NULL) AS phases_seen
            FROM ocpp.meter_values v
            WHERE v.transaction_id = t.id
              AND v.sampled_at = (SELECT max(sampled_at) FROM ocpp.meter_values w
                                  WHERE w.transaction_id = t.id AND w.measurand IN ('Current.Import', 'Power.Active.Import'))
        ) m ON true
        WHERE cb.site_id = $1 AND t.stop_timestamp IS NULL AND t.id_tag_status = 'Accepted'
          AND cb.active AND t.stuck_since IS NULL
        ORDER BY t.start_timestamp, t.id
        """, site_id)
    return {"site": site, "circuits": circuits, "chargers": chargers, "sessions": sessions}


async def save_allocation(conn: asyncpg.Connection, *, charge_box_pk: int, connector_id: int, site_id: int,
                          transaction_id: int | None, limit_amps: float, phases: int, paused_reason: str | None,
                          drawn_amps: float | None) -> None:
    await conn.execute(
        """
        INSERT INTO ocpp.load_allocations (charge_box_pk, connector_id, site_id, transaction_id, limit_amps, phases,
                                           paused_reason, drawn_amps, decided_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
        ON CONFLICT (charge_box_pk, connector_id) DO UPDATE SET
            site_id = EXCLUDED.site_id, limit_amps = EXCLUDED.limit_amps, phases = EXCLUDED.phases,
            paused_reason = EXCLUDED.paused_reason, drawn_amps = EXCLUDED.drawn_amps, decided_at = now(),
            -- a new session on the connector starts from nothing sent
            sent_amps = CASE WHEN ocpp.load_allocations.transaction_id IS DISTINCT FROM EXCLUDED.transaction_id
                             THEN NULL ELSE ocpp.load_allocations.sent_amps END,
            answer = CASE WHEN ocpp.load_allocations.transaction_id IS DISTINCT FROM EXCLUDED.transaction_id
                          THEN NULL ELSE ocpp.load_allocations.answer END,
            transaction_id = EXCLUDED.transaction_id
        """,
        charge_box_pk, connector_id, site_id, transaction_id, _num(limit_amps, 1), phases, paused_reason,
        _num(drawn_amps, 2),
    )


async def save_answer(conn: asyncpg.Connection, charge_box_pk: int, connector_id: int, *, sent_amps: float | None,
                      answer: str, composite_amps: float | None = None) -> None:
    await conn.execute(
        "UPDATE ocpp.load_allocations SET sent_amps = $3, answer = $4, composite_amps = $5, sent_at = now() "
        "WHERE charge_box_pk = $1 AND connector_id = $2",
        charge_box_pk, connector_id, _num(sent_amps, 1), answer, _num(composite_amps, 1),
    )


async def drop_finished(conn: asyncpg.Connection, site_id: int, keep: list[tuple[int, int]]) -> None:
    """Allocations of sessions that ended (or left the site) go."""
    await conn.execute(
        """
        DELETE FROM ocpp.load_allocations a WHERE a.site_id = $1 AND NOT EXISTS (
            SELECT 1 FROM unnest($2::bigint[], $3::int[]) k(pk, c) WHERE k.pk = a.charge_box_pk AND k.c = a.connector_id)
        """, site_id, [k[0] for k in keep], [k[1] for k in keep])


async def save_site_load(conn: asyncpg.Connection, site_id: int, *, controller: str, drawn: list[float],
                         allocated: list[float], over: bool) -> asyncpg.Record:
    """The site's totals now; `over_since` kept while it stays over its limit. Returns the row."""
    return await conn.fetchrow(
        """
        INSERT INTO ocpp.site_load (site_id, controller, drawn_amps, allocated_amps, over_since, updated_at)
        VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END, now())
        ON CONFLICT (site_id) DO UPDATE SET
            controller = EXCLUDED.controller, drawn_amps = EXCLUDED.drawn_amps,
            allocated_amps = EXCLUDED.allocated_amps, updated_at = now(),
            over_since = CASE WHEN $5 THEN coalesce(ocpp.site_load.over_since, now()) END,
            alerted_at = CASE WHEN $5 THEN ocpp.site_load.alerted_at END
        RETURNING over_since, alerted_at
        """,
        site_id, controller, [_num(x, 2) for x in drawn], [_num(x, 2) for x in allocated], over,
    )


async def sites_over(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Sites whose cars draw more than the grid limit now (the operator alert's condition)."""
    return await conn.fetch(
        """
        SELECT s.id, s.name, s.limit_amps::float8 AS limit_amps, l.drawn_amps::float8[] AS drawn_amps, l.over_since
        FROM ocpp.site_load l JOIN ocpp.sites s ON s.id = l.site_id
        WHERE l.over_since IS NOT NULL AND s.limit_amps IS NOT NULL
        """)


async def site_view(conn: asyncpg.Connection, name: str) -> dict[str, Any] | None:
    """A site for people: limits, circuits, live totals and every session's allocation and draw."""
    site = await get_site(conn, name)
    if site is None:
        return None
    load = await conn.fetchrow(
        "SELECT drawn_amps::float8[] AS drawn_amps, allocated_amps::float8[] AS allocated_amps, over_since, "
        "controller, updated_at FROM ocpp.site_load WHERE site_id = $1", site["id"])
    sessions = await conn.fetch(
        """
        SELECT cb.charge_box_id, a.connector_id, a.transaction_id, a.limit_amps::float8 AS limit_amps,
               a.phases, a.paused_reason, a.drawn_amps::float8 AS drawn_amps, a.sent_amps::float8 AS sent_amps,
               a.answer, a.composite_amps::float8 AS composite_amps, a.decided_at, a.sent_at, c.name AS circuit
        FROM ocpp.load_allocations a JOIN ocpp.charge_boxes cb ON cb.id = a.charge_box_pk
        LEFT JOIN ocpp.circuits c ON c.id = cb.circuit_id
        WHERE a.site_id = $1 ORDER BY cb.charge_box_id, a.connector_id
        """, site["id"])
    chargers = await conn.fetch(
        "SELECT cb.charge_box_id, cb.connected, c.name AS circuit, cb.min_amps::float8 AS min_amps, "
        "cb.max_amps::float8 AS max_amps FROM ocpp.charge_boxes cb LEFT JOIN ocpp.circuits c ON c.id = cb.circuit_id "
        "WHERE cb.site_id = $1 ORDER BY cb.charge_box_id", site["id"])
    return {
        "site": dict(site),
        "circuits": [dict(r) for r in await list_circuits(conn, site["id"])],
        "load": dict(load) if load else None,
        "sessions": [dict(r) for r in sessions],
        "chargers": [dict(r) for r in chargers],
    }


async def transaction_limit(conn: asyncpg.Connection, transaction_id: int) -> asyncpg.Record | None:
    """The site's limit on one session, when load management holds it under its charger's maximum."""
    return await conn.fetchrow(
        """
        SELECT a.limit_amps::float8 AS limit_amps, a.phases, a.paused_reason, a.answer,
               coalesce(cb.max_amps, 32)::float8 AS max_amps, s.name AS site_name
        FROM ocpp.load_allocations a JOIN ocpp.charge_boxes cb ON cb.id = a.charge_box_pk
        JOIN ocpp.sites s ON s.id = a.site_id
        WHERE a.transaction_id = $1
        """, transaction_id)
