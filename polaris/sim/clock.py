"""Timestamps as chargers send them: timezone-aware ISO 8601 (NOTES.md: never naive)."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """Now, in UTC, to the second (`2026-01-01T00:00:00+00:00`)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_time(value: str) -> datetime:
    """An ISO 8601 time from the central system; naive means UTC. ValueError if unreadable."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
