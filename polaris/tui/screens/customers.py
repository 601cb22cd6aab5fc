"""Customers and their cards: search, invite, block / add cards, deactivate or reactivate, open in Lago."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static

from polaris.tui.models import Customer
from polaris.tui.screens.base import ForwardWorkerErrors

if TYPE_CHECKING:
    from polaris.tui.app import PolarisApp


class FormDialog(ModalScreen[dict[str, str] | None]):
    """A few text fields and OK / Cancel; dismissed with the values."""

    BINDINGS = [("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, fields: list[tuple[str, str]]):
        super().__init__()
        self.title_text = title
        self.fields = fields

    def compose(self) -> ComposeResult:
        with Vertical(id="form-box"):
            yield Label(self.title_text, id="form-title")
            for name, label in self.fields:
                yield Label(label)
                yield Input(id=f"form-{name}")
            with Horizontal(id="form-buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        for i in self.query(Input):
            i.cursor_blink = False
        self.query(Input).first().focus()

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def _ok(self) -> None:
        self.dismiss({name: self.query_one(f"#form-{name}", Input).value.strip() for name, _ in self.fields})

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class CustomersScreen(ForwardWorkerErrors, Screen):
    app: PolarisApp
    BINDINGS = [
        Binding("/", "search", "Search"),
        Binding("i", "invite", "Invite"),
        Binding("c", "add_card", "Add card"),
        Binding("k", "link_card", "Link card"),
        Binding("b", "block_card", "Block card"),
        Binding("x", "toggle_active", "Deactivate / reactivate", show=False),
        Binding("l", "lago", "Lago link"),
        Binding("r", "reload", "Reload", show=False),
    ]

    class Loaded(Message):
        def __init__(self, customers: list[Customer]):
            self.customers = customers
            super().__init__()

    class DetailLoaded(Message):
        def __init__(self, customer: Customer):
            self.customer = customer
            super().__init__()

    class Changed(Message):
        def __init__(self, text: str):
            self.text = text
            super().__init__()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ search name, email or card", id="customer-search")
        yield DataTable(id="customers", cursor_type="row", zebra_stripes=True)
        yield Static("", id="customer-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.customers: list[Customer] = []
        self.query_one(Input).cursor_blink = False
        t = self.query_one(DataTable)
        t.add_columns("Email", "Name", "Cards", "Subscription", "Active")
        t.focus()
        self.action_reload()

    def action_reload(self) -> None:
        self.load(self.query_one(Input).value.strip())

    @work(exclusive=True, group="customers", exit_on_error=False)
    async def load(self, search: str) -> None:
        self.post_message(self.Loaded(await self.app.api.customers(search or None)))

    @on(Loaded)
    def _show(self, message: Loaded) -> None:
        keep = self.current.id if self.current else None
        self.customers = message.customers
        t = self.query_one(DataTable)
        t.clear()
        for c in self.customers:
            cards = str(c.id_tag_count if c.id_tag_count is not None else len(c.id_tags))
            t.add_row(c.email, c.name or "", cards, c.lago_subscription_id or "", "yes" if c.active else "no", key=str(c.id))
        # A reload after a change keeps the operator on the customer they were working on.
        ids = [c.id for c in self.customers]
        if keep in ids:
            t.move_cursor(row=ids.index(keep))
        self._detail()

    @property
    def current(self) -> Customer | None:
        t = self.query_one(DataTable)
        if not self.customers or t.cursor_row >= len(self.customers):
            return None
        return self.customers[t.cursor_row]

    @on(DataTable.RowHighlighted, "#customers")
    def _detail(self) -> None:
        c = self.current
        self.query_one("#customer-detail", Static).update("" if c is None else f"[b]{c.email}[/b] loading cards...")
        if c is not None:
            self.load_detail(c.id)

    @work(exclusive=True, group="customer-detail", exit_on_error=False)
    async def load_detail(self, customer_id: int) -> None:
        self.post_message(self.DetailLoaded(await self.app.api.customer(customer_id)))

    @on(DetailLoaded)
    def _show_detail(self, message: DetailLoaded) -> None:
        c = message.customer
        if self.current is None or self.current.id != c.id:
            return
        cards = ", ".join(x.id_tag + (" (blocked)" if x.blocked else "") for x in c.id_tags) or "no cards"
        text = f"[b]{c.name or c.email}[/b] {c.email} · {'active' if c.active else 'deactivated'} · cards: {cards}"
        if c.lago_url:
            text += f"\nLago: {c.lago_url}"
        self.query_one("#customer-detail", Static).update(text)

    def action_search(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted, "#customer-search")
    def _search(self) -> None:
        self.action_reload()
        self.query_one(DataTable).focus()

    def action_invite(self) -> None:
        self.app.push_screen(FormDialog("Invite a customer by email", [("email", "Email"), ("name", "Name")]), self._invite)

    def _invite(self, values: dict[str, str] | None) -> None:
        if values and values["email"]:
            self.mutate("invite", values)

    def action_add_card(self) -> None:
        c = self.current
        label = f"Add a card for {c.email}" if c else "Add a card"
        self.app.push_screen(FormDialog(label, [("id_tag", "Card id (idTag)"), ("label", "Label")]), self._add_card)

    def _add_card(self, values: dict[str, str] | None) -> None:
        if values and values["id_tag"]:
            c = self.current
            self.mutate("add_card", {**values, "email": c.email if c else ""})

    def action_link_card(self) -> None:
        c = self.current
        if c is None:
            return
        self.app.push_screen(FormDialog(f"Link an existing card to {c.email}", [("id_tag", "Card id (idTag)")]), self._link)

    def _link(self, values: dict[str, str] | None) -> None:
        c = self.current
        if values and values["id_tag"] and c is not None:
            self.mutate("link", {**values, "id": str(c.id)})

    def action_block_card(self) -> None:
        self.app.push_screen(FormDialog("Block a card (it stops working at once)", [("id_tag", "Card id (idTag)")]), self._block)

    def _block(self, values: dict[str, str] | None) -> None:
        if values and values["id_tag"]:
            self.mutate("block", values)

    def action_toggle_active(self) -> None:
        c = self.current
        if c:
            self.mutate("deactivate" if c.active else "reactivate", {"id": str(c.id)})

    def action_lago(self) -> None:
        c = self.current
        if c is None:
            return
        url = c.lago_url or (
            f"{self.app.lago_dashboard_url.rstrip('/')}/customer/{c.lago_subscription_id}"
            if self.app.lago_dashboard_url and c.lago_subscription_id else None
        )
        self.notify(url or "This customer has no Lago subscription yet.", title="Open in Lago", timeout=15)

    @work(exclusive=True, group="customer-change", exit_on_error=False)
    async def mutate(self, what: str, values: dict[str, str]) -> None:
        api = self.app.api
        if what == "invite":
            c = await api.invite_customer(values["email"], values.get("name") or None)
            text = f"Invitation sent to {c.email}"
        elif what == "add_card":
            t = await api.add_id_tag(values["id_tag"], values.get("email") or None, values.get("label") or None)
            text = f"Card {t.id_tag} added"
        elif what == "link":
            t = await api.link_id_tag(values["id_tag"], int(values["id"]))
            text = f"Card {t.id_tag} linked to {t.customer_email}"
        elif what == "block":
            t = await api.block_id_tag(values["id_tag"])
            text = f"Card {t.id_tag} blocked"
        else:
            c = await api.set_customer_active(int(values["id"]), what == "reactivate")
            text = f"{c.email} is active again" if c.active else f"{c.email} deactivated"
        self.post_message(self.Changed(text))

    @on(Changed)
    def _changed(self, message: Changed) -> None:
        self.notify(message.text)
        self.action_reload()
