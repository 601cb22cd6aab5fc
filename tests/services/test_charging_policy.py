"""CHARGING_POLICY over the real pre-authorize hook: `subscription` (ours) refuses a card
without an active, subscribed customer; `open` (the original's: only an armed scan-pair
blocks) lets every known, unblocked card charge; unset, an imported deployment is `open`.
A refusal reaches the admin event stream with its reason (the console shows it)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from polaris.db.repos import card_pairings, charging_policy
from polaris.services import hooks, live
from polaris.services.appkeys import PG_POOL, SETTINGS
from polaris.services.live import EVENT_BUS

from .test_hooks import fleet, override  # noqa: F401 (fixture)


def make_client(settings, pool, aiohttp_client, policy):
    async def make():
        s = settings.model_copy(update={"SSE_TRANSPORT": "memory", "CHARGING_POLICY": policy})
        app = web.Application()
        app[SETTINGS] = s
        app[PG_POOL] = pool
        live.setup(app)
        hooks.setup(app)
        return await aiohttp_client(app)
    return make


@pytest.mark.parametrize("policy", ["subscription", "open"])
async def test_each_policy_over_the_hook(settings, pool, aiohttp_client, fleet, policy):  # noqa: F811
    client = await make_client(settings, pool, aiohttp_client, policy)()
    sub = client.server.app[EVENT_BUS].subscribe([live.ADMIN_TOPIC])
    got = {tag: await override(client, tag) for tag in ("ALICE1", "NOSUB", "GONE", "LOOSE", "LOST", "OLD", "NOBODY")}
    if policy == "subscription":
        assert got == {"ALICE1": None, "NOSUB": "BLOCKED", "GONE": "BLOCKED", "LOOSE": "BLOCKED",
                       "LOST": "BLOCKED", "OLD": "BLOCKED", "NOBODY": None}
    else:
        assert got == {"ALICE1": None, "NOSUB": None, "GONE": None, "LOOSE": None,
                       "LOST": "BLOCKED", "OLD": "BLOCKED", "NOBODY": None}
    # Every refusal is told to the admin stream with its reason.
    events = []
    for _ in range(100):
        while not sub.queue.empty():
            item = sub.queue.get_nowait()
            if getattr(item, "type", None) == hooks.CARD_REFUSED_EVENT:
                events.append(item)
        if len(events) == sum(v == "BLOCKED" for v in got.values()):
            break
        await asyncio.sleep(0.02)
    reasons = {e.data["id_tag"]: e.data["reason"] for e in events}
    assert reasons["LOST"] == "card blocked" and reasons["OLD"] == "card expired"
    assert all(e.data["policy"] == policy and e.data["charge_box_id"] == "CB-1" for e in events)
    if policy == "subscription":
        assert reasons["NOSUB"] == "customer has no subscription"
        assert reasons["LOOSE"] == "card not linked to a customer"
        assert reasons["GONE"] == "customer deactivated"
    assert set(reasons) == {t for t, v in got.items() if v == "BLOCKED"}


async def test_open_still_blocks_a_card_caught_by_an_armed_pairing(settings, pool, aiohttp_client, fleet):  # noqa: F811
    client = await make_client(settings, pool, aiohttp_client, "open")()
    async with pool.acquire() as conn:
        await card_pairings.arm_pairing(conn, "CB-1", "signin", browser_session="s" * 32)
    assert await override(client, "NOSUB") == "BLOCKED"


async def test_unset_policy_is_open_once_cards_were_imported(pool, settings):
    async with pool.acquire() as conn:
        assert await charging_policy.effective_policy(conn, None) == "subscription"
        await conn.execute("INSERT INTO ocpp.steve_imports (steve_table, steve_pk, polaris_id) VALUES ('ocpp_tag', 1, 1)")
        assert await charging_policy.effective_policy(conn, None) == "open"
        assert await charging_policy.effective_policy(conn, "subscription") == "subscription"
