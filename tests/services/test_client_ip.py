"""The client's address: X-Forwarded-For believed only from TRUSTED_PROXIES, right-most untrusted hop."""

from __future__ import annotations

import pytest

from polaris.config import COMPOSE_CADDY_ADDRESS, ConfigError, load_settings
from polaris.forwarded import client_ip, trusted_networks
from polaris.services.app import app_factory

CADDY = trusted_networks("172.30.80.10")
CHAIN = trusted_networks("172.30.80.10, 10.0.0.0/8, ::1")


@pytest.mark.parametrize("peer,xff,trusted,expected", [
    ("192.168.1.7", "203.0.113.9", CADDY, "192.168.1.7"),  # a LAN host is no proxy
    ("172.30.80.10", "203.0.113.9", CADDY, "203.0.113.9"),  # Caddy says who it talked to
    ("172.30.80.10", "6.6.6.6, 203.0.113.9", CADDY, "203.0.113.9"),  # the client's own claim is ignored
    ("172.30.80.10", "6.6.6.6, 203.0.113.9, 10.1.2.3", CHAIN, "203.0.113.9"),  # two proxies
    ("172.30.80.10", "10.1.2.3, 10.4.5.6", CHAIN, "10.1.2.3"),  # every hop trusted: the left-most
    ("172.30.80.10", "not-an-ip, 203.0.113.9", CADDY, "203.0.113.9"),
    ("172.30.80.10", "203.0.113.9, garbage", CADDY, "172.30.80.10"),  # garbage from the proxy itself
    ("172.30.80.10", "[2001:db8::1]:443", CADDY, "2001:db8::1"),
    ("::1", "198.51.100.4:51000", CHAIN, "198.51.100.4"),
    ("172.30.80.10", None, CADDY, "172.30.80.10"),
    (None, "203.0.113.9", CADDY, None),
])
def test_right_most_untrusted_hop(peer, xff, trusted, expected):
    assert client_ip(peer, xff, trusted) == expected


def test_the_default_is_the_compose_networks_caddy(tmp_path, monkeypatch):
    monkeypatch.delenv("TRUSTED_PROXIES", raising=False)
    assert load_settings(None).TRUSTED_PROXIES == COMPOSE_CADDY_ADDRESS
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, caddy")
    with pytest.raises(ConfigError) as err:
        load_settings(None)
    assert "TRUSTED_PROXIES" in str(err.value) and "'caddy' is not an IP address" in str(err.value)


async def failed_logins(api, email, **headers):
    for _ in range(3):
        resp = await api.post("/api/admin/v1/auth/login", json={"email": email, "password": "nope"},
                              headers=headers)
        assert resp.status == 401


async def test_a_lan_client_cannot_pick_its_address_for_the_lockout(api, pool):
    """Requests come from 127.0.0.1, which is not a trusted proxy: X-Forwarded-For is ignored."""
    await failed_logins(api, "a@example.com", **{"X-Forwarded-For": "203.0.113.1"})
    await failed_logins(api, "b@example.com", **{"X-Forwarded-For": "203.0.113.2"})
    async with pool.acquire() as conn:
        ips = await conn.fetch("SELECT DISTINCT ip FROM app.login_attempts")
    assert [r["ip"] for r in ips] == ["127.0.0.1"]


async def test_behind_a_trusted_proxy_the_forwarded_client_counts(aiohttp_client, web_settings, pool):
    api = await aiohttp_client(app_factory(web_settings.model_copy(update={"TRUSTED_PROXIES": "127.0.0.1"})))
    await failed_logins(api, "a@example.com", **{"X-Forwarded-For": "6.6.6.6, 203.0.113.1"})
    await failed_logins(api, "b@example.com")
    async with pool.acquire() as conn:
        ips = await conn.fetch("SELECT ip, count(*) FROM app.login_attempts GROUP BY ip ORDER BY ip")
    assert [tuple(r) for r in ips] == [("127.0.0.1", 3), ("203.0.113.1", 3)]
