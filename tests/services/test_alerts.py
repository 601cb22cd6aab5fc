"""Operator alerts: incidents open and clear once, one mail per edge to every recipient."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from polaris.db.repos.operator_alerts import ALERTS_LOCK_KEY
from polaris.services.alerts import ALERT_PERIOD, evaluate_once
from polaris.services.app import app_factory

T = datetime(2026, 11, 25, 10, 25, tzinfo=UTC)
MIN = timedelta(minutes=1)
RECIPIENTS = "oncall@example.com,boss@example.com"
_ids = itertools.count(1)


@pytest.fixture
def alert_settings(settings):
    return settings.model_copy(update={"ALERT_EMAILS": RECIPIENTS})


async def add_charger(conn, cid, *, last_seen=None, connected=False, is_test=False, active=True):
    return await conn.fetchval(
        "INSERT INTO ocpp.charge_boxes (charge_box_id, public_id, last_seen_at, connected, is_test, active) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        cid, f"pub{next(_ids)}", last_seen, connected, is_test, active,
    )


async def set_connector(conn, pk, connector_id, status, *, at, error_code=None):
    await conn.execute(
        "INSERT INTO ocpp.connectors (charge_box_pk, connector_id, status, error_code, status_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (charge_box_pk, connector_id) DO UPDATE "
        "SET status = EXCLUDED.status, error_code = EXCLUDED.error_code, status_at = EXCLUDED.status_at, "
        "updated_at = EXCLUDED.updated_at",
        pk, connector_id, status, error_code, at,
    )


async def add_sync_run(conn, status, *, at, error=None):
    await conn.execute(
        "INSERT INTO billing.sync_runs (started_at, finished_at, status, error) VALUES ($1, $2, $3, $4)",
        at - MIN, None if status == "running" else at, status, error,
    )


async def alert_mails(conn):
    return await conn.fetch(
        "SELECT to_address, subject, text FROM app.email_outbox WHERE category = 'operator-alert' ORDER BY id"
    )


async def incidents(conn):
    return await conn.fetch("SELECT * FROM app.operator_alerts ORDER BY id")


async def test_offline_charger_is_mailed_once_when_opened_and_once_when_cleared(conn, alert_settings):
    await add_charger(conn, "CB-1", last_seen=T - 23 * MIN)
    await add_charger(conn, "CB-TEST", last_seen=T - 90 * MIN, is_test=True)
    await add_charger(conn, "CB-NEW")  # registered, never connected: not an incident
    await add_charger(conn, "CB-YOUNG", last_seen=T - 5 * MIN)  # not offline long enough yet
    await add_charger(conn, "CB-RETIRED", last_seen=T - 90 * MIN, active=False)
    await add_charger(conn, "CB-OK", last_seen=T - 90 * MIN, connected=True)

    first = await evaluate_once(conn, alert_settings, now=T)
    assert [(r["kind"], r["subject"]) for r in first.opened] == [("charger_offline", "CB-1")]
    mails = await alert_mails(conn)
    assert sorted(m["to_address"] for m in mails) == ["boss@example.com", "oncall@example.com"]
    assert {m["subject"] for m in mails} == {"[Polaris Express] Charger CB-1 offline since 10:02 UTC (23 min)"}
    assert "Check its power and network" in mails[0]["text"]
    assert "polaris admin charger list" in mails[0]["text"]

    # Still offline a minute later, and again: nothing new.
    assert (await evaluate_once(conn, alert_settings, now=T + MIN)).mails == 0
    assert (await evaluate_once(conn, alert_settings, now=T + 2 * MIN)).mails == 0
    assert len(await alert_mails(conn)) == 2

    await conn.execute("UPDATE ocpp.charge_boxes SET connected = true, last_seen_at = $1 WHERE charge_box_id = 'CB-1'", T + 8 * MIN)
    cleared = await evaluate_once(conn, alert_settings, now=T + 8 * MIN)
    assert [r["subject"] for r in cleared.cleared] == ["CB-1"] and cleared.mails == 2
    mails = await alert_mails(conn)
    assert {m["subject"] for m in mails[2:]} == {"[Polaris Express] Charger CB-1 back online (offline 31 min)"}
    assert "Nothing to do" in mails[2]["text"]
    assert (await evaluate_once(conn, alert_settings, now=T + 9 * MIN)).mails == 0

    rows = await incidents(conn)
    assert len(rows) == 1
    assert rows[0]["open_notified_at"] == T and rows[0]["clear_notified_at"] == T + 8 * MIN

    # Offline again: a new incident, a new mail.
    await conn.execute("UPDATE ocpp.charge_boxes SET connected = true WHERE charge_box_id = 'CB-YOUNG'")
    await conn.execute("UPDATE ocpp.charge_boxes SET connected = false, last_seen_at = $1 WHERE charge_box_id = 'CB-1'", T + 10 * MIN)
    again = await evaluate_once(conn, alert_settings, now=T + 30 * MIN)
    assert len(again.opened) == 1 and again.mails == 2
    assert len(await incidents(conn)) == 2
    assert len(await alert_mails(conn)) == 6


async def test_faulted_connector_opens_after_the_threshold_and_clears_when_no_fault_is_left(conn, alert_settings):
    pk = await add_charger(conn, "CB-F", last_seen=T, connected=True)
    await set_connector(conn, pk, 1, "Faulted", at=T - 20 * MIN, error_code="GroundFailure")
    await set_connector(conn, pk, 2, "Available", at=T - 20 * MIN)
    young = await add_charger(conn, "CB-YOUNG", last_seen=T, connected=True)
    await set_connector(conn, young, 0, "Faulted", at=T - 3 * MIN, error_code="PowerMeterFailure")
    test_box = await add_charger(conn, "CB-TEST", last_seen=T, connected=True, is_test=True)
    await set_connector(conn, test_box, 1, "Faulted", at=T - 60 * MIN, error_code="OtherError")

    result = await evaluate_once(conn, alert_settings, now=T)
    assert [(r["kind"], r["subject"]) for r in result.opened] == [("charger_faulted", "CB-F")]
    assert result.opened[0]["detail"] == "connector 1: GroundFailure"
    mails = await alert_mails(conn)
    assert len(mails) == 2
    assert mails[0]["subject"] == "[Polaris Express] Charger CB-F faulted since 10:05 UTC (20 min)"
    assert "connector 1: GroundFailure" in mails[0]["text"]

    # The whole charger faults too (connector 0): the same incident, detail follows.
    await set_connector(conn, pk, 0, "Faulted", at=T + MIN, error_code="InternalError")
    assert (await evaluate_once(conn, alert_settings, now=T + 2 * MIN)).mails == 0
    (row,) = [r for r in await incidents(conn) if r["subject"] == "CB-F"]
    assert row["detail"] == "connector 0 (whole charger): InternalError; connector 1: GroundFailure"

    # One connector recovers while the other is still Faulted: stays open.
    await set_connector(conn, pk, 1, "Available", at=T + 3 * MIN)
    assert not (await evaluate_once(conn, alert_settings, now=T + 4 * MIN)).cleared
    await set_connector(conn, pk, 0, "Available", at=T + 5 * MIN)
    done = await evaluate_once(conn, alert_settings, now=T + 6 * MIN)
    assert [r["subject"] for r in done.cleared] == ["CB-F"] and done.mails == 2
    assert (await alert_mails(conn))[-1]["subject"] == "[Polaris Express] Charger CB-F no longer faulted (faulted 26 min)"


async def test_a_charger_resending_faulted_does_not_postpone_its_alert(conn, alert_settings):
    from polaris.db.repos.connectors import record_status

    pk = await add_charger(conn, "CB-R", last_seen=T, connected=True)

    async def report(status, at):
        await record_status(conn, charge_box_pk=pk, charge_box_id="CB-R", connector_id=1, status=status,
                            error_code="GroundFailure" if status == "Faulted" else "NoError", info=None,
                            vendor_id=None, vendor_error_code=None, status_at=at)

    await report("Available", T - 60 * MIN)
    await report("Faulted", T - 20 * MIN)
    await report("Faulted", T - 2 * MIN)  # the same fault, reported again
    result = await evaluate_once(conn, alert_settings, now=T)
    assert [r["subject"] for r in result.opened] == ["CB-R"]
    assert (await alert_mails(conn))[0]["subject"].endswith("faulted since 10:05 UTC (20 min)")


async def test_sync_failing_after_n_consecutive_failures_only(conn, alert_settings):
    await add_sync_run(conn, "succeeded", at=T - 60 * MIN)
    await add_sync_run(conn, "failed", at=T - 50 * MIN, error="Lago answered 500")
    await add_sync_run(conn, "failed", at=T - 40 * MIN, error="Lago answered 500")
    assert not (await evaluate_once(conn, alert_settings, now=T)).opened  # 2 of 3

    await add_sync_run(conn, "running", at=T - 35 * MIN)  # unfinished runs do not count
    assert not (await evaluate_once(conn, alert_settings, now=T)).opened

    await add_sync_run(conn, "failed", at=T - 30 * MIN, error="connect timeout to api.getlago.com")
    opened = (await evaluate_once(conn, alert_settings, now=T)).opened
    assert [(r["kind"], r["subject"]) for r in opened] == [("sync_failing", "sync")]
    assert "connect timeout to api.getlago.com" in opened[0]["detail"]
    mails = await alert_mails(conn)
    assert len(mails) == 2 and mails[0]["subject"].startswith("[Polaris Express] Billing sync failing since 09:35 UTC")
    assert "polaris sync status" in mails[0]["text"]

    await add_sync_run(conn, "failed", at=T - 20 * MIN, error="still down")
    assert (await evaluate_once(conn, alert_settings, now=T)).mails == 0

    # A partial run reached Lago: sync works again.
    await add_sync_run(conn, "partial", at=T - 10 * MIN)
    cleared = (await evaluate_once(conn, alert_settings, now=T)).cleared
    assert [r["kind"] for r in cleared] == ["sync_failing"]
    assert len(await alert_mails(conn)) == 4


async def test_outbox_stuck_when_the_oldest_mail_waits_too_long(conn, alert_settings):
    now = datetime.now(UTC)
    await conn.execute(
        "INSERT INTO app.email_outbox (to_address, category, subject, html, text, created_at) "
        "VALUES ('a@example.com', 'welcome', 'Welcome', '<p>hi</p>', 'hi', $1)",
        now - 40 * MIN,
    )
    # Without an email worker mail stays in the outbox by design: not an incident.
    assert not (await evaluate_once(conn, alert_settings, now=now)).opened

    with_worker = alert_settings.model_copy(update={"CF_EMAIL_WORKER_URL": "https://mail.example.com"})
    opened = (await evaluate_once(conn, with_worker, now=now)).opened
    assert [(r["kind"], r["subject"], r["detail"]) for r in opened] == [("outbox_stuck", "email_outbox", "1 mail(s) waiting, 0 held")]
    mails = await alert_mails(conn)
    assert len(mails) == 2 and "Email outbox stuck since" in mails[0]["subject"]
    assert "CF_EMAIL_WORKER_URL" in mails[0]["text"]

    # The alert's own mail is young; once the old one goes out the outbox is moving again.
    await conn.execute("UPDATE app.email_outbox SET status = 'sent', sent_at = now() WHERE category = 'welcome'")
    cleared = (await evaluate_once(conn, with_worker, now=now + MIN)).cleared
    assert [r["kind"] for r in cleared] == ["outbox_stuck"]
    assert (await alert_mails(conn))[-1]["subject"] == "[Polaris Express] Email outbox moving again (stuck 41 min)"


async def test_no_recipients_records_and_logs_without_mail(conn, settings, capsys):
    assert settings.alert_recipients == []
    await add_charger(conn, "CB-1", last_seen=T - 23 * MIN)
    result = await evaluate_once(conn, settings, now=T)
    assert len(result.opened) == 1 and result.mails == 0
    (row,) = await incidents(conn)
    assert row["kind"] == "charger_offline" and row["open_notified_at"] is None
    assert await alert_mails(conn) == []
    logged = capsys.readouterr()
    assert "operator alert opened" in logged.out + logged.err

    await conn.execute("UPDATE ocpp.charge_boxes SET connected = true WHERE charge_box_id = 'CB-1'")
    assert len((await evaluate_once(conn, settings, now=T + MIN)).cleared) == 1
    assert await alert_mails(conn) == []

    # Recipients configured later: an incident still open is mailed then, once.
    await add_charger(conn, "CB-2", last_seen=T - 23 * MIN)
    await evaluate_once(conn, settings, now=T + 2 * MIN)
    later = settings.model_copy(update={"ALERT_EMAILS": "oncall@example.com"})
    assert (await evaluate_once(conn, later, now=T + 3 * MIN)).mails == 1
    assert (await evaluate_once(conn, later, now=T + 4 * MIN)).mails == 0
    assert [m["subject"] for m in await alert_mails(conn)] == ["[Polaris Express] Charger CB-2 offline since 10:02 UTC (26 min)"]


async def test_two_engines_at_once_mail_each_incident_once(pool, alert_settings):
    async with pool.acquire() as conn:
        for i in range(20):
            await add_charger(conn, f"CB-{i:02}", last_seen=T - 30 * MIN)

    async def engine(now):
        async with pool.acquire() as conn:
            return await evaluate_once(conn, alert_settings, now=now)

    for step in range(3):
        await asyncio.gather(engine(T + step * MIN), engine(T + step * MIN))
    async with pool.acquire() as conn:
        assert len(await incidents(conn)) == 20
        mails = await alert_mails(conn)
    assert len(mails) == 40
    assert len({(m["to_address"], m["subject"]) for m in mails}) == 40


async def test_an_engine_skips_while_another_holds_the_lock(pool, alert_settings):
    async with pool.acquire() as holder, pool.acquire() as conn:
        await add_charger(conn, "CB-1", last_seen=T - 30 * MIN)
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", ALERTS_LOCK_KEY)
            skipped = await evaluate_once(conn, alert_settings, now=T)
            assert not skipped.ran and await alert_mails(conn) == []
        result = await evaluate_once(conn, alert_settings, now=T)
        assert result.ran and result.mails == 2


# --- the web process ---------------------------------------------------------------------


@pytest.fixture
def web_settings(settings):
    return settings.model_copy(
        update={"SSE_TRANSPORT": "memory", "STEVE_BASE_URL": "http://127.0.0.1:9", "ALERT_EMAILS": RECIPIENTS}
    )


@pytest.fixture
def web_app(web_settings):
    app = app_factory(web_settings, pool_size=5)
    app[ALERT_PERIOD] = 0.05
    return app


async def test_the_web_process_opens_incidents_in_the_background_and_lists_them(api, conn, operator):
    await add_charger(conn, "CB-WEB", last_seen=datetime.now(UTC) - 2 * timedelta(hours=1))
    async with asyncio.timeout(10):
        while not await alert_mails(conn):  # noqa: ASYNC110 - the database is polled, no event to wait on
            await asyncio.sleep(0.05)
    (row,) = await incidents(conn)
    assert (row["kind"], row["subject"]) == ("charger_offline", "CB-WEB")

    resp = await api.get("/api/admin/v1/alerts", headers=operator.headers)
    assert resp.status == 200
    (item,) = (await resp.json())["items"]
    assert (item["kind"], item["subject"], item["cleared_at"]) == ("charger_offline", "CB-WEB", None)

    await conn.execute("UPDATE ocpp.charge_boxes SET connected = true WHERE charge_box_id = 'CB-WEB'")
    async with asyncio.timeout(10):
        while (await incidents(conn))[0]["cleared_at"] is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert (await (await api.get("/api/admin/v1/alerts", headers=operator.headers)).json())["items"] == []
    items = (await (await api.get("/api/admin/v1/alerts?all=true", headers=operator.headers)).json())["items"]
    assert [i["subject"] for i in items] == ["CB-WEB"] and items[0]["cleared_at"] is not None
    assert (await api.get("/api/admin/v1/alerts")).status == 401


async def test_a_site_over_its_grid_limit_for_a_minute_alerts_and_clears(conn, alert_settings):
    from polaris.db.repos import sites

    await sites.set_site_limits(conn, "Garage", {"limit_amps": 63})
    site_id = await conn.fetchval("SELECT id FROM ocpp.sites WHERE name = 'Garage'")
    await sites.save_site_load(conn, site_id, controller="loadmgmt:x", drawn=[70.0, 63.0, 12.0],
                               allocated=[63.0, 63.0, 12.0], over=True)
    now = datetime.now(UTC)
    assert not (await evaluate_once(conn, alert_settings, now=now)).opened  # not a minute yet
    opened = (await evaluate_once(conn, alert_settings, now=now + 2 * MIN)).opened
    assert [(r["kind"], r["subject"]) for r in opened] == [("site_over_limit", "Garage")]
    assert "L1 70.0 A" in opened[0]["detail"]
    mails = await alert_mails(conn)
    assert len(mails) == 2 and "Site Garage over its grid limit since" in mails[0]["subject"]
    # Still over on the next run: no second mail. Under again: cleared, one mail each.
    await sites.save_site_load(conn, site_id, controller="loadmgmt:x", drawn=[70.0, 63.0, 12.0],
                               allocated=[63.0, 63.0, 12.0], over=True)
    assert not (await evaluate_once(conn, alert_settings, now=now + 3 * MIN)).opened
    await sites.save_site_load(conn, site_id, controller="loadmgmt:x", drawn=[60.0, 60.0, 12.0],
                               allocated=[63.0, 63.0, 12.0], over=False)
    cleared = (await evaluate_once(conn, alert_settings, now=now + 4 * MIN)).cleared
    assert [r["kind"] for r in cleared] == ["site_over_limit"]
    assert len(await alert_mails(conn)) == 4
