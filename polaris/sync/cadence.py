"""How often the sync runs: adaptive tiers Active / Idle / Dormant, an admin pin, a cron override.

Active `*/15 * * * *` while sessions run or ended since the last run; demoted to Idle
`0 * * * *` after SYNC_IDLE_HYSTERESIS_TICKS runs without activity; Dormant `0 3 * * 0`
(Sunday 03:00 UTC) after SYNC_DORMANT_THRESHOLD_DAYS without activity. Any activity
promotes straight back to Active. Pure functions of the state and a clock, so the rules
are tested by moving a fake clock, not by waiting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.triggers.cron import CronTrigger

ACTIVE, IDLE, DORMANT = "active", "idle", "dormant"
CRON = {
    ACTIVE: "*/15 * * * *",
    IDLE: "0 * * * *",
    DORMANT: "0 3 * * 0",
}


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class CadenceState:
    tier: str = ACTIVE
    idle_ticks: int = 0
    last_activity_at: datetime | None = None
    last_run_at: datetime | None = None
    pinned_tier: str | None = None

    @property
    def effective_tier(self) -> str:
        return self.pinned_tier or self.tier


def after_run(
    state: CadenceState,
    *,
    activity: bool,
    now: datetime,
    hysteresis_ticks: int,
    dormant_after: timedelta,
) -> CadenceState:
    """The state after a run that did (or did not) see activity."""
    if activity:
        return replace(state, tier=ACTIVE, idle_ticks=0, last_activity_at=now, last_run_at=now)
    # A fresh deployment counts from its first run, not from the epoch.
    last_activity = state.last_activity_at or now
    idle_ticks = state.idle_ticks + 1
    tier = state.tier
    if tier == ACTIVE and idle_ticks >= hysteresis_ticks:
        tier = IDLE
    if tier == IDLE and now - last_activity >= dormant_after:
        tier = DORMANT
    return replace(
        state, tier=tier, idle_ticks=idle_ticks, last_activity_at=last_activity, last_run_at=now
    )


_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _cron_day_of_week(field: str) -> str:
    """Standard cron weekday numbers (0 or 7 = Sunday) as names.

    APScheduler 3 counts 0 as Monday, so `0 3 * * 0` passed through as is would run on
    Mondays; names mean the same to both.
    """
    out = []
    for part in field.split(","):
        base, _, step = part.partition("/")
        base = re.sub(r"\d+", lambda m: _DOW_NAMES[int(m.group())] if int(m.group()) <= 7 else m.group(), base)
        out.append(base + (f"/{step}" if step else ""))
    return ",".join(out)


def trigger_for(tier: str, cron_override: str | None = None) -> CronTrigger:
    """APScheduler trigger for a tier (UTC), or for SYNC_CRON_SCHEDULE when set.

    Expressions are standard 5-field crontab (weekday 0 = Sunday).
    """
    fields = (cron_override or CRON[tier]).split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields (minute hour day month weekday), not {len(fields)}")
    minute, hour, day, month, dow = fields
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=_cron_day_of_week(dow),
        timezone=UTC,
    )


def next_run_at(tier: str, now: datetime, cron_override: str | None = None) -> datetime:
    """When a worker in this tier runs next after `now`."""
    fire = trigger_for(tier, cron_override).get_next_fire_time(None, now)
    assert fire is not None
    # CronTrigger may return `now` itself when it matches; the next run is strictly later.
    if fire <= now:
        fire = trigger_for(tier, cron_override).get_next_fire_time(None, now + timedelta(seconds=1))
    return fire
