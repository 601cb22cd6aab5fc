"""The Universal Links manifest of the original iOS app, from settings, on both hosts."""

from __future__ import annotations

from polaris.services import apple
from polaris.services.app import app_factory


async def test_the_manifest_names_the_app_on_both_hosts(settings, aiohttp_client):
    s = settings.model_copy(update={"SSE_TRANSPORT": "memory", "APNS_TEAM_ID": "ABCDE12345",
                                    "APNS_TOPIC": "com.example.expresscan",
                                    "ADMIN_BASE_URL": "https://manage.example.com",
                                    "CUSTOMER_BASE_URL": "https://polaris.example.com",
                                    "COOKIE_DOMAIN": ".example.com"})
    client = await aiohttp_client(app_factory(s, pool_size=2))
    for host in ("manage.example.com", "polaris.example.com"):
        resp = await client.get(apple.PATH, headers={"Host": host}, allow_redirects=False)
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        doc = await resp.json()
        (detail,) = doc["applinks"]["details"]
        assert detail["appIDs"] == ["ABCDE12345.com.example.expresscan"]
        assert {"/": "/expresscan/register/*"} in detail["components"] and {"/": "/u/*"} in detail["components"]


async def test_without_team_and_bundle_id_there_is_none(settings, aiohttp_client):
    client = await aiohttp_client(app_factory(settings.model_copy(update={"SSE_TRANSPORT": "memory"}), pool_size=2))
    resp = await client.get(apple.PATH)
    assert resp.status == 404 and "APNS_TEAM_ID" in (await resp.json())["message"]
