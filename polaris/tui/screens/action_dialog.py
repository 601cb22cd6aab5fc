"""Confirm a charger action, send it, and show what the charger answered."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from polaris.tui.api_client import ApiError, ApiUnreachable, Unauthorized
from polaris.tui.models import OperationResult
from polaris.tui.operations import ActionSpec, build_body
from polaris.tui.screens.base import ForwardWorkerErrors

if TYPE_CHECKING:
    from polaris.tui.app import PolarisApp


class ActionDialog(ForwardWorkerErrors, ModalScreen[OperationResult | None]):
    app: PolarisApp
    BINDINGS = [("escape", "close", "Close")]

    class Answered(Message):
        def __init__(self, result: OperationResult):
            self.result = result
            super().__init__()

    class Refused(Message):
        def __init__(self, error: ApiError):
            self.error = error
            super().__init__()

    def __init__(self, charge_box_id: str, action: ActionSpec, defaults: dict[str, str] | None = None):
        super().__init__()
        self.charge_box_id = charge_box_id
        self.action = action
        self.defaults = defaults or {}
        self.result: OperationResult | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="action-box"):
            yield Label(f"{self.action.label} on {self.charge_box_id}?", id="action-title")
            if self.action.warning:
                yield Static(self.action.warning, id="action-warning")
            for f in self.action.fields:
                yield Label(f.label + (f" ({'/'.join(f.choices)})" if f.choices else ""))
                yield Input(value=self.defaults.get(f.name, f.default), id=f"field-{f.name}")
            with VerticalScroll(id="action-answer-box"):
                yield Static("", id="action-answer")
            with Horizontal(id="action-buttons"):
                yield Button("Send", variant="warning", id="send")
                yield Button("Close", id="close")

    def on_mount(self) -> None:
        for i in self.query(Input):
            i.cursor_blink = False
        self.query_one("#send", Button).focus()

    def values(self) -> dict[str, str]:
        return {f.name: self.query_one(f"#field-{f.name}", Input).value for f in self.action.fields}

    def say(self, text: str) -> None:
        self.query_one("#action-answer", Static).update(text)

    @on(Button.Pressed, "#send")
    @on(Input.Submitted)
    def send(self) -> None:
        try:
            body = build_body(self.action, self.values())
        except ValueError as exc:
            self.say(f"[b]Check the form:[/b] {exc}")
            return
        self.query_one("#send", Button).disabled = True
        self.say(f"Sending {self.action.operation}... waiting for the charger")
        self.run_operation(body)

    @work(exclusive=True, group="operation", exit_on_error=False)
    async def run_operation(self, body: dict) -> None:
        try:
            result = await self.app.api.operation(self.charge_box_id, self.action.operation, body)
        except (Unauthorized, ApiUnreachable):
            raise
        except ApiError as exc:
            self.post_message(self.Refused(exc))
            return
        self.post_message(self.Answered(result))

    @on(Answered)
    def _answered(self, message: Answered) -> None:
        self.result = message.result
        r = message.result
        detail = json.dumps(r.response, indent=2, default=str) if r.response else ""
        self.say(f"Charger answered: [b]{r.status or 'no status'}[/b]\n{detail}")
        self.query_one("#send", Button).disabled = False
        self.query_one("#close", Button).focus()

    @on(Refused)
    def _refused(self, message: Refused) -> None:
        e = message.error
        self.say(f"[b]Not sent:[/b] {e.message} ({e.status} {e.code})")
        self.app.notify(e.message, title=f"{self.action.label}: {e.code}", severity="warning")
        self.query_one("#send", Button).disabled = False

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(self.result)
