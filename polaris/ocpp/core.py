"""What a charger's messages do, whatever OCPP version carries them.

Each version's handlers (v16/charge_point.py, v201/charge_point.py) read their own message
shapes and call these functions with plain values: a boot, a heartbeat, a connector's
status, an id tag to authorize, a transaction started or stopped, meter readings as
`Sample` groups, a vendor's DataTransfer. Here those become rows, NOTIFYs, hook calls and
the answers' substance (a registration status, an IdTagInfo, a transaction id); the
handler turns that back into its version's reply. The functions take the `Session`, for
its charger (`pk`, `id`, `auth`) and its `ctx`.

IdTagInfo is returned as 1.6 names it, snake_case (`status`, `expiry_date`,
`parent_id_tag`); status one of Accepted, Blocked, Expired, Invalid, ConcurrentTx.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from polaris.db.repos import charge_boxes, connectors, id_tags, transactions
from polaris.db.repos import meter_values as readings
from polaris.db.repos.meter_values import Sample
from polaris.logs import get_logger
from polaris.ocpp import authorize as tags
from polaris.ocpp.errors import DB_UNAVAILABLE
from polaris.ocpp.journal import JournalEntry
from polaris.ocpp.parsing import now_utc, parse_timestamp
from polaris.ocpp.session import Session

log = get_logger(__name__)

HOOK_MAX_SAMPLES = 500  # the web's meter-values hook takes at most this many per request
_HOOK_FIELDS = ("value", "measurand", "unit", "context", "phase", "location")

# A change in a car's draw that makes the load-management controller recompute at once.
LOAD_CHANGE_AMPS = 1.0

SampleGroups = list[tuple[datetime, list[Sample]]]  # readings per timestamp (parsing.samples_from)


@dataclass(slots=True)
class Boot:
    """What a charger says about itself when it boots."""

    vendor: str | None
    model: str | None
    charge_point_serial_number: str | None = None
    charge_box_serial_number: str | None = None
    firmware_version: str | None = None
    iccid: str | None = None
    imsi: str | None = None
    meter_type: str | None = None
    meter_serial_number: str | None = None


async def boot(s: Session, info: Boot) -> str:
    """Store the boot; the registration status to answer (from connect time if the database is down)."""
    try:
        async with s.ctx.pool.acquire() as conn:
            status = await charge_boxes.record_boot(conn, s.pk, **asdict(info), ocpp_version=s.OCPP_VERSION)
            await connectors.notify_charger_event(conn, {"event": "boot", "charge_box_id": s.id})
        s.auth.registration_status = status or s.auth.registration_status
    except DB_UNAVAILABLE:
        # A boot is no transaction message: answer from what we knew at connect time.
        log.warning("boot not stored: database unavailable", charge_box_id=s.id)
    log.info("charger booted", charge_box_id=s.id, vendor=info.vendor, model=info.model,
             firmware=info.firmware_version, registration_status=s.auth.registration_status)
    return s.auth.registration_status


def heartbeat(s: Session) -> None:
    s.ctx.presence.heartbeat(s.pk)


async def connector_status(s: Session, connector_id: int, status: str, error_code: str, *,
                           info: str | None = None, vendor_id: str | None = None,
                           vendor_error_code: str | None = None, timestamp: object = None) -> None:
    """A connector's state (0: the charger itself); kept in memory while the database is down."""
    record = dict(
        charge_box_pk=s.pk, charge_box_id=s.id, connector_id=connector_id, status=status,
        error_code=error_code, info=info, vendor_id=vendor_id, vendor_error_code=vendor_error_code,
        status_at=parse_timestamp(timestamp),
    )
    try:
        async with s.ctx.pool.acquire() as conn:
            await connectors.record_status(conn, **record)
            if status == "Available" and connector_id > 0:
                # A refused start on this connector is over: it never counted as a session.
                closed = await transactions.close_refused(conn, s.pk, s.id, connector_id, record["status_at"])
                if closed:
                    log.info("refused starts closed: connector Available", charge_box_id=s.id,
                             connector_id=connector_id, transaction_ids=closed)
    except DB_UNAVAILABLE:
        s.ctx.presence.defer_status(record)  # written when the database is back


async def authorize(s: Session, id_tag: str) -> dict:
    """IdTagInfo for an Authorize: ConcurrentTx when the tag is charging elsewhere."""
    async with s.ctx.pool.acquire() as conn:
        info = await tags.decide(conn, id_tag, s.pk, now_utc(), keep_unknown=False, check_concurrent=True)
    await _apply_override(s, info, id_tag, None, is_start_tx=False)
    return info


async def start_transaction(s: Session, *, connector_id: int, id_tag: str, meter_start: int,
                            timestamp: object, reservation_id: int | None = None) -> tuple[int, dict]:
    """Record a session (a resend gets the same id); its transaction id and IdTagInfo.

    An empty `id_tag` is a start without a card (2.0.1 stations may start on plug-in and
    authorize later): no card was refused, so its status is left unset (counted as accepted).
    """
    now = now_utc()
    if id_tag:
        async with s.ctx.pool.acquire() as conn:
            info = await tags.decide(conn, id_tag, s.pk, now, keep_unknown=True, check_concurrent=False)
        await _apply_override(s, info, id_tag, connector_id, is_start_tx=True)
    else:
        info = {"status": "Accepted"}
    async with s.ctx.pool.acquire() as conn:
        started = await transactions.start_transaction(
            conn, charge_box_pk=s.pk, charge_box_id=s.id, connector_id=connector_id,
            id_tag=id_tag, id_tag_status=info["status"] if id_tag else None,
            start_timestamp=parse_timestamp(timestamp, received=now), meter_start=meter_start,
            reservation_id=reservation_id,
        )
        if id_tag and info["status"] == "Accepted" and await transactions.at_active_limit(
            conn, id_tag, excluding=started.transaction_id
        ):
            info["status"] = "ConcurrentTx"
            await transactions.set_id_tag_status(conn, started.transaction_id, "ConcurrentTx")
    if info["status"] == "Accepted":
        s.ctx.load_wake.set()
    log.info("transaction started" if started.created else "transaction start resent",
             charge_box_id=s.id, transaction_id=started.transaction_id, status=info["status"])
    return started.transaction_id, info


async def stop_transaction(s: Session, *, transaction_id: int, meter_stop: int, timestamp: object,
                           id_tag: str | None, reason: str | None, samples: SampleGroups,
                           transaction_data: object | None, payload: dict) -> dict | None:
    """Apply a stop (what cannot be applied is kept, with `payload` as received); IdTagInfo if a tag was given."""
    now = now_utc()
    async with s.ctx.pool.acquire() as conn:
        result = await transactions.stop_transaction(
            conn, charge_box_pk=s.pk, charge_box_id=s.id, transaction_id=transaction_id,
            id_tag=id_tag, stop_timestamp=parse_timestamp(timestamp, received=now),
            meter_stop=meter_stop, reason=reason, transaction_data=transaction_data, payload=payload,
        )
        rows = [sample for _, group in samples for sample in group]
        linked = None
        if rows:
            linked = await readings.insert_meter_values(
                conn, s.pk, result.connector_id or 0,
                transaction_id if result.outcome == "stopped" else None, rows)
        info = None
        if id_tag:
            info = tags.tag_info(await id_tags.get_id_tag(conn, id_tag), now)
    s.ctx.load_wake.set()
    s.ctx.load_seen.pop((s.pk, result.connector_id or 0), None)
    if result.outcome == "already_stopped":
        # A resend after a lost reply: answered again, nothing changes, nothing is kept.
        log.info("duplicate StopTransaction answered", charge_box_id=s.id, transaction_id=transaction_id)
    elif result.outcome != "stopped":
        log.warning("StopTransaction kept, not applied", charge_box_id=s.id,
                    transaction_id=transaction_id, outcome=result.outcome)
    if linked is not None:
        _post_meter_values(s, linked, result.connector_id or 0, samples)
    return info


async def meter_values(s: Session, connector_id: int, transaction_id: int | None,
                                samples: SampleGroups) -> None:
    """Store readings (linked to the session when it is this charger's) and pass them to the web."""
    rows = [sample for _, group in samples for sample in group]
    async with s.ctx.pool.acquire() as conn:
        linked = await readings.insert_meter_values(conn, s.pk, connector_id, transaction_id, rows)
    _note_draw(s, connector_id, rows)
    if linked is not None:
        _post_meter_values(s, linked, connector_id, samples)


async def data_transfer(s: Session, vendor_id: str, message_id: str | None, data: Any) -> tuple[str, Any]:
    """Ask the vendor's registered handler (UnknownVendorId without one); journaled in the background."""
    handler = s.ctx.data_transfer_handlers.get(vendor_id)
    if handler is None:
        status, answer = "UnknownVendorId", None
    else:
        status, answer = await handler(s, message_id, data)
    s.ctx.spawn(s.ctx.journal.record(JournalEntry(
        charge_box_id=s.id, action="DataTransfer", unique_id=s.current_unique_id,
        request={"vendorId": vendor_id, "messageId": message_id, "data": data},
        direction="cp_to_cs", status="answered", response={"status": status, "data": answer})))
    return status, answer


async def diagnostics_status(s: Session, status: str) -> None:
    await _store_quietly(s, charge_boxes.set_diagnostics_status, status)


async def firmware_status(s: Session, status: str) -> None:
    await _store_quietly(s, charge_boxes.set_firmware_status, status)


# --- helpers -------------------------------------------------------------------------------


async def _apply_override(s: Session, info: dict, id_tag: str, connector_id: int | None,
                          *, is_start_tx: bool) -> None:
    override = await s.ctx.hooks.pre_authorize(id_tag, s.id, connector_id, is_start_tx)
    if override == "BLOCKED" and info["status"] in ("Accepted", "ConcurrentTx"):
        info["status"] = "Blocked"


def _note_draw(s: Session, connector_id: int, rows: list[Sample]) -> None:
    """Wake the load-management controller when a connector's current or power changed noticeably."""
    amps = [r.value_num for r in rows if r.measurand == "Current.Import" and r.value_num is not None]
    watts = [r.value_num for r in rows if r.measurand == "Power.Active.Import" and r.value_num is not None]
    if not amps and not watts:
        return
    # Compare like with like: the highest phase current, else power as amps at 3 x 230 V.
    now = max(amps) if amps else max(watts) / 690.0
    key = (s.pk, connector_id)
    before = s.ctx.load_seen.get(key)
    s.ctx.load_seen[key] = now
    if before is None or abs(now - before) >= LOAD_CHANGE_AMPS:
        s.ctx.load_wake.set()


def _post_meter_values(s: Session, transaction_pk: int, connector_id: int, samples: SampleGroups) -> None:
    for at, group in samples:
        fields = [{k: v for k in _HOOK_FIELDS if (v := getattr(sample, k)) is not None} for sample in group]
        for i in range(0, len(fields), HOOK_MAX_SAMPLES):
            s.ctx.hooks.meter_values(s.id, transaction_pk, connector_id, at.isoformat(),
                                     fields[i:i + HOOK_MAX_SAMPLES])


async def _store_quietly(s: Session, fn: Any, *args: Any) -> None:
    try:
        async with s.ctx.pool.acquire() as conn:
            await fn(conn, s.pk, *args)
    except DB_UNAVAILABLE:
        log.warning("status not stored: database unavailable", charge_box_id=s.id)
