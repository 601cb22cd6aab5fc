"""The dashboard summary and the health view of the admin API."""

from __future__ import annotations

import time
from datetime import timedelta

from aiohttp import web
from pydantic import Field

from polaris.db.repos import charger_admin, transaction_reports
from polaris.ops import health as ops_health
from polaris.services import appkeys
from polaris.services.admin.billing import SyncStatusOut, sync_status
from polaris.services.admin.common import pool
from polaris.services.openapi import Call, Out, add_endpoints, endpoint

TAG = "dashboard"
# Every console polls the dashboard; the figures are the same for all of them, and live
# changes arrive by SSE. Two seconds of staleness buys one computation per instance.
CACHE_SECONDS = 2.0
HEALTH_TIMEOUT_S = 3.0
_CACHE: web.AppKey[dict] = web.AppKey("dashboard_cache")


class Alert(Out):
    severity: str = Field(description="warning or critical")
    kind: str
    message: str


class DashboardOut(Out):
    chargers_online: int
    chargers_offline: int
    chargers_faulted: int
    chargers_charging: int
    active_sessions: int
    stuck_sessions: int
    power_kw: float
    energy_today_kwh: float
    sync: SyncStatusOut
    alerts: list[Alert]


class HealthCheck(Out):
    name: str
    ok: bool
    status: str = Field(description="ok, warning, critical, or unknown (the database it needs is down)")
    detail: str | None = None
    fix: str | None = Field(None, description="what to do, when the check is not ok")


class HealthOut(Out):
    ok: bool
    status: str = Field(description="the worst check: ok, warning or critical")
    items: list[HealthCheck]


@endpoint("GET", "/api/admin/v1/dashboard", summary="At a glance: fleet, sessions, energy, sync, alerts", tag=TAG, response=DashboardOut)
async def dashboard(request: web.Request, call: Call) -> DashboardOut:
    cache = request.app[_CACHE]
    now = time.monotonic()
    if cache.get("value") is not None and now - cache["at"] < CACHE_SECONDS:
        return cache["value"]
    value = await _compute_dashboard(request)
    cache.update(value=value, at=now)
    return value


async def _compute_dashboard(request: web.Request) -> DashboardOut:
    async with pool(request).acquire() as conn:
        offline_for = timedelta(minutes=request.app[appkeys.SETTINGS].ALERT_CHARGER_OFFLINE_MINUTES)
        fleet = await charger_admin.fleet_counts(conn, offline_for)
        figures = await transaction_reports.session_figures(conn)
        sync = await sync_status(conn)
        failed_runs = await conn.fetchval(
            "SELECT count(*) FROM billing.sync_runs WHERE status = 'failed' AND started_at > now() - interval '1 day'"
        )
    alerts: list[Alert] = []
    if fleet["long_offline"]:
        alerts.append(Alert(severity="warning", kind="chargers_offline",
                            message=f"{fleet['long_offline']} charger(s) offline for more than "
                                    f"{offline_for.total_seconds() // 60:.0f} minutes"))
    if fleet["faulted"]:
        alerts.append(Alert(severity="warning", kind="faults", message=f"{fleet['faulted']} charger(s) report a fault"))
    if figures["stuck_sessions"]:
        alerts.append(Alert(severity="warning", kind="stuck_sessions",
                            message=f"{figures['stuck_sessions']} session(s) look stuck (no StopTransaction)"))
    if failed_runs:
        alerts.append(Alert(severity="critical", kind="sync_failed", message=f"{failed_runs} sync run(s) failed in the last day"))
    if sync.unbillable_count:
        alerts.append(Alert(severity="warning", kind="unbillable",
                            message=f"{sync.unbillable_count} session(s) held back from billing"))
    return DashboardOut(
        chargers_online=fleet["online"],
        chargers_offline=fleet["offline"],
        chargers_faulted=fleet["faulted"],
        chargers_charging=fleet["charging"],
        active_sessions=figures["active_sessions"],
        stuck_sessions=figures["stuck_sessions"],
        power_kw=round(figures["power_kw"], 3),
        energy_today_kwh=round(figures["energy_today_kwh"], 3),
        sync=sync,
        alerts=alerts,
    )


@endpoint("GET", "/api/admin/v1/health",
          summary="The deployment's health: the checks of `polaris health`, run by this web instance",
          tag=TAG, response=HealthOut)
async def health(request: web.Request, call: Call) -> HealthOut:
    ctx = ops_health.HealthContext(settings=request.app[appkeys.SETTINGS], timeout=HEALTH_TIMEOUT_S,
                                   shared_pool=pool(request))
    # The web check would ask this very process: answering this request is its answer.
    results = await ops_health.run_checks(ctx, exclude=frozenset({"web"}))
    items = [
        HealthCheck(name=r.name, ok=r.status == "ok", status=ops_health.WORDS[r.status], detail=r.message,
                    fix=r.fix if r.status != "ok" else None)
        for r in results
    ]
    status = ops_health.overall(results)
    return HealthOut(ok=status == "ok", status=status, items=items)


def setup(app: web.Application) -> None:
    app[_CACHE] = {}
    add_endpoints(app, dashboard, health)
