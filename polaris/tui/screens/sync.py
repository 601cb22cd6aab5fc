"""Billing sync: runs and their figures, the cadence tier, pin a tier, sync now, unbillable sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from polaris.tui.models import SyncRun, SyncStatus, Unbillable
from polaris.tui.screens.base import ForwardWorkerErrors

if TYPE_CHECKING:
    from polaris.tui.app import LiveActivity, PolarisApp

TIERS = (None, "active", "idle", "dormant")


class SyncScreen(ForwardWorkerErrors, Screen):
    app: PolarisApp
    BINDINGS = [
        Binding("n", "sync_now", "Sync now"),
        Binding("p", "pin", "Pin tier"),
        Binding("r", "reload", "Reload"),
    ]

    class Loaded(Message):
        def __init__(self, status: SyncStatus, runs: list[SyncRun], unbillable: list[Unbillable]):
            self.status = status
            self.runs = runs
            self.unbillable = unbillable
            super().__init__()

    class Done(Message):
        def __init__(self, text: str):
            self.text = text
            super().__init__()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading...", id="sync-status")
        yield DataTable(id="sync-runs", cursor_type="row", zebra_stripes=True)
        yield Static("Unbillable sessions", id="unbillable-title")
        yield DataTable(id="unbillable", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.status: SyncStatus | None = None
        self._pin_choice: str | None = None  # "" = unpinned by this screen
        self.query_one("#sync-runs", DataTable).add_columns("Run", "Started", "Status", "Tier", "Trigger", "Events", "kWh", "Error")
        self.query_one("#unbillable", DataTable).add_columns("Session", "Charger", "kWh", "Reason")
        self.query_one("#sync-runs", DataTable).focus()
        self.action_reload()

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True, group="sync", exit_on_error=False)
    async def load(self) -> None:
        api = self.app.api
        self.post_message(self.Loaded(await api.sync_status(), await api.sync_runs(), await api.unbillable()))

    @on(Loaded)
    def _show(self, message: Loaded) -> None:
        s = self.status = message.status
        last = s.last_run
        self.query_one("#sync-status", Static).update(
            f"tier [b]{s.tier or '?'}[/b]" + (f" (pinned {s.pinned_tier})" if s.pinned_tier else " (adaptive)")
            + f" · last run {last.status + ' ' + f'{last.started_at:%m-%d %H:%M}' if last else 'never'}"
            + f" · backlog {s.backlog if s.backlog is not None else '?'}"
            + f" · unbillable {s.unbillable_count if s.unbillable_count is not None else len(message.unbillable)}"
        )
        runs = self.query_one("#sync-runs", DataTable)
        runs.clear()
        for r in message.runs:
            runs.add_row(str(r.id), f"{r.started_at:%m-%d %H:%M}", r.status, r.tier or "", r.trigger or "",
                         str(r.events_sent), f"{r.kwh_sent:.3f}", (r.error or "")[:40])
        u = self.query_one("#unbillable", DataTable)
        u.clear()
        for x in message.unbillable:
            u.add_row(str(x.transaction_id), x.charge_box_id or "",
                      "-" if x.energy_wh is None else f"{x.energy_wh / 1000:.3f}", x.reason or "")

    def action_sync_now(self) -> None:
        self.change("now")

    def action_pin(self) -> None:
        # Cycle from the last choice, not the last answer: quick presses must not repeat a tier.
        if self._pin_choice is not None:
            current = self._pin_choice or None
        else:
            current = self.status.pinned_tier if self.status else None
        nxt = TIERS[(TIERS.index(current) + 1) % len(TIERS)] if current in TIERS else None
        self._pin_choice = nxt or ""
        self.change("pin", nxt)

    @work(exclusive=True, group="sync-change", exit_on_error=False)
    async def change(self, what: str, tier: str | None = None) -> None:
        if what == "now":
            await self.app.api.sync_now()
            self.post_message(self.Done("Sync requested; the worker starts a run now"))
        else:
            await self.app.api.pin_tier(tier)
            self.post_message(self.Done(f"Tier pinned to {tier}" if tier else "Tier unpinned (adaptive)"))

    @on(Done)
    def _done(self, message: Done) -> None:
        self.notify(message.text)
        self.action_reload()

    def on_live_activity(self, message: LiveActivity) -> None:
        if any(e.type.startswith("sync") for e in message.events):
            self.action_reload()
