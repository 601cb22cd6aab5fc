"""What we answer about an id tag (OCPP IdTagInfo), decided from local data only."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from polaris.db.repos import id_tags, transactions


def tag_info(tag: asyncpg.Record | None, now: datetime) -> dict:
    """IdTagInfo (snake_case keys) for a stored tag: Accepted, Blocked, Expired or Invalid."""
    if tag is None or tag["unknown"]:
        return {"status": "Invalid"}
    info: dict = {}
    if tag["expiry_date"] is not None:
        info["expiry_date"] = tag["expiry_date"].isoformat()
    if tag["parent_id_tag"]:
        info["parent_id_tag"] = tag["parent_id_tag"]
    if tag["blocked"] or tag["customer_active"] is False:
        info["status"] = "Blocked"
    elif tag["expiry_date"] is not None and tag["expiry_date"] <= now:
        info["status"] = "Expired"
    else:
        info["status"] = "Accepted"
    return info


async def decide(
    conn: asyncpg.Connection,
    id_tag: str,
    charge_box_pk: int,
    now: datetime,
    *,
    keep_unknown: bool,
    check_concurrent: bool,
) -> dict:
    """The tag's status; ConcurrentTx when asked to check and it has as many sessions as it may."""
    tag = await id_tags.record_seen(conn, id_tag, charge_box_pk, keep_unknown=keep_unknown)
    info = tag_info(tag, now)
    if (
        check_concurrent
        and info["status"] == "Accepted"
        and await transactions.at_active_limit(conn, id_tag)
    ):
        info["status"] = "ConcurrentTx"
    return info
