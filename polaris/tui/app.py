"""The console's App: navigation between screens, the shared API client, live events.

Screens and widgets live in their own modules; this file holds the App and the messages
that concern the whole app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from polaris.tui.api_client import AdminClient, ApiError, ApiUnreachable, Unauthorized
from polaris.tui.charger_store import ChargerStore, StatusUpdate, update_from_event
from polaris.tui.commands import ChargerJumpProvider
from polaris.tui.credentials import StoredToken, TokenStore
from polaris.tui.events import EventStream, LiveEvent
from polaris.tui.screens.audit import AuditScreen
from polaris.tui.screens.charger_detail import ChargerDetailScreen
from polaris.tui.screens.chargers import ChargersScreen
from polaris.tui.screens.customers import CustomersScreen
from polaris.tui.screens.dashboard import DashboardScreen
from polaris.tui.screens.health import HealthScreen
from polaris.tui.screens.login import LoginScreen
from polaris.tui.screens.sessions import SessionsScreen
from polaris.tui.screens.sites import SitesScreen
from polaris.tui.screens.sync import SyncScreen
from polaris.tui.screens.unreachable import UnreachableScreen

# Live status is applied at most this often: one repaint per batch, not per event.
FLUSH_INTERVAL = 0.1


class SignedIn(Message):
    """The console holds a working token."""


CARD_REFUSED = "card.refused"  # polaris.services.hooks.CARD_REFUSED_EVENT


def card_refused_text(data: dict) -> str:
    """One line for the operator: which card, where, and why it may not charge."""
    where = str(data.get("charge_box_id", "?"))
    if data.get("connector_id") is not None:
        where += f" connector {data['connector_id']}"
    policy = data.get("policy")
    suffix = f" (CHARGING_POLICY={policy})" if policy else ""
    return f"Card {data.get('id_tag', '?')} at {where}: {data.get('reason', 'refused')}{suffix}"


class LiveActivity(Message):
    """Non-charger live events (sessions, sync) for whichever screen shows them."""

    def __init__(self, events: list[LiveEvent]):
        self.events = events
        super().__init__()


class ChargersChanged(Message):
    """A batch of live status was applied to the store."""

    def __init__(self, touched: set[int], reshaped: bool):
        self.touched = touched
        self.reshaped = reshaped
        super().__init__()


class PolarisApp(App):
    """`polaris tui`: run the charging network from a terminal."""

    # Absolute, so subclasses (the benchmark, tests) defined elsewhere find it too.
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "Polaris Express"
    COMMANDS = App.COMMANDS | {ChargerJumpProvider}
    MODES = {
        "dashboard": DashboardScreen,
        "chargers": ChargersScreen,
        "sessions": SessionsScreen,
        "customers": CustomersScreen,
        "sync": SyncScreen,
        "audit": AuditScreen,
        "health": HealthScreen,
        "sites": SitesScreen,
    }
    BINDINGS = [
        Binding("1", "switch_mode('dashboard')", "Dash"),
        Binding("2", "switch_mode('chargers')", "Chargers"),
        Binding("3", "switch_mode('sessions')", "Sessions"),
        Binding("4", "switch_mode('customers')", "Customers"),
        Binding("5", "switch_mode('sync')", "Sync"),
        Binding("6", "switch_mode('audit')", "Audit", show=False),
        Binding("7", "switch_mode('health')", "Health", show=False),
        Binding("8", "switch_mode('sites')", "Sites", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        api_url: str,
        *,
        token: str | None = None,
        token_store: TokenStore | None = None,
        clock: Callable[[], datetime] | None = None,
        live: bool = True,
        lago_dashboard_url: str | None = None,
    ):
        super().__init__()
        self.api_url = api_url.rstrip("/")
        self.api = AdminClient(self.api_url, token)
        self.token_store = token_store
        # Injected so snapshot tests can freeze "x minutes ago".
        self.clock = clock or (lambda: datetime.now(UTC))
        self.live = live
        self.lago_dashboard_url = lago_dashboard_url
        self.store = ChargerStore()
        self.live_connected = False
        self._pending: list[StatusUpdate] = []
        self._pending_other: list[LiveEvent] = []
        self.signed_in_as: str | None = None

    # --- start and sign in ---------------------------------------------------------

    def on_mount(self) -> None:
        self.sub_title = self.api_url
        self.set_interval(FLUSH_INTERVAL, self.flush_live)
        if self.api.token:
            self.check_session()
        else:
            self.show_login()

    def show_login(self) -> None:
        if not isinstance(self.screen, LoginScreen):
            self.push_screen(LoginScreen(self.api_url), self._after_login)

    def _after_login(self, grant_email: str | None) -> None:
        if self.token_store and self.api.token:
            self.token_store.save(StoredToken(url=self.api_url, token=self.api.token, email=grant_email))
        self.signed_in_as = grant_email
        self.post_message(SignedIn())

    @work(exclusive=True, group="session", exit_on_error=False)
    async def check_session(self) -> None:
        me = await self.api.me()
        self.signed_in_as = me.email
        self.post_message(SignedIn())

    @on(SignedIn)
    def start_console(self) -> None:
        # Only from the start screen: an operator who already moved on (or signed in again
        # after an expiry) stays where they are.
        if self.current_mode == self.DEFAULT_MODE:
            self.switch_mode("dashboard")
        if self.live:
            self.listen_live()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where failed API calls become notices (never crashes)."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, Unauthorized):
            self.notify("Please sign in again.", title="Session expired", severity="warning")
            self.api.token = None
            self.show_login()
        elif isinstance(error, ApiUnreachable):
            if not isinstance(self.screen, UnreachableScreen):
                self.push_screen(UnreachableScreen(self.api_url, error.reason), self._after_reconnect)
        elif isinstance(error, ApiError):
            self.notify(error.message, title=f"Error {error.status}", severity="error")
        else:
            self.notify(f"{type(error).__name__}: {error}", title="Unexpected error", severity="error")

    def _after_reconnect(self, _: object = None) -> None:
        if self.api.token:
            self.check_session()
        else:
            self.show_login()

    # --- live events ------------------------------------------------------------------

    @work(exclusive=True, group="live", exit_on_error=False)
    async def listen_live(self) -> None:
        stream = EventStream(self.api, on_state=self._live_state)
        async for event in stream:
            self.ingest(event)

    def _live_state(self, connected: bool, reason: str | None) -> None:
        self.live_connected = connected
        if not connected and reason:
            self.log.warning("live events", reason=reason)

    def ingest(self, event: LiveEvent) -> None:
        """Queue one live event; applied with the others at the next flush."""
        update = update_from_event(event)
        if update is not None:
            update.seen_at = self.clock()
            self._pending.append(update)
        else:
            self._pending_other.append(event)

    def ingest_many(self, events: Iterable[LiveEvent]) -> None:
        for e in events:
            self.ingest(e)

    def flush_live(self) -> None:
        """Apply queued events in one batch and repaint once."""
        if self._pending:
            batch, self._pending = self._pending, []
            with self.batch_update():
                touched, reshaped = self.store.apply(batch)
                if touched:
                    # Every screen of the stack: a table under a dialog is still on view.
                    for screen in self.screen_stack:
                        screen.post_message(ChargersChanged(touched, reshaped))
        if self._pending_other:
            other, self._pending_other = self._pending_other, []
            for event in other:
                if event.type == CARD_REFUSED and isinstance(event.data, dict):
                    self.notify(card_refused_text(event.data), title="Card refused", severity="warning", timeout=15)
            for screen in self.screen_stack:
                screen.post_message(LiveActivity(other))

    # --- navigation ---------------------------------------------------------------------

    def open_charger(self, charge_box_id: str) -> None:
        self.push_screen(ChargerDetailScreen(charge_box_id))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, label in (
            ("dashboard", "Dashboard"),
            ("chargers", "Chargers"),
            ("sessions", "Sessions"),
            ("customers", "Customers and cards"),
            ("sync", "Billing sync"),
            ("audit", "Audit log"),
            ("health", "Health"),
        ):
            yield SystemCommand(label, f"Go to {label.lower()}", lambda m=mode: self.switch_mode(m))
        yield SystemCommand("Sign out", "Forget this console's token", self.action_sign_out)

    def action_sign_out(self) -> None:
        if self.token_store:
            self.token_store.forget(self.api_url)
        self.api.token = None
        self.show_login()

    async def on_unmount(self) -> None:
        await self.api.aclose()
