"""Dashboard, sessions, customers and cards, sync, audit log and health against the real stack."""

from __future__ import annotations

import asyncio

from textual.widgets import DataTable, Sparkline

from polaris.tui.app import PolarisApp
from polaris.tui.screens.action_dialog import ActionDialog
from polaris.tui.screens.audit import AuditScreen
from polaris.tui.screens.charger_detail import ChargerDetailScreen
from polaris.tui.screens.customers import CustomersScreen, FormDialog
from polaris.tui.screens.dashboard import DashboardScreen
from polaris.tui.screens.health import HealthScreen
from polaris.tui.screens.sessions import SessionDetailScreen, SessionsScreen
from polaris.tui.screens.sync import SyncScreen


async def until(pilot, condition, wait: float = 30.0, every=None) -> None:
    """Wait for `condition`, calling `every()` (e.g. a reload) between checks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        if every is not None:
            every()
        await pilot.pause(0.2)


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


def cells(table: DataTable, column: int) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


async def console(live_web, clock) -> PolarisApp:
    return PolarisApp(
        live_web.url,
        token=await live_web.token(),
        clock=clock,
        live="GET /api/admin/v1/events" in live_web.paths,
        lago_dashboard_url="https://lago.example.com",
    )


async def add_customer_with_card(live_web, email: str, tag: str, sub: str | None = None) -> None:
    from polaris.db.repos import customers, id_tags

    async with live_web.pool.acquire() as conn:
        await customers.add_customer(conn, email, name="Carla Customer", lago_subscription_id=sub)
        await id_tags.add_id_tag(conn, tag, customer_email=email, label="Blue card")


async def test_dashboard_counts_the_fleet(live_web, clock):
    live_web.require("GET", "/api/admin/v1/dashboard")
    await live_web.add_chargers(["D-1", "D-2", "D-3"])
    await live_web.connect_charger("D-LIVE")
    app = await console(live_web, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        screen = app.screen
        await until(pilot, lambda: "1" in text_of(screen, "#tile-online"), every=screen.action_reload)
        assert "3" in text_of(screen, "#tile-offline")
        assert "kWh" in text_of(screen, "#tile-energy")
        assert "Billing sync" in text_of(screen, "#tile-sync")


async def test_remote_start_then_the_session_with_its_power_chart(live_web, clock):
    live_web.require("GET", "/api/admin/v1/transactions/{id}")
    await add_customer_with_card(live_web, "carla@example.com", "CARLA-1", "sub_carla")
    sim = await live_web.connect_charger("LIVE-1", connectors=1, meter_interval=1, id_tag="CARLA-1")
    app = await console(live_web, clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.open_charger("LIVE-1")
        await until(pilot, lambda: isinstance(app.screen, ChargerDetailScreen) and app.screen.charger is not None)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ActionDialog))
        dialog = app.screen
        assert dialog.query_one("#field-connectorId").value == "1"
        dialog.query_one("#field-idTag").value = "CARLA-1"
        await pilot.click("#send")
        await until(pilot, lambda: dialog.result is not None)
        assert dialog.result.status == "Accepted"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ChargerDetailScreen))
        await pilot.press("escape")

        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, SessionsScreen))
        sessions = app.screen
        table = sessions.query_one("#sessions", DataTable)
        await until(pilot, lambda: table.row_count == 1, every=sessions.action_reload)
        assert cells(table, 1) == ["LIVE-1"] and cells(table, 4) == ["carla@example.com"]
        table.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, SessionDetailScreen))
        detail = app.screen
        spark = detail.query_one(Sparkline)
        await until(pilot, lambda: len(spark.data or []) >= 2, every=detail.action_reload)
        assert max(spark.data) > 0
        summary = text_of(detail, "#session-summary")
        assert "LIVE-1" in summary and "carla@example.com" in summary and "power now" in summary
    assert sim.transaction_ids[1] is not None


async def test_customers_invite_card_block_and_lago_link(live_web, clock):
    live_web.require("POST", "/api/admin/v1/customers")
    live_web.require("PATCH", "/api/admin/v1/id-tags/{id_tag}")
    await add_customer_with_card(live_web, "carla@example.com", "CARLA-1", "sub_carla")
    app = await console(live_web, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("4")
        await until(pilot, lambda: isinstance(app.screen, CustomersScreen))
        screen = app.screen
        table = screen.query_one("#customers", DataTable)
        await until(pilot, lambda: table.row_count == 1)
        assert cells(table, 0) == ["carla@example.com"] and cells(table, 2) == ["1"]
        await until(pilot, lambda: "CARLA-1" in text_of(screen, "#customer-detail"))

        await pilot.press("l")
        await until(pilot, lambda: any(n.title == "Open in Lago" for n in app._notifications))
        link = next(n.message for n in app._notifications if n.title == "Open in Lago")
        assert "sub_carla" in link or "lago" in link.lower()

        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, FormDialog))
        app.screen.query_one("#form-email").value = "dan@example.com"
        app.screen.query_one("#form-name").value = "Dan"
        await pilot.click("#ok")
        await until(pilot, lambda: table.row_count == 2)
        assert "Invitation sent to dan@example.com" in [n.message for n in app._notifications]

        table.move_cursor(row=cells(table, 0).index("dan@example.com"))
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, FormDialog))
        app.screen.query_one("#form-id_tag").value = "DAN-CARD"
        await pilot.click("#ok")
        await until(pilot, lambda: "DAN-CARD" in text_of(screen, "#customer-detail"))

        # A card a charger saw before anyone registered it, linked to Dan afterwards.
        from polaris.db.repos import id_tags

        async with live_web.pool.acquire() as conn:
            await id_tags.add_id_tag(conn, "LOOSE-7", label="found at the depot")
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, FormDialog))
        app.screen.query_one("#form-id_tag").value = "LOOSE-7"
        await pilot.click("#ok")
        await until(pilot, lambda: "LOOSE-7" in text_of(screen, "#customer-detail"))
        assert "Card LOOSE-7 linked to dan@example.com" in [n.message for n in app._notifications]

        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, FormDialog))
        app.screen.query_one("#form-id_tag").value = "CARLA-1"
        await pilot.click("#ok")
        table.move_cursor(row=cells(table, 0).index("carla@example.com"))
        await until(pilot, lambda: "CARLA-1 (blocked)" in text_of(screen, "#customer-detail"))

        # A card that does not exist: the API's answer is a notice, the screen stays usable.
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, FormDialog))
        app.screen.query_one("#form-id_tag").value = "NO-SUCH"
        await pilot.click("#ok")
        await until(pilot, lambda: any(n.severity == "error" for n in app._notifications))
        assert isinstance(app.screen, CustomersScreen)

        table.move_cursor(row=cells(table, 0).index("dan@example.com"))
        await pilot.press("x")
        await until(pilot, lambda: "dan@example.com deactivated" in [n.message for n in app._notifications])
        await until(pilot, lambda: cells(table, 4)[cells(table, 0).index("dan@example.com")] == "no")
        await until(pilot, lambda: screen.current is not None and not screen.current.active)
        await pilot.press("x")  # the same key brings the customer back
        await until(pilot, lambda: "dan@example.com is active again" in [n.message for n in app._notifications])
        await until(pilot, lambda: cells(table, 4)[cells(table, 0).index("dan@example.com")] == "yes")


async def test_sync_pin_and_sync_now(live_web, clock):
    live_web.require("PUT", "/api/admin/v1/sync/pin")
    live_web.require("POST", "/api/admin/v1/sync/trigger")
    app = await console(live_web, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, SyncScreen) and app.screen.status is not None)
        screen = app.screen
        assert "(adaptive)" in text_of(screen, "#sync-status")
        await pilot.press("p")
        await until(pilot, lambda: screen.status.pinned_tier == "active")
        assert "pinned active" in text_of(screen, "#sync-status")
        await pilot.press("n")
        await until(pilot, lambda: any("Sync requested" in n.message for n in app._notifications))
        await pilot.press("p", "p", "p")  # active -> idle -> dormant -> unpinned
        await until(pilot, lambda: screen.status.pinned_tier is None and "(adaptive)" in text_of(screen, "#sync-status"))


async def seed_holds(live_web) -> tuple[int, int]:
    """Two finished sessions the billing sync held: an anomaly, and one whose event Lago refused."""
    await live_web.add_chargers(["H-1"])
    async with live_web.pool.acquire() as conn:
        ids = []
        for connector, meter_stop in ((1, 500), (2, 7_500)):
            ids.append(await conn.fetchval(
                "INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start, "
                "stop_timestamp, meter_stop, stop_reason, stopped_by) SELECT id, $1, 'T1', '2026-01-01T10:00Z', 1000, "
                "'2026-01-01T11:00Z', $2, 'Local', 'charger' FROM ocpp.charge_boxes WHERE charge_box_id = 'H-1' "
                "RETURNING id", connector, meter_stop))
        anomaly, refused = ids
        await conn.execute(
            "INSERT INTO billing.transaction_sync_state (transaction_id, unbillable_code, unbillable_reason, held_since) "
            "VALUES ($1, 'anomaly', 'meterStop 500 Wh is below meterStart 1000 Wh', now()), "
            "($2, 'invalid_event', 'Lago refused event steve_tx_final: properties invalid_value', now())",
            anomaly, refused)
        await conn.execute(
            "INSERT INTO billing.usage_events (transaction_id, ocpp_transaction_id, kind, external_subscription_id, "
            "code, event_timestamp, wh, properties, status, last_error) VALUES ($1, $2, 'final', 'sub_x', "
            "'ev_charging_kwh', '2026-01-01T11:00Z', 6500, '{}', 'invalid', 'properties invalid_value')",
            f"steve_tx_{refused}_final", refused)
    return anomaly, refused


async def test_sync_releases_held_sessions(live_web, clock):
    live_web.require("POST", "/api/admin/v1/sync/unbillable/{id}/settle")
    anomaly, refused = await seed_holds(live_web)
    app = await console(live_web, clock)

    def said(text: str) -> bool:
        return any(text in n.message for n in app._notifications)

    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, SyncScreen) and len(app.screen.held) == 2)
        screen = app.screen
        table = screen.query_one("#unbillable", DataTable)
        assert cells(table, 3) == ["anomaly", "invalid_event"]
        table.focus()
        await pilot.press("t")  # the wrong key for an anomaly: it says which one is right
        await until(pilot, lambda: said(f"Session {anomaly} is held as anomaly: e settles it"))
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, FormDialog))
        await pilot.press(*"lots", "enter")
        await until(pilot, lambda: said("Enter the energy in kWh"))
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, FormDialog))
        await pilot.press(*"0.75", "enter")
        await until(pilot, lambda: said(f"Session {anomaly}: 0.750 kWh will be billed"))
        async with live_web.pool.acquire() as conn:
            assert await conn.fetchval(
                "SELECT energy_override_wh FROM billing.transaction_sync_state WHERE transaction_id = $1", anomaly) == 750
        await pilot.press("down", "t")
        await until(pilot, lambda: said(f"Session {refused}: 1 refused event(s) will be sent again"))
        async with live_web.pool.acquire() as conn:
            assert await conn.fetchval(
                "SELECT status FROM billing.usage_events WHERE ocpp_transaction_id = $1", refused) == "pending"


async def test_audit_log_shows_what_the_console_changed(live_web, clock):
    live_web.require("GET", "/api/admin/v1/audit")
    live_web.require("PUT", "/api/admin/v1/sync/pin")
    app = await console(live_web, clock)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        await app.api.pin_tier("idle")
        await pilot.press("6")
        await until(pilot, lambda: isinstance(app.screen, AuditScreen))
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count >= 1)
        assert live_web.admin_email in cells(table, 1)
        assert any("sync" in a or "pin" in a for a in cells(table, 2))


async def test_health_lists_the_checks(live_web, clock):
    live_web.require("GET", "/api/admin/v1/health")
    app = await console(live_web, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("7")
        await until(pilot, lambda: isinstance(app.screen, HealthScreen))
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count >= 1)
        names = " ".join(cells(table, 0)).lower()
        assert "database" in names or "postgres" in names


async def test_the_site_view_shows_the_limit_the_live_total_per_phase_and_each_sessions_allocation(live_web, clock):
    from polaris.db.repos import sites
    from polaris.tui.screens.sites import SitesScreen

    live_web.require("GET", "/api/admin/v1/sites")
    await live_web.add_chargers(["S-1", "S-2"], site="Garage")
    async with live_web.pool.acquire() as conn:
        await sites.set_site_limits(conn, "Garage", {"limit_amps": 40, "phases": 3})
        site_id = await conn.fetchval("SELECT id FROM ocpp.sites WHERE name = 'Garage'")
        for cid, amps, answer in (("S-1", 20.0, "Accepted"), ("S-2", 0.0, None)):
            pk = await conn.fetchval("UPDATE ocpp.charge_boxes SET site_id = $2 WHERE charge_box_id = $1 "
                                     "RETURNING id", cid, site_id)
            await sites.save_allocation(conn, charge_box_pk=pk, connector_id=1, site_id=site_id, transaction_id=None,
                                        limit_amps=amps, phases=3, drawn_amps=19.4 if amps else None,
                                        paused_reason=None if amps else "no room for 6 A on site L1")
            if answer:
                await sites.save_answer(conn, pk, 1, sent_amps=amps, answer=answer)
        await sites.save_site_load(conn, site_id, controller="loadmgmt:ocpp-1", drawn=[19.4, 19.4, 19.4],
                                   allocated=[20.0, 20.0, 20.0], over=False)
    app = await console(live_web, clock)
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.pause()
        await pilot.press("8")
        await until(pilot, lambda: isinstance(app.screen, SitesScreen))
        screen = app.screen
        detail = screen.query_one("#site-sessions", DataTable)
        await until(pilot, lambda: detail.row_count == 2)
        row = cells(screen.query_one("#sites", DataTable), 0).index("Garage")
        garage = [str(c) for c in screen.query_one("#sites", DataTable).get_row_at(row)]
        assert garage[1] == "40 A/phase" and garage[6] == "19.4 / 19.4 / 19.4" and garage[7] == "loadmgmt:ocpp-1"
        assert cells(detail, 3) == ["20.0 A", "paused"] and cells(detail, 4) == ["19.4 A", "–"]
        assert cells(detail, 6) == ["Accepted", "–"] and "no room for 6 A" in cells(detail, 7)[1]
        assert "limit 40 A/phase, 2 session(s), 20.0 A allocated" in text_of(screen, "#site-title")
