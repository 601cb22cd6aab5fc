"""Billing sync: runs and their figures, the cadence tier, pin a tier, sync now, unbillable
sessions; release a held one (settle an anomaly with the energy to bill, resend refused events)."""

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
from polaris.tui.screens.customers import FormDialog

if TYPE_CHECKING:
    from polaris.tui.app import LiveActivity, PolarisApp

TIERS = (None, "active", "idle", "dormant")


class SyncScreen(ForwardWorkerErrors, Screen):
    app: PolarisApp
    BINDINGS = [
        Binding("n", "sync_now", "Sync now"),
        Binding("p", "pin", "Pin tier"),
        Binding("e", "settle", "Settle"),
        Binding("t", "retry", "Retry refused"),
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
        self.held: list[Unbillable] = []
        self.query_one("#unbillable", DataTable).add_columns("Session", "Charger", "kWh", "Held as", "Reason")
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
        self.held = list(message.unbillable)
        for x in self.held:
            u.add_row(str(x.transaction_id), x.charge_box_id or "",
                      "-" if x.energy_wh is None else f"{x.energy_wh / 1000:.3f}", x.code or "", x.reason or "")

    def selected_hold(self, code: str) -> Unbillable | None:
        """The held session under the cursor, if it is held as `code` (else say what applies)."""
        table = self.query_one("#unbillable", DataTable)
        if not self.held:
            self.notify("No session is held back from billing.")
            return None
        x = self.held[min(max(table.cursor_row, 0), len(self.held) - 1)]
        if x.code != code:
            hint = {"anomaly": "e settles it", "invalid_event": "t sends it again"}.get(
                x.code or "", "it bills by itself once fixed (card, customer, subscription)")
            self.notify(f"Session {x.transaction_id} is held as {x.code}: {hint}.", severity="warning")
            return None
        return x

    def action_settle(self) -> None:
        x = self.selected_hold("anomaly")
        if x is None:
            return
        title = f"Session {x.transaction_id}: {x.reason or 'anomaly'}. Energy to bill (kWh)?"
        self.app.push_screen(FormDialog(title, [("kwh", "kWh, e.g. 12.5")]), lambda v: self._settle(x, v))

    def _settle(self, x: Unbillable, values: dict[str, str] | None) -> None:
        if not values:
            return
        try:
            kwh = float(values["kwh"].replace(",", "."))
        except ValueError:
            kwh = -1.0
        if not 0 <= kwh < 10_000:
            self.notify(f"Enter the energy in kWh (0 to 10000), not {values['kwh']!r}.", severity="error")
            return
        self.release(x.transaction_id, round(kwh * 1000))

    def action_retry(self) -> None:
        x = self.selected_hold("invalid_event")
        if x is not None:
            self.release(x.transaction_id, None)

    @work(group="sync-release", exit_on_error=False)
    async def release(self, transaction_id: int, energy_wh: int | None) -> None:
        api = self.app.api
        if energy_wh is None:
            done = await api.retry_hold(transaction_id)
        else:
            done = await api.settle_hold(transaction_id, energy_wh)
        self.post_message(self.Done(done.message[:1].upper() + done.message[1:]))

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
