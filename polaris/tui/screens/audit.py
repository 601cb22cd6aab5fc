"""Who changed what, when: the admin API's audit log."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from polaris.tui.models import AuditEntry
from polaris.tui.screens.base import ForwardWorkerErrors

if TYPE_CHECKING:
    from polaris.tui.app import PolarisApp


def brief(value: object) -> str:
    return "" if value is None else json.dumps(value, separators=(",", ":"), default=str)[:40]


class AuditScreen(ForwardWorkerErrors, Screen):
    app: PolarisApp
    BINDINGS = [("r", "reload", "Reload")]

    class Loaded(Message):
        def __init__(self, entries: list[AuditEntry]):
            self.entries = entries
            super().__init__()

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="audit", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("When", "Who", "Action", "Target", "Before", "After")
        self.action_reload()

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True, group="audit", exit_on_error=False)
    async def load(self) -> None:
        self.post_message(self.Loaded(await self.app.api.audit()))

    @on(Loaded)
    def _show(self, message: Loaded) -> None:
        t = self.query_one(DataTable)
        t.clear()
        for e in message.entries:
            t.add_row(f"{e.at:%m-%d %H:%M:%S}", e.actor or "", e.action, e.target or "", brief(e.before), brief(e.after))
