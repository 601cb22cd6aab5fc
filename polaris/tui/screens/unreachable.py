"""Shown when the admin API does not answer, with a retry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Label, Static

from polaris.tui.api_client import ApiError, ApiUnreachable

if TYPE_CHECKING:
    from polaris.tui.app import PolarisApp


class UnreachableScreen(Screen[None]):
    app: PolarisApp
    BINDINGS = [("r", "retry", "Retry"), ("ctrl+q", "app.quit", "Quit")]

    def __init__(self, api_url: str, reason: str):
        super().__init__()
        self.api_url = api_url
        self.reason = reason

    def compose(self) -> ComposeResult:
        with Vertical(id="unreachable-box"):
            yield Label("The admin API is unreachable", id="unreachable-title")
            yield Static(f"URL: {self.api_url}\nReason: {self.reason}", id="unreachable-reason")
            yield Static(
                "Check that `polaris web` is running and that --url points at the admin host.",
                id="unreachable-hint",
            )
            yield Button("Retry", variant="primary", id="retry")
        yield Footer()

    @on(Button.Pressed, "#retry")
    def action_retry(self) -> None:
        self.query_one("#unreachable-reason", Static).update(f"URL: {self.api_url}\nTrying again...")
        self.probe()

    @work(exclusive=True, group="probe", exit_on_error=False)
    async def probe(self) -> None:
        try:
            await self.app.api.me()
        except ApiUnreachable as exc:
            self.query_one("#unreachable-reason", Static).update(f"URL: {self.api_url}\nReason: {exc.reason}")
            return
        except ApiError:
            pass  # it answers: signing in again is the app's business
        self.dismiss(None)
