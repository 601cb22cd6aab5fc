"""Every charger with live status; search, filter, open one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from polaris.tui.charger_store import STATUS_FILTERS
from polaris.tui.models import Charger
from polaris.tui.screens.base import ForwardWorkerErrors
from polaris.tui.widgets.charger_table import ChargerTable

if TYPE_CHECKING:
    from polaris.tui.app import ChargersChanged, PolarisApp


class ChargersScreen(ForwardWorkerErrors, Screen):
    app: PolarisApp
    BINDINGS = [
        Binding("/", "search", "Search"),
        Binding("f", "cycle_filter", "Filter"),
        Binding("r", "reload", "Reload"),
        Binding("escape", "clear_search", "Clear", show=False),
    ]

    class PageLoaded(Message):
        def __init__(self, chargers: list[Charger], first: bool):
            self.chargers = chargers
            self.first = first
            super().__init__()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ search id or site", id="charger-search")
        yield Static("", id="charger-counts")
        yield ChargerTable(self.app.store, self.app.clock, id="charger-table")
        yield Footer()

    @property
    def table(self) -> ChargerTable:
        return self.query_one(ChargerTable)

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False
        self.table.focus()
        self.set_interval(5, self.table.tick)
        if not self.app.store.rows:
            self.action_reload()
        else:
            self.show_counts()

    def on_screen_resume(self) -> None:
        # Live changes made while another mode was shown: repaint from the store.
        if self.is_mounted and self.app.store.rows:
            self.table.reload()
            self.show_counts()

    def action_reload(self) -> None:
        self.query_one("#charger-counts", Static).update("loading chargers...")
        self.load_chargers()

    @work(exclusive=True, group="chargers", exit_on_error=False)
    async def load_chargers(self) -> None:
        first = True
        async for page in self.app.api.iter_chargers():
            self.post_message(self.PageLoaded(page, first))
            first = False

    @on(PageLoaded)
    def _page(self, message: PageLoaded) -> None:
        if message.first:
            self.app.store.clear()
        self.app.store.load(message.chargers)
        self.table.reload()
        self.show_counts()

    def on_chargers_changed(self, message: ChargersChanged) -> None:
        if message.reshaped:
            self.table.reload()
        else:
            self.table.rows_changed(message.touched)
        self.show_counts()

    def show_counts(self) -> None:
        store = self.app.store
        c = store.counts()
        shown = f"{len(store.view)} of {c['total']}" if store.filtered else f"{c['total']}"
        live = "live" if self.app.live_connected else "not live"
        # Short enough for 80 columns.
        self.query_one("#charger-counts", Static).update(
            f"{shown} chargers · on {c['online']} · off {c['offline']} · charging {c['charging']}"
            f" · faulted {c['faulted']} · {store.status_filter} · {live}",
            layout=False,  # one line, fixed height: no relayout of the screen per batch
        )

    def action_search(self) -> None:
        self.query_one(Input).focus()

    def action_clear_search(self) -> None:
        self.query_one(Input).value = ""
        self.table.focus()

    @on(Input.Changed, "#charger-search")
    def _search(self, event: Input.Changed) -> None:
        self.app.store.set_filter(search=event.value)
        self.table.reload()
        self.show_counts()

    @on(Input.Submitted, "#charger-search")
    def _search_done(self) -> None:
        self.table.focus()

    def action_cycle_filter(self) -> None:
        store = self.app.store
        nxt = STATUS_FILTERS[(STATUS_FILTERS.index(store.status_filter) + 1) % len(STATUS_FILTERS)]
        store.set_filter(status=nxt)
        self.table.reload()
        self.show_counts()

    @on(ChargerTable.Opened)
    def _open(self, message: ChargerTable.Opened) -> None:
        self.app.open_charger(message.charge_box_id)
