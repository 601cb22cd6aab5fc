"""OCPP 2.0.1 TransactionEvent onto our sessions: one event stream per charger transaction id.

A 2.0.1 station names its transaction (a string of up to 36 characters) and numbers every
event of it (`seqNo`). We map that id onto one of our sessions (`ocpp.transaction_ids`), the
same one for a resent Started, and keep each (transaction, seqNo) once: a duplicate is
answered and not applied again. A missing seqNo (a message lost, or still in the station's
offline queue) is counted on the mapping and logged; the session goes on. An Updated or
Ended for a transaction whose Started never came opens the session from that event, so no
energy is lost. Energy comes from the `Energy.Active.Import.Register` readings: meterStart
from the Started event's (or the first one seen), meterStop from the Ended event's (or the
highest one stored). Events after the Ended (offline replays out of order) add readings and
never reopen the session.
"""

from __future__ import annotations

from polaris.db.repos import id_tags, transaction_events
from polaris.logs import get_logger
from polaris.ocpp import authorize as tags
from polaris.ocpp import core
from polaris.ocpp.parsing import now_utc, parse_timestamp
from polaris.ocpp.session import Session
from polaris.ocpp.v201.metering import register_wh, samples_from

log = get_logger(__name__)

# idToken types that carry no card: a start with one of these is a start without a card.
CARDLESS = frozenset({"NoAuthorization"})


def id_tag_of(id_token: dict | None) -> str:
    """Our id tag for a 2.0.1 idToken ('' for none: a start without a card)."""
    if not isinstance(id_token, dict) or id_token.get("type") in CARDLESS:
        return ""
    return str(id_token.get("id_token") or "")


async def transaction_event(s: Session, *, event_type: str, timestamp: str, trigger_reason: str, seq_no: int,
                            transaction_info: dict, payload: dict, meter_value: list | None = None,
                            offline: bool = False, reservation_id: int | None = None,
                            evse: dict | None = None, id_token: dict | None = None) -> dict | None:
    """Apply one TransactionEvent; the 1.6-style IdTagInfo for its idToken (None without one)."""
    received = now_utc()
    charger_tx_id = str(transaction_info.get("transaction_id"))
    at = parse_timestamp(timestamp, received=received)
    samples = samples_from(meter_value, received=received)
    id_tag = id_tag_of(id_token)
    async with s.ctx.pool.acquire() as conn:
        fresh, mapping = await transaction_events.record_event_and_map(
            conn, s.pk, charger_tx_id, seq_no=seq_no, event_type=event_type, trigger_reason=trigger_reason,
            event_at=at, offline=bool(offline), payload=payload)
    if not fresh and mapping is not None:
        log.info("duplicate TransactionEvent answered", charge_box_id=s.id, transaction=charger_tx_id,
                 seq_no=seq_no)
        return await _tag_info(s, id_tag) if id_tag else None
    info: dict | None = None
    if mapping is None:
        if event_type != "Started":
            log.warning("TransactionEvent for a transaction never started: opened from it",
                        charge_box_id=s.id, transaction=charger_tx_id, event_type=event_type, seq_no=seq_no)
        start_wh = register_wh(samples)
        connector_id = int((evse or {}).get("id") or 1)
        transaction_id, info = await core.start_transaction(
            s, connector_id=connector_id, id_tag=id_tag, meter_start=int(start_wh or 0), timestamp=timestamp,
            reservation_id=reservation_id)
        async with s.ctx.pool.acquire() as conn:
            await transaction_events.add_mapping(conn, s.pk, charger_tx_id, transaction_id,
                                                 meter_start_known=start_wh is not None)
            mapping = await transaction_events.get_mapping(conn, s.pk, charger_tx_id)
        assert mapping is not None
        if not id_tag:
            info = None  # nothing to tell a station that presented no card
    elif event_type == "Started":
        # A resent Started (its reply was lost): the same session, its readings stored once.
        log.info("transaction start resent", charge_box_id=s.id, transaction=charger_tx_id,
                 transaction_id=mapping["transaction_id"])
        samples = []
    transaction_id = mapping["transaction_id"]
    last = mapping["last_seq_no"]
    if last is None or seq_no != last + 1:
        # Not the next one (the first, a gap, a late one filling a gap): count what is missing.
        async with s.ctx.pool.acquire() as conn:
            gaps = await transaction_events.note_seq_no(conn, s.pk, charger_tx_id)
        if gaps and gaps != mapping["gaps"]:
            log.warning("TransactionEvent seqNo gap", charge_box_id=s.id, transaction=charger_tx_id,
                        seq_no=seq_no, missing=gaps)
    if id_tag and info is None:
        info = await _tag_info(s, id_tag)
        if not mapping["id_tag"]:  # a start without a card, authorized now
            async with s.ctx.pool.acquire() as conn:
                await transaction_events.set_id_tag(conn, transaction_id, id_tag, info["status"])
    if not mapping["meter_start_known"]:
        start_wh = register_wh(samples, lowest=True)
        if start_wh is not None and event_type != "Started":
            async with s.ctx.pool.acquire() as conn:
                await transaction_events.set_meter_start(conn, s.pk, charger_tx_id, transaction_id, int(start_wh))
    if event_type == "Ended" and mapping["ended_at"] is None:
        stop_wh = register_wh(samples)
        if stop_wh is None:
            async with s.ctx.pool.acquire() as conn:
                stop_wh = await transaction_events.max_register_wh(conn, transaction_id)
        meter_stop = int(stop_wh) if stop_wh is not None else int(mapping["meter_start"])
        stop_info = await core.stop_transaction(
            s, transaction_id=transaction_id, meter_stop=meter_stop, timestamp=timestamp,
            id_tag=id_tag or None, reason=transaction_info.get("stopped_reason") or "Local", samples=samples,
            transaction_data=None, payload=payload)
        async with s.ctx.pool.acquire() as conn:
            await transaction_events.mark_ended(conn, s.pk, charger_tx_id)
        return stop_info or info
    if samples and any(group for _, group in samples):
        await core.meter_values(s, mapping["connector_id"], transaction_id, samples)
    return info


async def _tag_info(s: Session, id_tag: str) -> dict:
    async with s.ctx.pool.acquire() as conn:
        return tags.tag_info(await id_tags.get_id_tag(conn, id_tag), now_utc())

