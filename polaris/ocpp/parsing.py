"""Tolerant reading of what chargers send: timestamps, meter values, transaction ids."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from polaris.db.repos.meter_values import Sample
from polaris.logs import get_logger

log = get_logger(__name__)

# Before this a charger's clock is not set (1970, 2000 after a power cut): use arrival time.
EARLIEST_PLAUSIBLE = datetime(2015, 1, 1, tzinfo=UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso_now() -> str:
    """Current time for replies: UTC with an explicit offset, as OCPP dateTime."""
    return now_utc().isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: object, *, received: datetime | None = None) -> datetime:
    """A charger's timestamp as aware UTC; naive means UTC; garbage or pre-2015 means arrival."""
    received = received or now_utc()
    if not isinstance(value, str) or not value:
        return received
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        log.info("unparseable charger timestamp", value=value[:40])
        return received
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    ts = ts.astimezone(UTC)
    if ts < EARLIEST_PLAUSIBLE:
        return received
    return ts


def parse_number(value: object) -> float | None:
    """A sampled value as a number: JSON numbers and decimal strings ("3058620.000")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            d = Decimal(value.strip().replace(",", "."))
        except InvalidOperation:
            return None
        return float(d) if d.is_finite() else None
    return None


def samples_from(meter_values: list[dict] | None, *, received: datetime) -> list[tuple[datetime, list[Sample]]]:
    """Flatten meterValue elements (as handlers get them, snake_case keys): rows per timestamp."""
    out = []
    for mv in meter_values or ():
        if not isinstance(mv, dict):
            continue
        at = parse_timestamp(mv.get("timestamp"), received=received)
        rows = []
        for sv in mv.get("sampled_value") or ():
            if not isinstance(sv, dict) or sv.get("value") is None:
                continue
            raw = sv["value"]
            rows.append(
                Sample(
                    sampled_at=at,
                    value=raw if isinstance(raw, str) else str(raw),
                    value_num=parse_number(raw),
                    measurand=sv.get("measurand"),
                    unit=sv.get("unit"),
                    phase=sv.get("phase"),
                    context=sv.get("context"),
                    location=sv.get("location"),
                    format=sv.get("format"),
                )
            )
        out.append((at, rows))
    return out
