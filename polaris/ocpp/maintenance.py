"""Maintenance jobs over the OCPP data: the stuck-transaction check."""

from __future__ import annotations

from polaris.db.repos import transactions
from polaris.logs import get_logger
from polaris.ocpp.context import OcppContext
from polaris.ocpp.jobs import Job

log = get_logger(__name__)

STUCK_CHECK_INTERVAL_S = 600.0


def stuck_transactions(ctx: OcppContext) -> Job:
    """Flag open transactions without a message for OCPP_STUCK_TRANSACTION_HOURS (at start, then every 10 min)."""

    async def check() -> None:
        async with ctx.pool.acquire() as conn:
            ids = await transactions.flag_stuck_transactions(conn, ctx.settings.OCPP_STUCK_TRANSACTION_HOURS)
        if ids:
            log.warning("transactions flagged as stuck", transaction_ids=ids[:50], count=len(ids))

    return Job("stuck-transactions", check, every=STUCK_CHECK_INTERVAL_S, first_after=0)
