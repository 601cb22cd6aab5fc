"""Admin password reset by email: request, one-use link, new password, sessions ended."""

from __future__ import annotations

import re

API = "/api/admin/v1"


async def outbox(pool):
    async with pool.acquire() as conn:
        return await conn.fetch("SELECT to_address, category, text FROM app.email_outbox ORDER BY id")


async def test_forgot_password_flow(api, pool, make_user):
    await make_user("boss@example.com", "operator")
    await make_user("cust@example.com", "customer", password=None)
    same = set()
    for email in ("boss@example.com", "nobody@example.com", "cust@example.com"):
        resp = await api.post(f"{API}/auth/password-reset", json={"email": email})
        assert resp.status == 202
        same.add((await resp.json())["message"])
    assert len(same) == 1, "the answer does not reveal which emails have accounts"
    mails = await outbox(pool)
    assert [(m["to_address"], m["category"]) for m in mails] == [("boss@example.com", "admin-password-reset")]
    link = re.search(r"http://admin\.localhost:8000(/api/admin/v1/auth/password-reset/\S+)", mails[0]["text"]).group(1)

    # An existing session ends when the password is reset.
    resp = await api.post(f"{API}/auth/login", json={"email": "boss@example.com", "password": "correct horse battery staple"})
    assert resp.status == 200
    page = await (await api.get(link)).text()
    assert "boss@example.com" in page and "type=password" in page
    resp = await api.post(link, data={"password": "a fresh long password", "password2": "different"})
    assert resp.status == 400 and "differ" in await resp.text()
    resp = await api.post(link, data={"password": "a fresh long password", "password2": "a fresh long password"})
    assert resp.status == 200 and "Password changed" in await resp.text()
    assert (await api.get(f"{API}/auth/session")).status == 401, "signed out everywhere"
    resp = await api.post(link, data={"password": "another long password", "password2": "another long password"})
    assert resp.status == 404, "a link works once"
    resp = await api.post(f"{API}/auth/login", json={"email": "boss@example.com", "password": "a fresh long password"})
    assert resp.status == 200


async def test_admin_mails_a_reset_link_and_rate_limit(api, pool, admin, operator):
    for _ in range(2):
        resp = await api.post(f"{API}/users/{operator.id}/password-reset", headers=admin.headers)
        assert resp.status == 202
    resp = await api.post(f"{API}/users/{operator.id}/password-reset", headers=operator.headers)
    assert resp.status == 403
    resp = await api.post(f"{API}/users/{operator.id}/password-reset", headers=admin.headers)
    assert resp.status == 202
    resp = await api.post(f"{API}/users/{operator.id}/password-reset", headers=admin.headers)
    assert resp.status == 429
    assert len(await outbox(pool)) == 3
    audit = await (await api.get(f"{API}/audit", params={"action": "user.password_reset_mail"}, headers=admin.headers)).json()
    assert len(audit["items"]) == 3
