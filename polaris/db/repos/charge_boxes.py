"""Charge boxes (chargers): registration, keys, and the state the OCPP server keeps.

Charge box ids follow SteVe's rules, so chargers move over unchanged: 1 to 255 characters,
anything but `= / ( ) < >`, no control characters and no surrounding whitespace; two ids
that differ only in case are one charger (SteVe's column collation ignores case), so the
OCPP server finds a charger with `lower(charge_box_id)`. Each charger has a security
profile: 0 admits it by id alone (no key), 1 and 2 by HTTP Basic with its key.
"""

from __future__ import annotations

import re
import unicodedata

import asyncpg

from polaris.db.errors import AlreadyExists, InvalidInput
from polaris.db.notify import CHARGER_EVENTS
from polaris.keys import check_charger_key, generate_public_id, hash_charger_key, verify_charger_key

CHARGE_BOX_ID_MAX = 255  # SteVe's varchar(255)
CHARGE_BOX_ID_FORBIDDEN = "=/()<>"
SECURITY_PROFILES = (0, 1, 2)  # 3 (client certificates) is not supported yet
PUBLIC_ID = re.compile(r"^[A-Za-z0-9_-]{4,32}$")

LIST_COLUMNS = """
    cb.id, cb.charge_box_id, cb.public_id, cb.description, cb.registration_status, cb.active,
    cb.vendor, cb.model, cb.firmware_version, cb.connected, cb.last_seen_at,
    cb.last_heartbeat_at, cb.last_boot_at, cb.created_at, cb.security_profile,
    cb.rival_claims, cb.rival_claim_at, cb.ocpp_version, cb.ocpp_version_pinned,
    s.name AS site_name, s.address AS site_address
"""
_CREDENTIALS = ("id, charge_box_id, key_salt, key_hash, registration_status, active, security_profile, "
                "steve_key_bcrypt, ocpp_version_pinned")


def charge_box_id_problem(charge_box_id: str) -> str | None:
    """Why `charge_box_id` is not one SteVe would accept, or None when it is."""
    if not 1 <= len(charge_box_id) <= CHARGE_BOX_ID_MAX:
        return f"a charge box id is 1 to {CHARGE_BOX_ID_MAX} characters, got {len(charge_box_id)}"
    if charge_box_id.strip() != charge_box_id:
        return "a charge box id has no spaces at its start or end"
    bad = sorted({c for c in charge_box_id if c in CHARGE_BOX_ID_FORBIDDEN or unicodedata.category(c) == "Cc"})
    if bad:
        return (f"a charge box id may not contain {' '.join(CHARGE_BOX_ID_FORBIDDEN)} or control characters "
                f"(found {', '.join(repr(c) for c in bad)})")
    return None


def check_charge_box_id(charge_box_id: str) -> str:
    problem = charge_box_id_problem(charge_box_id)
    if problem:
        raise InvalidInput(f"charge box id {charge_box_id!r}: {problem}")
    return charge_box_id


def check_security_profile(profile: int, password: str | None) -> None:
    """Profile 0 has no password; 1 and 2 need one (16 to 40 characters)."""
    if profile not in SECURITY_PROFILES:
        raise InvalidInput(f"security profile is one of {', '.join(map(str, SECURITY_PROFILES))} "
                           f"(3, client certificates, is not supported yet), got {profile}")
    if profile == 0 and password is not None:
        raise InvalidInput("a charger with security profile 0 has no password (leave it out)")
    if profile > 0:
        if password is None:
            raise InvalidInput(f"a charger with security profile {profile} needs a password")
        problem = check_charger_key(password)
        if problem:
            raise InvalidInput(problem)


def check_public_id(public_id: str) -> str:
    if not PUBLIC_ID.match(public_id):
        raise InvalidInput("a public id is 4 to 32 letters, digits, '-' or '_' (it is printed in QR codes)")
    return public_id


def _already_exists(exc: asyncpg.UniqueViolationError, charge_box_id: str, public_id: str | None) -> AlreadyExists:
    if "public_id" in (exc.constraint_name or ""):
        return AlreadyExists(f"public id {public_id} is taken by another charger")
    return AlreadyExists(f"charge box {charge_box_id} already exists (ids match ignoring case)")


async def ensure_site(conn: asyncpg.Connection, site_name: str | None, address: str | None) -> int | None:
    """The site of that name (created, or its address filled in); None without a name."""
    if not site_name:
        return None
    return await conn.fetchval(
        """
        INSERT INTO ocpp.sites (name, address) VALUES ($1, $2)
        ON CONFLICT (name) DO UPDATE SET address = COALESCE(EXCLUDED.address, ocpp.sites.address)
        RETURNING id
        """,
        site_name.strip(),
        address,
    )


async def add_charge_boxes(
    conn: asyncpg.Connection,
    charge_box_ids: list[str],
    password: str | None,
    *,
    description: str | None = None,
    site_name: str | None = None,
    site_address: str | None = None,
    registration_status: str = "Accepted",
    security_profile: int = 1,
    public_id: str | None = None,
) -> list[asyncpg.Record]:
    """Register chargers sharing one password (none for profile 0); all or none (one transaction).

    `public_id` keeps a printed QR sticker working; it names one charger only.
    """
    if not charge_box_ids:
        raise InvalidInput("name at least one charge box id")
    for cid in charge_box_ids:
        check_charge_box_id(cid)
    folded = [c.lower() for c in charge_box_ids]
    dupes = {c for c in charge_box_ids if folded.count(c.lower()) > 1}
    if dupes:
        raise InvalidInput(f"charge box id given twice (ids match ignoring case): {', '.join(sorted(dupes))}")
    check_security_profile(security_profile, password)
    if public_id is not None:
        check_public_id(public_id)
        if len(charge_box_ids) > 1:
            raise InvalidInput("a public id names one charger: add chargers with their own public ids one by one")
    rows = []
    async with conn.transaction():
        site_id = await ensure_site(conn, site_name, site_address)
        for cid in charge_box_ids:
            salt, digest = hash_charger_key(password) if password is not None else (None, None)
            try:
                rows.append(
                    await conn.fetchrow(
                        """
                        INSERT INTO ocpp.charge_boxes
                            (charge_box_id, public_id, key_salt, key_hash, description, site_id,
                             registration_status, security_profile)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                        RETURNING id, charge_box_id, public_id, registration_status, security_profile,
                                  created_at
                        """,
                        cid,
                        public_id or generate_public_id(),
                        salt,
                        digest,
                        description,
                        site_id,
                        registration_status,
                        security_profile,
                    )
                )
            except asyncpg.UniqueViolationError as exc:
                raise _already_exists(exc, cid, public_id) from None
    return rows


async def set_charger_key(conn: asyncpg.Connection, charge_box_id: str, password: str) -> bool:
    problem = check_charger_key(password)
    if problem:
        raise InvalidInput(problem)
    salt, digest = hash_charger_key(password)
    # A charger that gets a password uses it: profile 0 becomes 1.
    status = await conn.execute(
        "UPDATE ocpp.charge_boxes SET key_salt = $2, key_hash = $3, "
        "security_profile = GREATEST(security_profile, 1), updated_at = now() "
        "WHERE charge_box_id = $1",
        charge_box_id,
        salt,
        digest,
    )
    return status != "UPDATE 0"


async def get_charge_box(conn: asyncpg.Connection, charge_box_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {LIST_COLUMNS}, cb.key_salt, cb.key_hash FROM ocpp.charge_boxes cb "
        "LEFT JOIN ocpp.sites s ON s.id = cb.site_id WHERE cb.charge_box_id = $1",
        charge_box_id,
    )


async def verify_key(conn: asyncpg.Connection, charge_box_id: str, password: str) -> bool:
    row = await conn.fetchrow(
        "SELECT key_salt, key_hash FROM ocpp.charge_boxes WHERE charge_box_id = $1 AND active",
        charge_box_id,
    )
    if row is None or row["key_hash"] is None:
        return False
    return verify_charger_key(password, row["key_salt"], row["key_hash"])


async def list_charge_boxes(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {LIST_COLUMNS} FROM ocpp.charge_boxes cb "
        "LEFT JOIN ocpp.sites s ON s.id = cb.site_id ORDER BY cb.charge_box_id"
    )


# --- used by the OCPP server -------------------------------------------------------------


async def get_credentials(conn: asyncpg.Connection, charge_box_id: str) -> asyncpg.Record | None:
    """What the OCPP server needs to admit a connection: pk, stored id, key, registration,
    active, security profile. The id matches ignoring case."""
    return await conn.fetchrow(
        f"SELECT {_CREDENTIALS} FROM ocpp.charge_boxes WHERE lower(charge_box_id) = lower($1)",
        charge_box_id,
    )


async def register_unknown(conn: asyncpg.Connection, charge_box_id: str, password: str | None,
                           registration_status: str) -> asyncpg.Record:
    """An unknown charger that connected (OCPP_UNKNOWN_CHARGERS pending or accepted): its first
    password becomes its key (profile 1), or it has none (profile 0)."""
    check_charge_box_id(charge_box_id)
    if registration_status not in ("Pending", "Accepted"):
        raise InvalidInput("an unknown charger is registered Pending or Accepted")
    salt = digest = None
    if password is not None:
        problem = check_charger_key(password)
        if problem:
            raise InvalidInput(problem)
        salt, digest = hash_charger_key(password)
    row = await conn.fetchrow(
        f"""
        INSERT INTO ocpp.charge_boxes
            (charge_box_id, public_id, key_salt, key_hash, registration_status, description,
             security_profile)
        VALUES ($1, $2, $3, $4, $5, 'registered on first connection', $6)
        ON CONFLICT DO NOTHING
        RETURNING {_CREDENTIALS}
        """,
        charge_box_id,
        generate_public_id(),
        salt,
        digest,
        registration_status,
        0 if password is None else 1,
    )
    if row is None:
        raise AlreadyExists(f"charge box {charge_box_id} already exists")
    return row


async def adopt_steve_key(conn: asyncpg.Connection, charge_box_pk: int, password: str) -> tuple[bytes, bytes]:
    """A charger from SteVe proved its password against SteVe's bcrypt hash: keep ours instead."""
    salt, digest = hash_charger_key(password)
    await conn.execute(
        "UPDATE ocpp.charge_boxes SET key_salt = $2, key_hash = $3, steve_key_bcrypt = NULL, updated_at = now() "
        "WHERE id = $1",
        charge_box_pk,
        salt,
        digest,
    )
    return salt, digest


async def record_rival_claim(conn: asyncpg.Connection, charge_box_pk: int) -> int:
    """A second claimant of a Pending charger was refused; how many there have been."""
    return await conn.fetchval(
        "UPDATE ocpp.charge_boxes SET rival_claims = rival_claims + 1, rival_claim_at = now(), "
        "updated_at = now() WHERE id = $1 RETURNING rival_claims",
        charge_box_pk,
    )


async def record_boot(
    conn: asyncpg.Connection,
    charge_box_pk: int,
    *,
    vendor: str | None,
    model: str | None,
    charge_point_serial_number: str | None,
    charge_box_serial_number: str | None,
    firmware_version: str | None,
    iccid: str | None,
    imsi: str | None,
    meter_type: str | None,
    meter_serial_number: str | None,
    ocpp_version: str = "1.6",
) -> str:
    """Store what a BootNotification said; return the registration status to answer with."""
    return await conn.fetchval(
        """
        UPDATE ocpp.charge_boxes SET
            vendor = $2, model = $3, charge_point_serial_number = $4,
            charge_box_serial_number = $5, firmware_version = $6, iccid = $7, imsi = $8,
            meter_type = $9, meter_serial_number = $10,
            ocpp_protocol = CASE $11 WHEN '1.6' THEN 'ocpp1.6J' ELSE 'ocpp' || $11 END, ocpp_version = $11,
            last_boot_at = now(), last_seen_at = now(), updated_at = now()
        WHERE id = $1
        RETURNING registration_status
        """,
        charge_box_pk,
        vendor,
        model,
        charge_point_serial_number,
        charge_box_serial_number,
        firmware_version,
        iccid,
        imsi,
        meter_type,
        meter_serial_number,
        ocpp_version,
    )


async def disconnect_instance(conn: asyncpg.Connection, instance: str) -> int:
    """Mark every charger held by `instance` disconnected (server start and stop)."""
    status = await conn.execute(
        "UPDATE ocpp.charge_boxes SET connected = false, connected_instance = NULL, "
        "updated_at = now() WHERE connected_instance = $1",
        instance,
    )
    return int(status.split()[-1])


async def touch_seen(
    conn: asyncpg.Connection,
    seen: dict[int, object],
    heartbeats: dict[int, object],
) -> None:
    """Write buffered last-seen / last-heartbeat times in one statement each."""
    if seen:
        await conn.execute(
            """
            UPDATE ocpp.charge_boxes cb SET last_seen_at = GREATEST(cb.last_seen_at, u.at)
            FROM UNNEST($1::bigint[], $2::timestamptz[]) AS u(pk, at) WHERE cb.id = u.pk
            """,
            list(seen),
            list(seen.values()),
        )
    if heartbeats:
        await conn.execute(
            """
            UPDATE ocpp.charge_boxes cb
            SET last_heartbeat_at = GREATEST(cb.last_heartbeat_at, u.at)
            FROM UNNEST($1::bigint[], $2::timestamptz[]) AS u(pk, at) WHERE cb.id = u.pk
            """,
            list(heartbeats),
            list(heartbeats.values()),
        )


async def set_diagnostics_status(conn: asyncpg.Connection, charge_box_pk: int, status: str) -> None:
    await conn.execute(
        "UPDATE ocpp.charge_boxes SET diagnostics_status = $2, diagnostics_status_at = now(), "
        "updated_at = now() WHERE id = $1",
        charge_box_pk,
        status,
    )


async def set_firmware_status(conn: asyncpg.Connection, charge_box_pk: int, status: str) -> None:
    await conn.execute(
        "UPDATE ocpp.charge_boxes SET firmware_status = $2, firmware_status_at = now(), "
        "updated_at = now() WHERE id = $1",
        charge_box_pk,
        status,
    )


async def get_connection_state(conn: asyncpg.Connection, charge_box_id: str) -> asyncpg.Record | None:
    """Whether and where a charger is connected, and when it was last heard from."""
    return await conn.fetchrow(
        "SELECT id, charge_box_id, connected, connected_instance, last_seen_at, ocpp_version FROM ocpp.charge_boxes "
        "WHERE lower(charge_box_id) = lower($1)",
        charge_box_id,
    )


async def set_connected_many(
    conn: asyncpg.Connection, changes: list[tuple[int, bool, str]], instance: str
) -> None:
    """Connected / disconnected for many chargers in one statement; NOTIFY per change.

    `changes` holds (charge_box_pk, connected, event JSON). A disconnect only counts if
    this instance still holds the charger.
    """
    if not changes:
        return
    # A charger that dropped and came back within one batch appears twice: only its last
    # state counts (UPDATE ... FROM would apply an arbitrary one of the two rows).
    changes = list({c[0]: c for c in changes}.values())
    await conn.execute(
        """
        WITH u AS (
            SELECT * FROM UNNEST($1::bigint[], $2::boolean[], $3::text[]) AS u(pk, connected, event)
        ), changed AS (
            UPDATE ocpp.charge_boxes cb SET
                connected = u.connected,
                connected_instance = CASE WHEN u.connected THEN $4 END,
                last_seen_at = CASE WHEN u.connected THEN now() ELSE cb.last_seen_at END,
                updated_at = now()
            FROM u
            WHERE cb.id = u.pk AND (u.connected OR cb.connected_instance = $4)
            RETURNING u.event
        )
        SELECT count(pg_notify($5, event)) FROM changed
        """,
        [c[0] for c in changes],
        [c[1] for c in changes],
        [c[2] for c in changes],
        instance,
        CHARGER_EVENTS,
    )
