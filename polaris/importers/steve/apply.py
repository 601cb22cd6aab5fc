"""SteVe's records onto ours, in one transaction: idempotent, with a dry run and a report.

What each becomes:
  - charge_box -> a charger with SteVe's id, registration status and security profile
    (profile 0 without the security update's columns); a bcrypt `auth_password` is kept for
    admission to check the charger's first password against; the address becomes its site;
    the public id is the original web app's (`--polaris-db`) or a new one;
  - ocpp_tag -> a card with parent, expiry, max active sessions (0: blocked) and note;
  - user with an e-mail -> a customer (the card's owner), with the Lago subscription the
    original web app mapped to that card; users without an e-mail are reported;
  - transaction_start/stop -> a session under SteVe's transaction_pk, with its meter values;
    open ones stay open, so the charger's StopTransaction lands on them; the billing state
    says what the original web app billed (`--polaris-db`), or, without it, that finished
    sessions were billed in full and open ones from their start;
  - reservation -> a reservation under its SteVe id (ones with no expiry are reported).
Whatever was brought over before (ocpp.steve_imports), or already exists here under the same
id, is left as it is: a second run changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from polaris.db.errors import RepoError
from polaris.db.repos import charge_boxes, customers, steve_import
from polaris.db.repos.id_tags import ID_TAG_MAX
from polaris.db.repos.meter_values import Sample, insert_meter_values
from polaris.importers.steve.source import OriginalApp, SteveData
from polaris.logs import get_logger

log = get_logger(__name__)

KINDS = ("chargers", "cards", "customers", "transactions", "meter_values", "reservations")
RESERVATION_STATUS = {"WAITING": "requested", "ACCEPTED": "Accepted", "REJECTED": "Rejected",
                      "CANCELLED": "Cancelled", "USED": "Used", "EXPIRED": "Expired"}


@dataclass
class Report:
    dry_run: bool = False
    imported: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    already: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    not_mapped: list[str] = field(default_factory=list)
    next_transaction_id: int | None = None

    def skip(self, why: str) -> None:
        self.not_mapped.append(why)

    def lines(self) -> list[str]:
        verb = "would import" if self.dry_run else "imported"
        out = [f"{verb} {self.imported[k]} {k.replace('_', ' ')} ({self.already[k]} already here)" for k in KINDS]
        if self.next_transaction_id is not None:
            out.append(f"new transaction ids start at {self.next_transaction_id}")
        out += [f"not mapped: {why}" for why in self.not_mapped]
        return out

    def as_json(self) -> dict:
        return {"dryRun": self.dry_run, "imported": self.imported, "alreadyHere": self.already,
                "notMapped": self.not_mapped, "nextTransactionId": self.next_transaction_id}


def _address(row: dict) -> str | None:
    street = " ".join(p for p in (row.get("street"), row.get("house_number")) if p)
    city = " ".join(p for p in (row.get("zip_code"), row.get("city")) if p)
    text = ", ".join(p for p in (street, city, row.get("country")) if p)
    return text or None


def _connector(data: SteveData, boxes: dict[str, int], connector_pk: int) -> tuple[int | None, int]:
    """SteVe's connector_pk as (our charger pk, or None when it did not come over; connector id)."""
    where = data.connectors.get(connector_pk)
    if where is None:
        return None, 0
    return boxes.get(where[0].lower()), where[1]


def _wh(value: object) -> int | None:
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        return None


async def import_steve(conn: asyncpg.Connection, data: SteveData, original: OriginalApp | None = None, *,
                       dry_run: bool = False) -> Report:
    """Bring `data` over in one transaction (rolled back with `dry_run`); the report of what happened."""
    report = Report(dry_run=dry_run)
    original = original or OriginalApp()
    tx = conn.transaction()
    await tx.start()
    try:
        boxes = await _charge_boxes(conn, data, original, report)
        tags = await _tags(conn, data, report)
        await _customers(conn, data, original, tags, report)
        await _transactions(conn, data, original, boxes, report)
        await _reservations(conn, data, boxes, report)
        highest_tx = max((t["transaction_pk"] for t in data.transactions), default=0)
        highest_res = max((r["reservation_pk"] for r in data.reservations), default=0)
        report.next_transaction_id, _ = await steve_import.ids_above(conn, highest_tx, highest_res)
    except BaseException:
        await tx.rollback()
        raise
    if dry_run:
        await tx.rollback()
    else:
        await tx.commit()
    log.info("steve import finished", dry_run=dry_run, imported=report.imported, not_mapped=len(report.not_mapped))
    return report


async def _charge_boxes(conn: asyncpg.Connection, data: SteveData, original: OriginalApp,
                        report: Report) -> dict[str, int]:
    """lower(SteVe charge box id) -> our charger pk."""
    done = await steve_import.mapped(conn, "charge_box")
    pks: dict[str, int] = {}
    for cb in data.charge_boxes:
        cid = cb["charge_box_id"]
        if cb["charge_box_pk"] in done:
            pks[cid.lower()] = done[cb["charge_box_pk"]]
            report.already["chargers"] += 1
            continue
        problem = charge_boxes.charge_box_id_problem(cid)
        if problem:
            report.skip(f"charger {cid!r}: {problem}")
            continue
        existing = await steve_import.charge_box_pk(conn, cid)
        if existing is not None:
            pks[cid.lower()] = existing
            await steve_import.remember(conn, "charge_box", cb["charge_box_pk"], existing)
            report.already["chargers"] += 1
            continue
        profile = int(cb["security_profile"] or 0)
        bcrypt_hash = cb["auth_password"] or None
        if profile > 2:
            report.skip(f"charger {cid}: security profile {profile} (client certificates) is not supported yet; "
                        "imported as profile 2: give it a password with `polaris admin charger set-password`")
            profile = 2
        if profile > 0 and not bcrypt_hash:
            report.skip(f"charger {cid}: security profile {profile} without a password in SteVe; imported as "
                        "profile 0 (admitted by id alone): set one with `polaris admin charger set-password`")
            profile = 0
        public_id = original.public_ids.get(cid.lower())
        if public_id and (not charge_boxes.PUBLIC_ID.match(public_id) or await steve_import.public_id_taken(conn, public_id)):
            report.skip(f"charger {cid}: the original's public id {public_id!r} is taken or invalid; a new one is made")
            public_id = None
        address = _address(cb)
        site = await charge_boxes.ensure_site(conn, address, address) if address else None
        status = cb["registration_status"] if cb["registration_status"] in ("Accepted", "Pending", "Rejected") \
            else "Accepted"
        pk = await steve_import.insert_charge_box(
            conn, charge_box_id=cid, public_id=public_id, registration_status=status, security_profile=profile,
            steve_key_bcrypt=bcrypt_hash if profile > 0 else None, description=cb["description"] or cb["note"],
            site_id=site, boot={
                "vendor": cb["charge_point_vendor"], "model": cb["charge_point_model"],
                "charge_point_serial_number": cb["charge_point_serial_number"],
                "charge_box_serial_number": cb["charge_box_serial_number"], "firmware_version": cb["fw_version"],
                "iccid": cb["iccid"], "imsi": cb["imsi"], "meter_type": cb["meter_type"],
                "meter_serial_number": cb["meter_serial_number"], "last_heartbeat_at": cb["last_heartbeat_timestamp"]})
        await steve_import.remember(conn, "charge_box", cb["charge_box_pk"], pk)
        pks[cid.lower()] = pk
        report.imported["chargers"] += 1
    return pks


async def _tags(conn: asyncpg.Connection, data: SteveData, report: Report) -> dict[int, int]:
    """SteVe ocpp_tag_pk -> our card id. Parents first: a card may name one later in the table."""
    done = await steve_import.mapped(conn, "ocpp_tag")
    ids: dict[int, int] = {}
    for t in data.tags:
        if t["ocpp_tag_pk"] in done:
            ids[t["ocpp_tag_pk"]] = done[t["ocpp_tag_pk"]]
            report.already["cards"] += 1
            continue
        if not 1 <= len(t["id_tag"]) <= ID_TAG_MAX or (t["parent_id_tag"] and len(t["parent_id_tag"]) > ID_TAG_MAX):
            report.skip(f"card {t['id_tag']!r}: over {ID_TAG_MAX} characters (OCPP 1.6 IdToken)")
            continue
        limit = t["max_active_transaction_count"]
        tag_id, ours = await steve_import.save_tag(
            conn, id_tag=t["id_tag"], parent_id_tag=t["parent_id_tag"], expiry_date=t["expiry_date"],
            blocked=limit == 0, max_active=-1 if limit is not None and limit < 0 else max(1, limit or 1),
            note=t["note"])
        await steve_import.remember(conn, "ocpp_tag", t["ocpp_tag_pk"], tag_id)
        ids[t["ocpp_tag_pk"]] = tag_id
        if ours:
            report.already["cards"] += 1
        else:
            report.imported["cards"] += 1
    return ids


async def _customers(conn: asyncpg.Connection, data: SteveData, original: OriginalApp, tags: dict[int, int],
                     report: Report) -> None:
    done = await steve_import.mapped(conn, "user")
    for u in data.users:
        if u["user_pk"] in done:
            report.already["customers"] += 1
            continue
        email = (u["e_mail"] or "").strip().lower()
        name = " ".join(p for p in (u["first_name"], u["last_name"]) if p) or None
        if not email:
            report.skip(f"SteVe user {u['user_pk']} ({name or 'no name'}): no e-mail, so no customer sign-in")
            continue
        found = await steve_import.customer_by_email(conn, email)
        if found is not None and found["customer_id"] is None:
            report.skip(f"SteVe user {email}: that e-mail is a {found['role']} here, not a customer")
            continue
        if found is None:
            subscription = original.subscriptions.get(u["ocpp_tag_pk"]) if u["ocpp_tag_pk"] else None
            try:
                async with conn.transaction():
                    customer = await customers.add_customer(conn, email, name=name, lago_subscription_id=subscription)
            except RepoError as exc:
                report.skip(f"SteVe user {email}: {exc}")
                continue
            customer_id = customer["id"]
            report.imported["customers"] += 1
        else:
            customer_id = found["customer_id"]
            report.already["customers"] += 1
        if u["ocpp_tag_pk"] in tags:
            await steve_import.link_tag(conn, tags[u["ocpp_tag_pk"]], customer_id)
        await steve_import.remember(conn, "user", u["user_pk"], customer_id)


async def _transactions(conn: asyncpg.Connection, data: SteveData, original: OriginalApp, boxes: dict[str, int],
                        report: Report) -> None:
    done = await steve_import.mapped(conn, "transaction")
    for t in data.transactions:
        pk = t["transaction_pk"]
        if pk in done:
            report.already["transactions"] += 1
            continue
        box, connector_id = _connector(data, boxes, t["connector_pk"])
        start, stop = _wh(t["start_value"]), _wh(t["stop_value"]) if t["stop_timestamp"] else None
        if box is None or start is None or t["start_timestamp"] is None:
            report.skip(f"transaction {pk}: " + ("its charger was not brought over" if box is None
                                                 else "no start time or meter value"))
            continue
        if t["stop_timestamp"] is not None and stop is None:
            report.skip(f"transaction {pk}: stop meter value {t['stop_value']!r} is no number; kept open")
        if await steve_import.transaction_exists(conn, pk):
            report.skip(f"transaction {pk}: that id is another session here already")
            continue
        finished = t["stop_timestamp"] is not None and stop is not None
        created = await steve_import.insert_transaction(
            conn, transaction_id=pk, charge_box_pk=box, connector_id=connector_id, id_tag=t["id_tag"],
            start_timestamp=t["start_timestamp"], meter_start=start,
            stop_timestamp=max(t["stop_timestamp"], t["start_timestamp"]) if finished else None,
            meter_stop=stop if finished else None, stop_reason=t["stop_reason"] if finished else None,
            stopped_by={"station": "charger", "manual": "operator"}.get(t["stop_event_actor"], "charger")
            if finished else None)
        if not created:
            report.skip(f"transaction {pk}: the same session is here already under another id")
            continue
        await steve_import.remember(conn, "transaction", pk, pk)
        report.imported["transactions"] += 1
        billed = original.billed.get(pk)
        if billed is not None:
            wh = round(float(billed["total_kwh_billed"] or 0) * 1000)
            await steve_import.billing_state(conn, pk, billed_wh=wh, final=bool(billed["is_finalized"]))
        elif finished:
            await steve_import.billing_state(conn, pk, billed_wh=max(0, stop - start), final=True)
        readings = [Sample(sampled_at=m["value_timestamp"] or t["start_timestamp"], value=str(m["value"]),
                           value_num=_wh(m["value"]), measurand=m["measurand"], unit=m["unit"], phase=m["phase"],
                           context=m["reading_context"], location=m["location"], format=m["format"])
                    for m in data.meter_values.get(pk, []) if m["value"] is not None]
        if readings:
            await insert_meter_values(conn, box, connector_id, pk, readings)
            report.imported["meter_values"] += len(readings)


async def _reservations(conn: asyncpg.Connection, data: SteveData, boxes: dict[str, int], report: Report) -> None:
    done = await steve_import.mapped(conn, "reservation")
    for r in data.reservations:
        pk = r["reservation_pk"]
        if pk in done:
            report.already["reservations"] += 1
            continue
        box, connector_id = _connector(data, boxes, r["connector_pk"])
        if box is None or r["expiry_datetime"] is None:
            report.skip(f"reservation {pk}: " + ("its charger was not brought over" if box is None else "no expiry"))
            continue
        created = await steve_import.insert_reservation(
            conn, reservation_id=pk, charge_box_pk=box, connector_id=connector_id, id_tag=r["id_tag"],
            expiry_date=r["expiry_datetime"], status=RESERVATION_STATUS.get(str(r["status"]).upper(), str(r["status"])),
            transaction_id=r["transaction_pk"])
        if not created:
            report.skip(f"reservation {pk}: that id is another reservation here already")
            continue
        await steve_import.remember(conn, "reservation", pk, pk)
        report.imported["reservations"] += 1
