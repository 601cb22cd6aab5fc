"""At a glance: what is online, charging, broken, and whether billing is up to date."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from polaris.tui.models import Dashboard
from polaris.tui.screens.base import ForwardWorkerErrors

if TYPE_CHECKING:
    from polaris.tui.app import ChargersChanged, LiveActivity, PolarisApp

# A burst of live events refreshes the figures at most this often.
REFRESH_DEBOUNCE = 2.0


class DashboardScreen(ForwardWorkerErrors, Screen):
    app: PolarisApp
    BINDINGS = [("r", "reload", "Reload")]

    class Loaded(Message):
        def __init__(self, dashboard: Dashboard):
            self.dashboard = dashboard
            super().__init__()

    def compose(self) -> ComposeResult:
        yield Header()
        with Grid(id="tiles"):
            for key, title in (
                ("online", "Online"),
                ("offline", "Offline"),
                ("faulted", "Faulted"),
                ("charging", "Charging"),
                ("sessions", "Sessions"),
                ("power", "Power now"),
                ("energy", "Energy today"),
                ("sync", "Billing sync"),
            ):
                yield Static(f"{title}\n-", id=f"tile-{key}", classes="tile")
        with VerticalScroll(id="alerts-box"):
            yield Static("loading...", id="alerts")
        yield Footer()

    def on_mount(self) -> None:
        self._stale = False
        self.set_interval(REFRESH_DEBOUNCE, self._maybe_reload)
        self.action_reload()

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True, group="dashboard", exit_on_error=False)
    async def load(self) -> None:
        self.post_message(self.Loaded(await self.app.api.dashboard()))

    def _maybe_reload(self) -> None:
        if self._stale:
            self._stale = False
            self.load()

    def on_chargers_changed(self, message: ChargersChanged) -> None:
        self._stale = True

    def on_live_activity(self, message: LiveActivity) -> None:
        self._stale = True

    def tile(self, key: str, title: str, value: str, cls: str = "") -> None:
        w = self.query_one(f"#tile-{key}", Static)
        w.update(f"{title}\n[b]{value}[/b]")
        w.set_classes(f"tile {cls}".strip())

    @on(Loaded)
    def _show(self, message: Loaded) -> None:
        d = message.dashboard
        self.tile("online", "Online", str(d.chargers_online), "ok")
        self.tile("offline", "Offline", str(d.chargers_offline), "warn" if d.chargers_offline else "")
        self.tile("faulted", "Faulted", str(d.chargers_faulted), "bad" if d.chargers_faulted else "")
        self.tile("charging", "Charging", str(d.chargers_charging))
        self.tile("sessions", "Sessions", str(d.active_sessions))
        self.tile("power", "Power now", f"{d.power_kw:,.1f} kW")
        self.tile("energy", "Energy today", f"{d.energy_today_kwh:,.1f} kWh")
        s = d.sync
        if s:
            last = s.last_run.status if s.last_run else "never"
            tier = (s.pinned_tier + " (pinned)") if s.pinned_tier else (s.tier or "?")
            self.tile("sync", "Billing sync", f"{tier} · {last}", "bad" if last == "failed" else "")
        if d.alerts:
            text = "\n".join(
                f"[{'red' if a.severity == 'critical' else 'yellow'}]●[/] {a.message}" for a in d.alerts
            )
        else:
            text = "[green]●[/] No alerts"
        if s and (s.backlog or s.unbillable_count):
            text += f"\nbilling backlog {s.backlog or 0} · unbillable {s.unbillable_count or 0}"
        self.query_one("#alerts", Static).update(text)
