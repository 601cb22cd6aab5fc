"""Sites under load management: each site's grid limit and live total per phase, and for the
site under the cursor every session's allocation, what its car draws and the charger's answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from polaris.tui.models import Site, SiteDetail
from polaris.tui.screens.base import ForwardWorkerErrors

if TYPE_CHECKING:
    from polaris.tui.app import PolarisApp

REFRESH_SECONDS = 5.0


def _amps(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f} A"


def limit_text(s: Site) -> str:
    parts = []
    if s.limit_amps is not None:
        parts.append(f"{s.limit_amps:g} A/phase")
    if s.limit_kw is not None:
        parts.append(f"{s.limit_kw:g} kW")
    return " + ".join(parts) or "not managed"


def phase_text(s: Site) -> str:
    """The live total per phase; red when over the limit."""
    if not s.drawn_amps:
        return "–"
    over = s.limit_amps is not None and max(s.drawn_amps) > s.limit_amps
    text = " / ".join(f"{a:.1f}" for a in s.drawn_amps[: s.phases])
    return f"[red]{text} OVER[/]" if over or s.over_since else text


class SitesScreen(ForwardWorkerErrors, Screen):
    app: PolarisApp
    BINDINGS = [("r", "reload", "Reload")]

    class Loaded(Message):
        def __init__(self, sites: list[Site]):
            self.sites = sites
            super().__init__()

    class DetailLoaded(Message):
        def __init__(self, detail: SiteDetail):
            self.detail = detail
            super().__init__()

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="sites", cursor_type="row")
        yield Static("", id="site-title")
        yield DataTable(id="site-sessions", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#sites", DataTable).add_columns("Site", "Limit", "Phases", "Margin", "Policy",
                                                        "Chargers", "Drawn L1/L2/L3 (A)", "Controller")
        self.query_one("#site-sessions", DataTable).add_columns("Charger", "Conn", "Circuit", "Allocated",
                                                                "Draws", "Sent", "Answer", "Why")
        self.action_reload()
        self.set_interval(REFRESH_SECONDS, self.action_reload)

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True, group="sites", exit_on_error=False)
    async def load(self) -> None:
        self.post_message(self.Loaded(await self.app.api.sites()))
        if self.selected:
            self.post_message(self.DetailLoaded(await self.app.api.site(self.selected)))

    @work(exclusive=True, group="site-detail", exit_on_error=False)
    async def load_detail(self, name: str) -> None:
        self.post_message(self.DetailLoaded(await self.app.api.site(name)))

    @on(Loaded)
    def _show(self, message: Loaded) -> None:
        t = self.query_one("#sites", DataTable)
        cursor = t.cursor_row
        t.clear()
        for s in message.sites:
            t.add_row(s.name, limit_text(s), str(s.phases), _amps(s.margin_amps), s.policy, str(s.chargers or 0),
                      phase_text(s), s.controller or "–", key=s.name)
        if message.sites:
            t.move_cursor(row=min(cursor, len(message.sites) - 1))
            if self.selected is None:
                self.selected = message.sites[0].name
                self.load_detail(self.selected)

    @on(DataTable.RowHighlighted, "#sites")
    def _pick(self, event: DataTable.RowHighlighted) -> None:
        name = event.row_key.value if event.row_key is not None else None
        if name and name != self.selected:
            self.selected = name
            self.load_detail(name)

    @on(DetailLoaded)
    def _show_detail(self, message: DetailLoaded) -> None:
        d = message.detail
        if d.site.name != self.selected:
            return
        allocated = sum(x.limit_amps for x in d.sessions)
        self.query_one("#site-title", Static).update(
            f"[b]{d.site.name}[/]: limit {limit_text(d.site)}, {len(d.sessions)} session(s), "
            f"{allocated:.1f} A allocated"
        )
        t = self.query_one("#site-sessions", DataTable)
        t.clear()
        for x in d.sessions:
            t.add_row(x.charge_box_id, str(x.connector_id), x.circuit or "–",
                      "paused" if x.limit_amps == 0 else _amps(x.limit_amps), _amps(x.drawn_amps),
                      _amps(x.sent_amps), x.answer or "–", x.paused_reason or "")
