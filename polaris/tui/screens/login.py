"""Sign in: email + password for a token, or the device-login flow for OIDC admins."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from polaris.tui.api_client import ApiError, SlowDown
from polaris.tui.models import DeviceAuthorization, TokenGrant
from polaris.tui.screens.base import ForwardWorkerErrors

if TYPE_CHECKING:
    from polaris.tui.app import PolarisApp


class LoginScreen(ForwardWorkerErrors, Screen[str | None]):
    """Dismissed with the signed-in email once the client holds a token."""

    app: PolarisApp
    BINDINGS = [("ctrl+d", "device_login", "Browser sign-in")]

    class Granted(Message):
        def __init__(self, grant: TokenGrant, email: str | None):
            self.grant = grant
            self.email = email
            super().__init__()

    class DeviceStarted(Message):
        def __init__(self, auth: DeviceAuthorization):
            self.auth = auth
            super().__init__()

    def __init__(self, api_url: str):
        super().__init__()
        self.api_url = api_url

    def compose(self) -> ComposeResult:
        with Vertical(id="login-box"):
            yield Label("Polaris Express operator console", id="login-title")
            yield Label(self.api_url, id="login-url")
            yield Input(placeholder="email", id="email")
            yield Input(placeholder="password", password=True, id="password")
            with Horizontal(id="login-buttons"):
                yield Button("Sign in", variant="primary", id="sign-in")
                yield Button("Sign in with browser", id="device")
            yield Static("", id="login-message")
        yield Footer()

    def on_mount(self) -> None:
        for i in self.query(Input):
            i.cursor_blink = False
        self.query_one("#email", Input).focus()

    def say(self, text: str) -> None:
        self.query_one("#login-message", Static).update(text)

    @on(Input.Submitted, "#email")
    def _next(self) -> None:
        self.query_one("#password", Input).focus()

    @on(Input.Submitted, "#password")
    @on(Button.Pressed, "#sign-in")
    def submit(self) -> None:
        email = self.query_one("#email", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not email or not password:
            self.say("Enter your email and password.")
            return
        self.say("Signing in...")
        self.password_login(email, password)

    @work(exclusive=True, group="login", exit_on_error=False)
    async def password_login(self, email: str, password: str) -> None:
        try:
            grant = await self.app.api.login(email, password)
        except ApiError as exc:
            # Wrong password is an answer for this screen, not an app-level error notice.
            self.say(exc.message)
            return
        self.post_message(self.Granted(grant, grant.email or email))

    @on(Button.Pressed, "#device")
    def action_device_login(self) -> None:
        self.say("Asking the server for a sign-in code...")
        self.device_login()

    @work(exclusive=True, group="login", exit_on_error=False)
    async def device_login(self) -> None:
        api = self.app.api
        auth = await api.start_device_login()
        self.post_message(self.DeviceStarted(auth))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + auth.expires_in
        interval = auth.interval
        while loop.time() < deadline:
            await asyncio.sleep(interval)
            try:
                grant = await api.poll_device_login(auth.device_code)
            except SlowDown:
                interval += 5
                continue
            except ApiError as exc:  # denied, expired: this screen's answer, not a crash
                self.say(f"Browser sign-in failed: {exc.message}")
                return
            if grant is not None:
                self.post_message(self.Granted(grant, grant.email))
                return
        self.say("The code expired; try again.")

    @on(DeviceStarted)
    def _show_code(self, message: DeviceStarted) -> None:
        a = message.auth
        self.say(
            f"Open {a.verification_uri_complete or a.verification_uri}\n"
            f"and enter the code  {a.user_code}\nWaiting for approval..."
        )

    @on(Granted)
    def _done(self, message: Granted) -> None:
        self.dismiss(message.email)
