"""Charging sessions, active and past; detail with energy and a live power sparkline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Sparkline, Static

from polaris.tui.models import Transaction, TransactionDetail
from polaris.tui.screens.base import ForwardWorkerErrors

if TYPE_CHECKING:
    from polaris.tui.app import LiveActivity, PolarisApp


def kwh(wh: float | None) -> str:
    return "-" if wh is None else f"{wh / 1000:,.2f}"


class SessionsScreen(ForwardWorkerErrors, Screen):
    app: PolarisApp
    BINDINGS = [
        Binding("a", "toggle_active", "Active/all"),
        Binding("/", "search", "Filter"),
        Binding("r", "reload", "Reload"),
    ]

    class Loaded(Message):
        def __init__(self, transactions: list[Transaction]):
            self.transactions = transactions
            super().__init__()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ charger id or customer email", id="session-filter")
        yield Static("", id="session-scope")
        yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.active_only = True
        self.query_one(Input).cursor_blink = False
        t = self.query_one(DataTable)
        t.add_columns("Id", "Charger", "Conn", "Card", "Customer", "Started", "kWh", "Billing")
        t.focus()
        self.action_reload()

    def action_reload(self) -> None:
        text = self.query_one(Input).value.strip()
        scope = "active sessions" if self.active_only else "all sessions"
        self.query_one("#session-scope", Static).update(f"{scope}{' matching ' + text if text else ''}")
        self.load(text)

    @work(exclusive=True, group="sessions", exit_on_error=False)
    async def load(self, text: str) -> None:
        kwargs = {"customer": text} if "@" in text else {"charge_box_id": text or None}
        rows = await self.app.api.transactions(active=True if self.active_only else None, **kwargs)
        self.post_message(self.Loaded(rows))

    @on(Loaded)
    def _show(self, message: Loaded) -> None:
        t = self.query_one(DataTable)
        t.clear()
        for x in message.transactions:
            t.add_row(
                str(x.id), x.charge_box_id or "", str(x.connector_id or ""), x.id_tag or "",
                x.customer_email or "", x.start_timestamp.strftime("%m-%d %H:%M") if x.start_timestamp else "",
                kwh(x.energy_wh), x.billing_state or "", key=str(x.id),
            )

    def action_toggle_active(self) -> None:
        self.active_only = not self.active_only
        self.action_reload()

    def action_search(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted, "#session-filter")
    def _filter(self) -> None:
        self.action_reload()
        self.query_one(DataTable).focus()

    @on(DataTable.RowSelected, "#sessions")
    def _open(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.push_screen(SessionDetailScreen(int(event.row_key.value)))

    def on_live_activity(self, message: LiveActivity) -> None:
        if any(e.type.startswith(("transaction", "session")) for e in message.events):
            self.action_reload()


class SessionDetailScreen(ForwardWorkerErrors, Screen):
    app: PolarisApp
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("r", "reload", "Reload")]

    class Loaded(Message):
        def __init__(self, transaction: TransactionDetail):
            self.transaction = transaction
            super().__init__()

    def __init__(self, transaction_id: int):
        super().__init__()
        self.transaction_id = transaction_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Session {self.transaction_id}: loading...", id="session-summary")
        yield Static("Power (kW)", id="power-label")
        yield Sparkline([], id="power")
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True, group="session", exit_on_error=False)
    async def load(self) -> None:
        self.post_message(self.Loaded(await self.app.api.transaction(self.transaction_id)))

    @on(Loaded)
    def _show(self, message: Loaded) -> None:
        x = message.transaction
        power = x.power_series()
        state = "active" if x.active else f"ended {x.stop_timestamp:%Y-%m-%d %H:%M} ({x.stop_reason or '-'})"
        self.query_one("#session-summary", Static).update(
            f"[b]Session {x.id}[/b] on {x.charge_box_id} connector {x.connector_id}  {state}\n"
            f"card {x.id_tag or '-'}  customer {x.customer_email or '-'}\n"
            f"energy {kwh(x.energy_wh)} kWh  billing {x.billing_state or '-'}"
            + (f"\npower now {power[-1]:.1f} kW, peak {max(power):.1f} kW" if power else "\nno power samples")
        )
        self.query_one(Sparkline).data = power

    def on_live_activity(self, message: LiveActivity) -> None:
        for e in message.events:
            if isinstance(e.data, dict) and e.data.get("transaction_id") == self.transaction_id:
                self.load()
                return
