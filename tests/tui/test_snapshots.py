"""SVG snapshots of the main screens at 80x24 and 160x48, against a real `polaris web`.

`snap_compare` runs the app with `App.run()` (its own event loop), so the web process runs
in a thread with its own loop here. Time is frozen through the console's injected clock,
animations are off (TEXTUAL_ANIMATIONS=none) and inputs do not blink. The URL in the
header is normalised (the port is random). Update with `pytest --snapshot-update`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from polaris.config import Settings
from polaris.tui.app import PolarisApp
from polaris.tui.screens.charger_detail import ChargerDetailScreen
from polaris.tui.screens.dashboard import DashboardScreen

SIZES = [(80, 24), (160, 48)]
SHOWN_URL = "http://admin.example.com"


class WebThread:
    """`polaris web` (app_factory) served from a background thread's event loop."""

    def __init__(self, settings: Settings, dsn: str):
        self.settings = settings
        self.dsn = dsn
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.url = ""
        self.token = ""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.close())
        self.loop.close()

    async def _start(self) -> None:
        from aiohttp.test_utils import TestServer

        from polaris.db.pool import connect
        from polaris.db.repos import charge_boxes, customers, id_tags, users
        from polaris.keys import hash_password
        from polaris.services.app import app_factory
        from polaris.tui.api_client import AdminClient

        conn = await connect(self.dsn)
        try:
            await users.add_user(conn, "ops@example.com", "admin", password_hash=hash_password("pw-for-snapshots"))
            await charge_boxes.add_charge_boxes(
                conn, [f"CP-{k:04d}" for k in range(1, 31)], "snapshot-charger-key-01", site_name="North depot"
            )
            await charge_boxes.add_charge_boxes(
                conn, ["HARBOUR-01", "HARBOUR-02"], "snapshot-charger-key-01", site_name="Harbour car park"
            )
            await customers.add_customer(conn, "carla@example.com", name="Carla Customer", lago_subscription_id="sub_carla")
            await id_tags.add_id_tag(conn, "CARLA-1", customer_email="carla@example.com", label="Blue card")
        finally:
            await conn.close()
        self.server = TestServer(app_factory(self.settings), host="127.0.0.1", port=0)
        await self.server.start_server()
        self.url = str(self.server.make_url("")).rstrip("/")
        async with AdminClient(self.url) as api:
            self.token = (await api.login("ops@example.com", "pw-for-snapshots")).token

    def start(self) -> WebThread:
        self.thread.start()
        self.ready.wait(60)
        if self.error:
            raise self.error
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


@pytest.fixture
def web_thread(settings: Settings, db_dsn: str) -> Iterator[WebThread]:
    try:
        import polaris.services.app  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"polaris.services.app is not available: {exc}")
    web = WebThread(settings.model_copy(update={"SSE_TRANSPORT": "memory"}), db_dsn).start()
    yield web
    web.stop()


def make_app(web: WebThread | None, clock, *, signed_in: bool = True) -> PolarisApp:
    url = web.url if web else "http://127.0.0.1:9"  # port 9 (discard): nothing listens
    app = PolarisApp(url, token=web.token if (web and signed_in) else None, clock=clock, live=False)
    return app


async def settle(pilot, condition, wait: float = 30.0) -> None:
    """Wait until the screen shows what we want to photograph, then normalise the header."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not condition(pilot.app):
        if loop.time() > deadline:
            raise AssertionError("screen did not reach the expected state")
        await pilot.pause(0.1)
    await pilot.app.workers.wait_for_complete()
    pilot.app.sub_title = SHOWN_URL
    for label in pilot.app.screen.query("#login-url"):
        label.update(SHOWN_URL)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
class TestSignIn:
    def test_login(self, snap_compare, web_thread, clock, size):
        async def before(pilot):
            await settle(pilot, lambda app: app.screen.id != "_default" and app.screen.query("#email"))

        assert snap_compare(make_app(web_thread, clock, signed_in=False), terminal_size=size, run_before=before)

    def test_unreachable(self, snap_compare, clock, size):
        app = PolarisApp("http://127.0.0.1:9", token="t", clock=clock, live=False)

        async def before(pilot):
            await settle(pilot, lambda app: app.screen.query("#retry"))

        assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
class TestDashboard:
    def test_dashboard(self, snap_compare, web_thread, clock, size):
        async def before(pilot):
            await settle(
                pilot,
                lambda app: isinstance(app.screen, DashboardScreen)
                and "loading" not in str(app.screen.query_one("#alerts").render()),
            )

        assert snap_compare(make_app(web_thread, clock), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
class TestChargers:
    def test_chargers_table(self, snap_compare, web_thread, clock, size):
        async def before(pilot):
            await settle(pilot, lambda app: isinstance(app.screen, DashboardScreen))
            await pilot.press("2")
            await settle(pilot, lambda app: len(app.store.rows) == 32)
            await pilot.press("down", "down")

        assert snap_compare(make_app(web_thread, clock), terminal_size=size, run_before=before)

    def test_chargers_filtered(self, snap_compare, web_thread, clock, size):
        async def before(pilot):
            await settle(pilot, lambda app: isinstance(app.screen, DashboardScreen))
            await pilot.press("2")
            await settle(pilot, lambda app: len(app.store.rows) == 32)
            await pilot.press("slash", *"harb", "enter")

        assert snap_compare(make_app(web_thread, clock), terminal_size=size, run_before=before)

    def test_charger_detail_and_action_dialog(self, snap_compare, web_thread, clock, size):
        async def before(pilot):
            await settle(pilot, lambda app: isinstance(app.screen, DashboardScreen))
            pilot.app.open_charger("CP-0001")
            await settle(pilot, lambda app: isinstance(app.screen, ChargerDetailScreen) and app.screen.charger)
            await pilot.press("a")
            await pilot.pause()
            await pilot.press("down", "down", "enter")  # Soft reset

        assert snap_compare(make_app(web_thread, clock), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
class TestCustomers:
    def test_customers(self, snap_compare, web_thread, clock, size):
        async def before(pilot):
            await settle(pilot, lambda app: isinstance(app.screen, DashboardScreen))
            await pilot.press("4")
            await settle(pilot, lambda app: "CARLA-1" in str(app.screen.query_one("#customer-detail").render()))

        assert snap_compare(make_app(web_thread, clock), terminal_size=size, run_before=before)
