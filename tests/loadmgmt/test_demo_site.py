"""`polaris up`'s demo site has a grid limit smaller than its chargers' total."""

from __future__ import annotations

from polaris import demo
from polaris.db.repos import sites


async def test_the_demo_site_is_limited_below_its_chargers_once_and_an_operators_limit_is_kept(conn):
    await demo.seed(conn)
    assert await demo.ensure_site_limit(conn) is True
    (site,) = [s for s in await sites.list_sites(conn) if s["name"] == demo.DEMO_SITE]
    assert site["limit_amps"] == 40 and site["phases"] == 3 and site["chargers"] * 32 > site["limit_amps"]
    await sites.set_site_limits(conn, demo.DEMO_SITE, {"limit_amps": 50})
    assert await demo.ensure_site_limit(conn) is False
    assert (await sites.get_site(conn, demo.DEMO_SITE))["limit_amps"] == 50
