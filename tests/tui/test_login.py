"""Sign in against a real `polaris web`, and the screen shown when the API is unreachable."""

from __future__ import annotations

import asyncio
import socket
import stat

from polaris.tui.app import PolarisApp
from polaris.tui.credentials import TokenStore
from polaris.tui.screens.dashboard import DashboardScreen
from polaris.tui.screens.login import LoginScreen
from polaris.tui.screens.unreachable import UnreachableScreen


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def settle(app, pilot, until=None, wait: float = 20.0) -> None:
    """Let workers finish; with `until`, keep going until the app reaches that state (a
    sign-in is a worker, then a message, then a screen switch: under load they take turns)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        if until is None or until(app):
            return
        if loop.time() > deadline:
            shown = [str(w.render()) for w in app.screen.query("#login-message")]
            raise AssertionError(f"the console did not reach the expected state; on {app.screen!r} {shown}")
        await pilot.pause(0.1)


async def test_password_login_stores_a_private_token(live_web, tmp_path, clock):
    live_web.require("POST", "/api/admin/v1/auth/token")
    store = TokenStore(tmp_path / "token.json")
    app = PolarisApp(live_web.url, token_store=store, clock=clock, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, LoginScreen)
        app.screen.query_one("#email").value = live_web.admin_email
        app.screen.query_one("#password").value = "wrong password"
        await pilot.click("#sign-in")
        await settle(app, pilot)
        assert isinstance(app.screen, LoginScreen)
        message = str(app.screen.query_one("#login-message").render())
        assert "password" in message.lower() or "invalid" in message.lower()
        assert store.load(live_web.url) is None

        app.screen.query_one("#password").value = live_web.admin_password
        # Enter in the password field signs in (where a click left the focus is up to timing).
        app.screen.query_one("#password").focus()
        await pilot.pause()
        await pilot.press("enter")
        await settle(app, pilot, until=lambda a: isinstance(a.screen, DashboardScreen))
        assert isinstance(app.screen, DashboardScreen)
    saved = store.load(live_web.url)
    assert saved is not None and saved.email == live_web.admin_email
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    # The stored token works on its own: a fresh console signs in without asking.
    app = PolarisApp(live_web.url, token=saved.token, clock=clock, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot, until=lambda a: a.signed_in_as is not None)
        assert app.signed_in_as == live_web.admin_email
        assert not isinstance(app.screen, LoginScreen)


async def test_revoked_token_asks_to_sign_in_again(live_web, clock):
    live_web.require("POST", "/api/admin/v1/auth/logout")
    token = await live_web.token()
    from polaris.tui.api_client import AdminClient

    async with AdminClient(live_web.url, token) as api:
        await api.logout()
    app = PolarisApp(live_web.url, token=token, clock=clock, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot, until=lambda a: isinstance(a.screen, LoginScreen))
        assert isinstance(app.screen, LoginScreen)


async def test_unreachable_api_shows_a_retry_screen(clock):
    url = f"http://127.0.0.1:{closed_port()}"
    app = PolarisApp(url, token="some-token", clock=clock, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot, until=lambda a: isinstance(a.screen, UnreachableScreen))
        assert isinstance(app.screen, UnreachableScreen)
        text = str(app.screen.query_one("#unreachable-reason").render())
        assert url in text
        await pilot.press("r")
        await settle(app, pilot)
        # Still nothing listening: the screen stays, with the reason.
        assert isinstance(app.screen, UnreachableScreen)
        assert "Reason" in str(app.screen.query_one("#unreachable-reason").render())


async def test_device_login_approved_in_a_browser(live_web, tmp_path, clock):
    live_web.require("POST", "/api/admin/v1/auth/device")
    live_web.require("POST", "/api/admin/v1/auth/device/token")
    import re

    import httpx

    store = TokenStore(tmp_path / "token.json")
    app = PolarisApp(live_web.url, token_store=store, clock=clock, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.click("#device")
        for _ in range(100):
            await pilot.pause(0.1)
            message = str(app.screen.query_one("#login-message").render())
            if "enter the code" in message:
                break
        match = re.search(r"enter the code\s+(\S+)", message)
        assert match, message
        user_code = match.group(1)
        # The admin's browser: sign in with a session cookie, open the link, approve.
        async with httpx.AsyncClient(base_url=live_web.url) as browser:
            r = await browser.post(
                "/api/admin/v1/auth/login",
                json={"email": live_web.admin_email, "password": live_web.admin_password},
            )
            assert r.status_code == 200, r.text
            csrf = r.json()["csrf_token"]
            verify = "/api/admin/v1/auth/device/verify"
            page = await browser.get(verify, params={"user_code": user_code})
            assert user_code in page.text
            r = await browser.post(
                verify,
                data={"csrf_token": csrf, "user_code": user_code, "decision": "approve"},
                headers={"X-CSRF-Token": csrf},
            )
            assert r.status_code == 200, r.text
        # The console polls every `interval` seconds (5): give it two rounds.
        for _ in range(150):
            await pilot.pause(0.1)
            if isinstance(app.screen, DashboardScreen):
                break
        assert isinstance(app.screen, DashboardScreen)
    saved = store.load(live_web.url)
    assert saved is not None and saved.email == live_web.admin_email


async def test_cli_logout_revokes_the_token_on_the_server(live_web, tmp_path, monkeypatch, capsys):
    import asyncio

    import pytest

    from polaris.cli.main import main
    from polaris.tui.api_client import AdminClient, Unauthorized
    from polaris.tui.credentials import StoredToken

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    token = await live_web.token()
    TokenStore().save(StoredToken(url=live_web.url, token=token))
    # `polaris tui logout` runs its own event loop: a thread, so this loop keeps serving.
    assert await asyncio.to_thread(main, ["tui", "--url", live_web.url, "logout"]) == 0
    out = capsys.readouterr().out
    assert "signed out of" in out and "token revoked on the server" in out
    assert TokenStore().load(live_web.url) is None
    async with AdminClient(live_web.url, token) as api:
        with pytest.raises(Unauthorized):
            await api.me()
