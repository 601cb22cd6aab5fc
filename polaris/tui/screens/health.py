"""The deployment's health as the admin API sees it: the checks of `polaris health`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from polaris.tui.models import HealthCheck
from polaris.tui.screens.base import ForwardWorkerErrors

if TYPE_CHECKING:
    from polaris.tui.app import PolarisApp


STATE_MARKUP = {
    "ok": "[green]ok[/]",
    "warning": "[yellow]WARNING[/]",
    "critical": "[red]CRITICAL[/]",
    "unknown": "[dim]unknown[/]",
}


class HealthScreen(ForwardWorkerErrors, Screen):
    app: PolarisApp
    BINDINGS = [("r", "reload", "Reload")]

    class Loaded(Message):
        def __init__(self, checks: list[HealthCheck]):
            self.checks = checks
            super().__init__()

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="health", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("Check", "State", "Detail")
        self.action_reload()

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True, group="health", exit_on_error=False)
    async def load(self) -> None:
        self.post_message(self.Loaded(await self.app.api.health()))

    @on(Loaded)
    def _show(self, message: Loaded) -> None:
        t = self.query_one(DataTable)
        t.clear()
        for c in message.checks:
            state = c.status or ("ok" if c.ok else "critical")
            detail = c.detail or ""
            if c.fix:
                detail += f" — fix: {c.fix}"
            t.add_row(c.name, STATE_MARKUP.get(state, state), detail)
