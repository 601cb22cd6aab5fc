"""One charger: connectors, firmware, heartbeat, recent OCPP messages, and actions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from polaris.tui.models import ChargerDetail
from polaris.tui.operations import ACTIONS, BY_KEY
from polaris.tui.screens.action_dialog import ActionDialog
from polaris.tui.screens.base import ForwardWorkerErrors
from polaris.tui.widgets.charger_table import age

if TYPE_CHECKING:
    from polaris.tui.app import ChargersChanged, PolarisApp


class ActionMenu(ModalScreen[str | None]):
    """Pick an action; dismissed with its key."""

    BINDINGS = [("escape", "dismiss(None)", "Back")]

    def compose(self) -> ComposeResult:
        yield OptionList(*[Option(a.label, id=a.key) for a in ACTIONS], id="action-menu")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class ChargerDetailScreen(ForwardWorkerErrors, Screen):
    app: PolarisApp
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "actions", "Actions"),
        Binding("s", "act('start')", "Start"),
        Binding("t", "act('stop')", "Stop"),
        Binding("u", "act('unlock')", "Unlock", show=False),
        Binding("r", "reload", "Reload"),
    ]

    class Loaded(Message):
        def __init__(self, charger: ChargerDetail):
            self.charger = charger
            super().__init__()

    def __init__(self, charge_box_id: str):
        super().__init__()
        self.charge_box_id = charge_box_id
        self.charger: ChargerDetail | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"{self.charge_box_id}: loading...", id="charger-summary")
        with Horizontal(id="charger-tables"):
            yield DataTable(id="connectors", cursor_type="row", zebra_stripes=True)
            yield DataTable(id="journal", cursor_type="row")
        # A 2.0.1 station's device model (hidden for 1.6): Enter on a row sets that variable.
        yield DataTable(id="variables", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.charge_box_id
        c = self.query_one("#connectors", DataTable)
        c.add_columns("#", "Status", "Error", "Since")
        j = self.query_one("#journal", DataTable)
        j.add_columns("When", "Dir", "Action", "Status", "Message")
        v = self.query_one("#variables", DataTable)
        v.add_columns("Variable", "EVSE", "Type", "Value", "Mutability")
        v.display = False
        self.action_reload()

    def action_reload(self) -> None:
        self.load()

    @work(exclusive=True, group="charger", exit_on_error=False)
    async def load(self) -> None:
        self.post_message(self.Loaded(await self.app.api.charger(self.charge_box_id)))

    @on(Loaded)
    def _show(self, message: Loaded) -> None:
        ch = self.charger = message.charger
        now = self.app.clock()
        lines = [
            f"[b]{ch.charge_box_id}[/b]  {ch.status}  {'connected' if ch.connected else 'offline'}"
            + ("" if ch.active else "  (deactivated)"),
            f"{ch.vendor or '?'} {ch.model or ''}  firmware {ch.firmware_version or '?'}  site {ch.site_name or '-'}"
            + (f"  OCPP {ch.ocpp_version}" if ch.ocpp_version else ""),
            f"last message {age(ch.last_seen_at, now)}  heartbeat {age(ch.last_heartbeat_at, now)}"
            f"  boot {age(ch.last_boot_at, now)}"
            f"  registration {ch.registration_status or '?'}",
        ]
        if ch.security_profile == 0:
            lines.append("[yellow]security profile 0: no password, anyone who knows its id can connect as it[/]")
        if ch.rival_claims:
            lines.append(f"[red]{ch.rival_claims} other client(s) claimed this id with another key while it was "
                         "Pending: accept it only if you know which one is real[/]")
        self.query_one("#charger-summary", Static).update("\n".join(lines))
        c = self.query_one("#connectors", DataTable)
        c.clear()
        for k in ch.connectors:
            c.add_row(str(k.connector_id), k.status or "?", k.error_code or "", age(k.status_at, now))
        j = self.query_one("#journal", DataTable)
        j.clear()
        for e in ch.messages[:200]:
            body = e.response if e.response is not None else e.request
            text = json.dumps(body, separators=(",", ":"), default=str) if body is not None else (e.error_code or "")
            j.add_row(e.at.strftime("%H:%M:%S") if e.at else "", e.direction or "", e.action or "",
                      e.status or "", text[:60])
        v = self.query_one("#variables", DataTable)
        v.clear()
        v.display = bool(ch.variables)
        for var in ch.variables:
            v.add_row(var.key, "" if var.evse_id < 0 else str(var.evse_id), var.attribute_type,
                      var.value if var.value is not None else "", var.mutability or "", key=var.key)

    @on(DataTable.RowSelected, "#variables")
    def _set_variable(self, event: DataTable.RowSelected) -> None:
        """Enter on a variable: the set-variable dialog for it (Send confirms)."""
        if self.charger is None or event.row_key.value is None:
            return
        var = next((x for x in self.charger.variables if x.key == event.row_key.value), None)
        if var is None or var.mutability == "ReadOnly":
            self.app.notify(f"{event.row_key.value} is read-only", severity="warning")
            return
        self.app.push_screen(ActionDialog(self.charge_box_id, BY_KEY["set_variable"],
                                          {"key": var.key, "value": var.value or ""}), lambda _: self.load())

    def on_chargers_changed(self, message: ChargersChanged) -> None:
        i = self.app.store.index.get(self.charge_box_id)
        if i is not None and i in message.touched:
            self.load()

    def action_actions(self) -> None:
        self.app.push_screen(ActionMenu(), self._picked)

    def _picked(self, key: str | None) -> None:
        if key:
            self.action_act(key)

    def action_act(self, key: str) -> None:
        action = BY_KEY[key]
        defaults: dict[str, str] = {}
        if self.charger and key == "start":
            free = next((k for k in self.charger.connectors if k.connector_id and k.status == "Available"), None)
            if free:
                defaults["connectorId"] = str(free.connector_id)
        self.app.push_screen(ActionDialog(self.charge_box_id, action, defaults), lambda _: self.load())
