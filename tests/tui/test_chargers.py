"""The chargers table, a charger's detail and its actions, against the real web + OCPP server
with simulated chargers connected over real WebSockets."""

from __future__ import annotations

import asyncio

from polaris.tui.app import PolarisApp
from polaris.tui.screens.action_dialog import ActionDialog
from polaris.tui.screens.charger_detail import ActionMenu, ChargerDetailScreen
from polaris.tui.screens.chargers import ChargersScreen
from polaris.tui.widgets.charger_table import ChargerTable


async def until(pilot, condition, wait: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def console(live_web, clock) -> PolarisApp:
    token = await live_web.token()
    live = "GET /api/admin/v1/events" in live_web.paths
    return PolarisApp(live_web.url, token=token, clock=clock, live=live)


async def test_table_lists_every_charger_and_filters(live_web, clock):
    live_web.require("GET", "/api/admin/v1/chargers")
    await live_web.add_chargers([f"CP-{k:04d}" for k in range(1, 41)], site="North depot")
    await live_web.connect_charger("LIVE-1", connectors=2)
    app = await console(live_web, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, ChargersScreen) and len(app.store.rows) == 41)
        screen = app.screen
        table = screen.query_one(ChargerTable)
        assert table.selected.charge_box_id == "CP-0001"
        assert "41 chargers" in text_of(screen, "#charger-counts")
        assert "on 1 · off 40" in text_of(screen, "#charger-counts")
        row = app.store.rows[app.store.index["LIVE-1"]]
        assert row.connected and row.status == "Available" and set(row.connectors) >= {1, 2}

        await pilot.press("f")  # filter: online
        await pilot.pause()
        assert app.store.status_filter == "online"
        assert [app.store.row_at(0).charge_box_id] == ["LIVE-1"] and len(app.store.view) == 1
        await pilot.press("f", "f", "f", "f", "f")  # back round to "all"
        assert app.store.status_filter == "all"

        await pilot.press("slash")
        await pilot.press(*"cp-003")
        await pilot.press("enter")
        await pilot.pause()
        assert [app.store.row_at(i).charge_box_id for i in range(len(app.store.view))] == [
            f"CP-{k:04d}" for k in range(30, 40)
        ]
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, ChargerDetailScreen))
        assert app.screen.charge_box_id == "CP-0031"


async def test_detail_and_an_action_answered_by_a_connected_charger(live_web, clock):
    live_web.require("POST", "/api/admin/v1/chargers/{charge_box_id}/operations/{operation}")
    sim = await live_web.connect_charger("LIVE-1", connectors=2, firmware_version="2.4.1")
    app = await console(live_web, clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.open_charger("LIVE-1")
        await until(pilot, lambda: isinstance(app.screen, ChargerDetailScreen) and app.screen.charger is not None)
        detail = app.screen
        summary = text_of(detail, "#charger-summary")
        assert "LIVE-1" in summary and "connected" in summary and "2.4.1" in summary
        assert detail.query_one("#connectors").row_count >= 2

        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ActionMenu))
        menu = app.screen.query_one("#action-menu")
        menu.highlighted = [o.id for o in menu.options].index("get_config")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ActionDialog))
        dialog = app.screen
        dialog.query_one("#field-key").value = "HeartbeatInterval"
        await pilot.click("#send")
        await until(pilot, lambda: dialog.result is not None)
        answer = text_of(dialog, "#action-answer")
        assert "Charger answered" in answer and "HeartbeatInterval" in answer
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ChargerDetailScreen))
        # Closing the dialog reloads the detail: the command is now in the message journal.
        await until(pilot, lambda: detail.query_one("#journal").row_count >= 1)
        journal = detail.query_one("#journal")
        assert "GetConfiguration" in [str(journal.get_row_at(i)[2]) for i in range(journal.row_count)]

        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ActionMenu))
        menu = app.screen.query_one("#action-menu")
        menu.highlighted = [o.id for o in menu.options].index("availability")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ActionDialog))
        dialog = app.screen
        dialog.query_one("#field-connectorId").value = "2"
        await pilot.click("#send")
        await until(pilot, lambda: dialog.result is not None)
        assert dialog.result.status == "Accepted"
        assert "Accepted" in text_of(dialog, "#action-answer")
    await until_sim(lambda: sim.statuses.get(2) == "Unavailable")


async def until_sim(condition, wait: float = 10.0) -> None:
    async with asyncio.timeout(wait):
        while not condition():  # noqa: ASYNC110 - the simulator exposes state, not events
            await asyncio.sleep(0.05)


async def test_action_on_an_offline_charger_is_a_notice_not_a_crash(live_web, clock):
    live_web.require("POST", "/api/admin/v1/chargers/{charge_box_id}/operations/{operation}")
    await live_web.add_chargers(["OFF-1"])
    app = await console(live_web, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_charger("OFF-1")
        await until(pilot, lambda: isinstance(app.screen, ChargerDetailScreen) and app.screen.charger is not None)
        assert "offline" in text_of(app.screen, "#charger-summary")
        await pilot.press("u")  # unlock connector
        await until(pilot, lambda: isinstance(app.screen, ActionDialog))
        dialog = app.screen
        assert "Unlock connector on OFF-1?" in text_of(dialog, "#action-title")
        await pilot.click("#send")
        await until(pilot, lambda: "Not sent" in text_of(dialog, "#action-answer"))
        assert "409" in text_of(dialog, "#action-answer")
        assert any("409" in n.title or "offline" in (n.title + n.message).lower() for n in app._notifications)
        # Bad input never reaches the API: the form says what is wrong.
        dialog.query_one("#field-connectorId").value = "one"
        # Submit from the field with the keyboard: a click could land on the 409 toast.
        dialog.query_one("#field-connectorId").focus()
        await pilot.press("enter")
        await until(pilot, lambda: "Check the form" in text_of(dialog, "#action-answer"))
        assert "Connector must be a whole number" in text_of(dialog, "#action-answer")


async def test_unknown_charger_is_an_error_notice(live_web, clock):
    live_web.require("GET", "/api/admin/v1/chargers/{charge_box_id}")
    app = await console(live_web, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_charger("NOPE-1")
        await until(pilot, lambda: any("NOPE-1" in n.message for n in app._notifications))
        assert isinstance(app.screen, ChargerDetailScreen)


async def test_command_palette_jumps_to_a_charger(live_web, clock):
    live_web.require("GET", "/api/admin/v1/chargers")
    await live_web.add_chargers(["ALPHA-7", "BETA-9"])
    app = await console(live_web, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("2")
        await until(pilot, lambda: len(app.store.rows) == 2)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"beta")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ChargerDetailScreen))
        assert app.screen.charge_box_id == "BETA-9"


async def test_a_201_station_shows_its_version_and_device_model_and_a_variable_is_set(live_web, clock):
    live_web.require("POST", "/api/admin/v1/chargers/{charge_box_id}/operations/{operation}")
    sim = await live_web.connect_charger("NEW-201", connectors=1, ocpp="2.0.1")
    app = await console(live_web, clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.open_charger("NEW-201")
        await until(pilot, lambda: isinstance(app.screen, ChargerDetailScreen) and app.screen.charger is not None)
        detail = app.screen
        assert "OCPP 2.0.1" in text_of(detail, "#charger-summary")
        assert not detail.query_one("#variables").display  # no device model reported yet
        # "Get configuration" with no keys asks a 2.0.1 station for its base report.
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ActionMenu))
        menu = app.screen.query_one("#action-menu")
        menu.highlighted = [o.id for o in menu.options].index("get_config")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ActionDialog))
        dialog = app.screen
        await pilot.click("#send")
        await until(pilot, lambda: dialog.result is not None)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ChargerDetailScreen))
        detail.load()
        await until(pilot, lambda: detail.query_one("#variables").row_count >= 15)
        table = detail.query_one("#variables")
        assert table.display
        keys = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        row = keys.index("OCPPCommCtrlr.HeartbeatInterval")
        # Enter on the variable opens the set dialog for it; Send (the confirmation) writes it.
        table.focus()
        table.move_cursor(row=row)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ActionDialog))
        dialog = app.screen
        assert dialog.query_one("#field-key").value == "OCPPCommCtrlr.HeartbeatInterval"
        dialog.query_one("#field-value").value = "900"
        await pilot.click("#send")
        await until(pilot, lambda: dialog.result is not None)
        assert dialog.result.status == "Accepted"
    assert sim.configuration.value("OCPPCommCtrlr.HeartbeatInterval") == "900"
