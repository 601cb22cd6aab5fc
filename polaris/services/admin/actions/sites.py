"""Sites' load management: the grid limit, circuits (breakers) and each charger's range; audited."""

from __future__ import annotations

from typing import Any

import asyncpg

from polaris.db.errors import NotFound
from polaris.db.repos import sites
from polaris.services.admin.actions.base import Actor, changed, record
from polaris.services.errors import ApiError

POLICIES = ("equal", "first_come")


def _check_limits(changes: dict[str, Any], current: dict[str, Any] | None = None) -> None:
    merged = {**(current or {}), **changes}
    for key in ("limit_amps", "limit_kw"):
        value = changes.get(key)
        if value is not None and value <= 0:
            raise ApiError(400, "invalid_input", f"{key} must be more than 0")
    if changes.get("phases") not in (None, 1, 3):
        raise ApiError(400, "invalid_input", "phases is 1 or 3")
    if "policy" in changes and changes["policy"] not in POLICIES:
        raise ApiError(400, "invalid_input", f"policy is one of {', '.join(POLICIES)}")
    margin = merged.get("margin_amps") or 0
    if margin < 0:
        raise ApiError(400, "invalid_input", "margin_amps cannot be negative")
    if merged.get("limit_amps") is not None and margin >= merged["limit_amps"]:
        raise ApiError(400, "invalid_input",
                       f"margin_amps ({margin:g} A) must be less than limit_amps ({merged['limit_amps']:g} A)")


async def set_site(conn: asyncpg.Connection, actor: Actor, name: str, changes: dict[str, Any],
                   *, address: str | None = None) -> dict:
    """Create or change a site's grid limit (A per phase and/or kW), phases, margin and policy."""
    if not name or not name.strip():
        raise ApiError(400, "invalid_input", "a site needs a name")
    for key in ("phases", "margin_amps", "policy"):
        if key in changes and changes[key] is None:
            raise ApiError(400, "invalid_input", f"{key} cannot be null")
    async with conn.transaction():
        current = await sites.get_site(conn, name)
        _check_limits(changes, dict(current) if current else None)
        before, after = await sites.set_site_limits(conn, name, changes, address=address)
        if current is None:
            await record(conn, actor, "site.add", "site", name.strip(), after=after)
        else:
            b, a = changed(before, after)
            if a:
                await record(conn, actor, "site.limits", "site", name.strip(), before=b, after=a)
    return after


async def set_circuit(conn: asyncpg.Connection, actor: Actor, site_name: str, name: str, limit_amps: float,
                      *, parent: str | None = None) -> asyncpg.Record:
    """Create or change a circuit (one breaker over some chargers) under the site or another circuit."""
    if limit_amps is None or limit_amps <= 0:
        raise ApiError(400, "invalid_input", "limit_amps must be more than 0")
    if not name or not name.strip():
        raise ApiError(400, "invalid_input", "a circuit needs a name")
    if parent and parent.strip() == name.strip():
        raise ApiError(400, "invalid_input", "a circuit cannot sit under itself")
    async with conn.transaction():
        try:
            row = await sites.set_circuit(conn, site_name, name, limit_amps, parent)
        except NotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        except ValueError as exc:
            raise ApiError(400, "invalid_input", str(exc)) from None
        await record(conn, actor, "site.circuit", "site", site_name.strip(),
                     after={"circuit": name, "limit_amps": limit_amps, "parent": parent})
    return row


async def set_charger_load(conn: asyncpg.Connection, actor: Actor, charge_box_id: str,
                           changes: dict[str, Any]) -> dict:
    """A charger's circuit and its own min/max current (A per phase)."""
    lo, hi = changes.get("min_amps"), changes.get("max_amps")
    if lo is not None and lo < 0:
        raise ApiError(400, "invalid_input", "min_amps cannot be negative")
    if hi is not None and hi <= 0:
        raise ApiError(400, "invalid_input", "max_amps must be more than 0")
    if lo is not None and hi is not None and lo > hi:
        raise ApiError(400, "invalid_input", "min_amps cannot be more than max_amps")
    async with conn.transaction():
        try:
            before, after = await sites.set_charger_load(conn, charge_box_id, changes)
        except NotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        b, a = changed(before, after)
        if a:
            await record(conn, actor, "charger.load", "charger", charge_box_id, before=b, after=a)
    return after
