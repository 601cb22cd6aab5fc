"""The Lago client against the fake Lago's faults: retries, rate limits, lost answers, 422s."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sync_helpers import T0, add_charger, add_customer, add_session, make_client

from polaris.db.repos import billing
from polaris.sync.lago import LagoClient, LagoSetupError, LagoUnavailable, parse_rate_limit_reset


def _event(tid: str, sub: str = "sub_a", value: float = 1.5) -> dict:
    return {
        "transaction_id": tid,
        "external_subscription_id": sub,
        "code": "ev_charging_kwh",
        "timestamp": 1767600000,
        "properties": {"value": value, "kwh": value},
    }


async def test_5xx_and_timeouts_are_retried(lago_client, fake_lago):
    fake_lago.timeout_delay = 1.0  # the client times out at 0.5 s
    fake_lago.inject("500", "timeout", "500")
    result = await lago_client.send_events([_event("a"), _event("b")])
    assert result.delivered == ["a", "b"] and not result.duplicates
    assert [r[2] for r in fake_lago.requests] == [500, 500, 200]  # the timeout logged its 500 late
    assert set(fake_lago.events) == {"a", "b"}


async def test_gives_up_after_max_attempts(lago_client, fake_lago):
    fake_lago.inject("500", "500", "500", "500")
    with pytest.raises(LagoUnavailable, match="answered 500"):
        await lago_client.send_events([_event("a")])
    assert fake_lago.events == {}


async def test_429_waits_for_rate_limit_reset(fake_lago):
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    client = make_client(fake_lago, sleep=sleep)
    fake_lago.rate_limit_reset = "7"
    fake_lago.inject("429", "429")
    try:
        result = await client.send_events([_event("a")])
    finally:
        await client.aclose()
    assert result.delivered == ["a"]
    assert waits == [7.0, 7.0]


def test_rate_limit_reset_forms():
    assert parse_rate_limit_reset("3") == 3.0
    assert parse_rate_limit_reset("1700000010", now=1700000000) == 10.0
    assert parse_rate_limit_reset("1700000010000", now=1700000000) == 10.0
    assert parse_rate_limit_reset("soon") is None
    assert parse_rate_limit_reset(None) is None


async def test_lost_answer_retry_counts_duplicate_as_delivered(lago_client, fake_lago):
    fake_lago.inject("lost")
    result = await lago_client.send_events([_event("a"), _event("b")])
    # Lago stored both on the first attempt; the retry was answered value_already_exist.
    assert result.duplicates == ["a", "b"] and result.delivered == []
    assert fake_lago.duplicates_refused == 2
    assert len(fake_lago.events) == 2


async def test_422_batch_is_handled_per_event(lago_client, fake_lago):
    await lago_client.send_events([_event("old")])
    fake_lago.reject["bad"] = {"code": ["does_not_exist"]}
    result = await lago_client.send_events([_event("old"), _event("new"), _event("bad")])
    assert result.duplicates == ["old"]
    assert result.delivered == ["new"]
    assert result.invalid == {"bad": "code: does_not_exist"}
    assert set(fake_lago.events) == {"old", "new"}


async def test_wrong_key_is_a_clear_error(fake_lago):
    client = LagoClient(fake_lago.url, "wrong-key", backoff_base=0.01)
    try:
        with pytest.raises(LagoSetupError, match="refused LAGO_API_KEY"):
            await client.check_metric("ev_charging_kwh")
    finally:
        await client.aclose()


async def test_requests_logged_without_the_key(lago_client, fake_lago, caplog):
    caplog.set_level(logging.INFO)
    fake_lago.inject("500")
    await lago_client.send_events([_event("a")])
    text = caplog.text
    assert "/events/batch" in text and "500" in text
    assert fake_lago.api_key not in text


async def test_engine_keeps_events_pending_through_an_outage(conn, engine, fake_lago):
    fake_lago.add_subscription("sub_x")
    cb = await add_charger(conn)
    await add_customer(conn, "x@example.com", subscription="sub_x", tag="XXX")
    for i in range(250):
        await add_session(conn, cb, "XXX", energy_wh=100 + i)
    fake_lago.random_faults(1.0, kinds=("500",))
    # The subscription check itself fails: nothing is decided or sent, the run says why.
    result = await engine.run()
    assert result.status == "failed" and "500" in (result.error or "")
    fake_lago.clear_faults()
    await engine.run()  # plans and sends everything
    fake_lago.inject("lost", "500", "500", "500", "500")
    await add_session(conn, cb, "XXX", energy_wh=77)
    partial = await engine.run()
    assert partial.status in ("partial", "failed")
    # Lago stored the "lost" batch, but the ledger cannot know: the event stays pending...
    assert await billing.count_pending_events(conn) == 1
    assert len(fake_lago.events) == 251
    done = await engine.run()
    # ...and its resend is answered value_already_exist, which counts as delivered.
    assert done.status == "succeeded" and done.duplicates == 1
    assert fake_lago.wh_by_subscription() == {"sub_x": sum(100 + i for i in range(250)) + 77}


async def test_catalogue_calls(lago_client, fake_lago):
    for i in range(45):
        fake_lago.add_subscription(f"s{i:02d}", status="terminated" if i % 9 == 0 else "active")
    listed = await lago_client.list_subscriptions(per_page=20)  # Lago lists active ones by default
    assert len(listed) == 40 and len({s["external_id"] for s in listed}) == 40
    everything = await lago_client.list_subscriptions(**{"status[]": ["active", "terminated"]})
    assert len(everything) == 45
    assert (await lago_client.get_subscription("s03"))["plan_code"] == "ev_plan"
    assert await lago_client.get_subscription("nope") is None
    plan = await lago_client.get_plan("ev_plan")
    assert plan["charges"][0]["properties"]["amount"] == "0.35"
    customer = await lago_client.upsert_customer("cust_1", name="Ada", email="ada@example.com")
    again = await lago_client.upsert_customer("cust_1", name="Ada L.")
    assert again["lago_id"] == customer["lago_id"] and fake_lago.customers["cust_1"]["name"] == "Ada L."


async def test_plan_prices_cached_for_the_portal(conn, engine, fake_lago):
    fake_lago.add_subscription("sub_p", plan_code="night")
    fake_lago.add_plan("night", price_per_kwh="0.29")
    cb = await add_charger(conn)
    await add_customer(conn, "p@example.com", subscription="sub_p", tag="PPP")
    await add_session(conn, cb, "PPP", energy_wh=1)
    await engine.run()
    price = await billing.get_price_for_subscription(conn, "sub_p")
    assert (price["code"], price["unit_amount"], price["currency"], price["charge_model"]) == (
        "night", "0.29", "EUR", "standard"
    )


async def test_api_url_copied_with_api_v1_is_not_doubled(fake_lago):
    """Lago's OpenAPI spec lists its server as https://api.getlago.com/api/v1."""
    fake_lago.add_subscription("sub_v1")
    async with LagoClient(fake_lago.url + "/api/v1/", fake_lago.api_key) as client:
        assert client.base_url == fake_lago.url
        assert (await client.get_subscription("sub_v1"))["external_id"] == "sub_v1"
    assert fake_lago.requests[-1][1] == "/api/v1/subscriptions/sub_v1"


async def test_plan_upgrade_bills_the_active_row_not_the_terminated_one(conn, engine, lago_client, fake_lago):
    """Lago keeps the terminated row beside the new active one, with one external_id."""
    from polaris.sync import ledger

    for i in range(ledger.LIST_SUBSCRIPTIONS_ABOVE + 1):  # enough to take the listing path
        fake_lago.add_subscription(f"sub_u{i:02d}")
        fake_lago.upgrade(f"sub_u{i:02d}", "ev_plan_plus", period_started_at=T0 - timedelta(days=1))
    cb = await add_charger(conn)
    for i in range(ledger.LIST_SUBSCRIPTIONS_ABOVE + 1):
        await add_customer(conn, f"u{i}@example.com", subscription=f"sub_u{i:02d}", tag=f"U{i:02d}")
        await add_session(conn, cb, f"U{i:02d}", energy_wh=1000 + i)
    result = await engine.run()
    assert result.held == 0, result.holds_by_code
    assert sum(fake_lago.billed_wh_by_subscription().values()) == sum(1000 + i for i in range(21))
    # A single look-up names the status: a terminated or pending one is not "unknown".
    fake_lago.add_subscription("sub_gone", status="terminated")
    fake_lago.add_subscription("sub_later", status="pending")
    assert (await lago_client.get_subscription("sub_gone"))["status"] == "terminated"
    assert (await lago_client.get_subscription("sub_later"))["status"] == "pending"
    assert (await lago_client.get_subscription("sub_u00"))["plan_code"] == "ev_plan_plus"


async def test_pending_and_terminated_subscriptions_are_held_as_such(conn, engine, fake_lago):
    fake_lago.add_subscription("sub_pend", status="pending")
    fake_lago.add_subscription("sub_term", status="terminated")
    cb = await add_charger(conn)
    await add_customer(conn, "pe@example.com", subscription="sub_pend", tag="PE1")
    await add_customer(conn, "te@example.com", subscription="sub_term", tag="TE1")
    await add_session(conn, cb, "PE1", energy_wh=500)
    await add_session(conn, cb, "TE1", energy_wh=700)
    result = await engine.run()
    assert result.holds_by_code == {"inactive_subscription": 2}
    reasons = {r["unbillable_reason"] for r in await conn.fetch(
        "SELECT unbillable_reason FROM billing.transaction_sync_state")}
    assert any("is pending" in r and "never bills" in r for r in reasons), reasons
    assert any("is terminated" in r for r in reasons), reasons
    assert fake_lago.event_rows == {}


async def test_ids_carry_the_deployment_and_a_reused_id_is_held_not_counted(conn, engine, fake_lago):
    """After a restore (or beside another deployment on one Lago) an OCPP id comes back."""
    fake_lago.add_subscription("sub_re")
    cb = await add_charger(conn)
    await add_customer(conn, "re@example.com", subscription="sub_re", tag="RE1")
    tx = await add_session(conn, cb, "RE1", energy_wh=2_000)
    deployment = await billing.deployment_id(conn)
    assert deployment and len(deployment) == 10
    tid = await conn.fetchval("SELECT transaction_id FROM billing.usage_events WHERE ocpp_transaction_id = $1", tx)
    assert tid is None
    await engine.run()
    tid = await conn.fetchval("SELECT transaction_id FROM billing.usage_events WHERE ocpp_transaction_id = $1", tx)
    assert tid == f"pol_{deployment}_{int(T0.timestamp())}_tx_{tx}_final"

    # Another event under the next session's id is already in Lago (the original stack, or
    # this database before a restore), with another value: Lago answers value_already_exist.
    tx2 = await add_session(conn, cb, "RE1", energy_wh=3_000, start=T0 + timedelta(hours=3))
    clash = f"pol_{deployment}_{int((T0 + timedelta(hours=3)).timestamp())}_tx_{tx2}_final"
    fake_lago.event_rows[("sub_re", clash)] = {
        "lago_id": "x", "transaction_id": clash, "external_subscription_id": "sub_re",
        "code": "ev_charging_kwh", "timestamp": T0.timestamp(), "properties": {"value": 9.999},
    }
    result = await engine.run()
    assert result.invalid == 1 and result.duplicates == 0
    row = await conn.fetchrow(
        "SELECT unbillable_code, unbillable_reason FROM billing.transaction_sync_state WHERE transaction_id = $1", tx2
    )
    assert row["unbillable_code"] == "invalid_event" and "already used in Lago" in row["unbillable_reason"]
    assert ("GET", f"/api/v1/events/{clash}", 200) in fake_lago.requests

    # A real retry (same subscription, same value) is still counted as delivered.
    await conn.execute("UPDATE billing.usage_events SET status = 'pending' WHERE transaction_id = $1", tid)
    result = await engine.run()
    assert result.duplicates == 1 and result.invalid == 0


async def test_too_many_events_halves_the_batch_and_remembers(lago_client, fake_lago):
    """A self-hosted Lago with LAGO_EVENTS_BATCH_MAX_LENGTH=30."""
    fake_lago.batch_max = 30
    result = await lago_client.send_events([_event(f"e{i}") for i in range(100)])
    assert sorted(result.delivered) == sorted(f"e{i}" for i in range(100)) and not result.invalid
    assert lago_client.batch_max == 25 and len(fake_lago.events) == 100
    before = fake_lago.batches_received
    await lago_client.send_events([_event(f"f{i}") for i in range(50)])
    assert fake_lago.batches_received - before == 2  # 25 + 25: no more refusals


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"recurring": True}, "is recurring"),
        ({"rounding_function": "ceil", "rounding_precision": 0}, "rounds with 'ceil'"),
        ({"rounding_function": "round", "rounding_precision": 1}, "Rounding"),
        ({"expression": "ceil(event.properties.value)"}, "Expression"),
    ],
)
async def test_metrics_that_would_overbill_are_refused(lago_client, fake_lago, change, says):
    metric = fake_lago.metrics["ev_charging_kwh"]
    assert await lago_client.check_metric("ev_charging_kwh")
    metric.update(change)
    with pytest.raises(LagoSetupError, match=says) as err:
        await lago_client.check_metric("ev_charging_kwh")
    assert "in Lago" in str(err.value)


async def test_harmless_rounding_and_expression_are_accepted(lago_client, fake_lago):
    fake_lago.metrics["ev_charging_kwh"].update(
        rounding_function="round", rounding_precision=3, expression="event.properties.value"
    )
    assert await lago_client.check_metric("ev_charging_kwh")


async def test_late_usage_is_sent_into_the_open_period(conn, engine, fake_lago):
    """January is invoiced (Lago's open period starts Feb 1): a January session that arrives
    late (offline queue, backfill, released hold) must still be billed, in February."""
    from datetime import UTC, datetime

    february = datetime(2026, 2, 1, tzinfo=UTC)
    fake_lago.add_subscription("sub_late", period_started_at=february)
    cb = await add_charger(conn)
    await add_customer(conn, "late@example.com", subscription="sub_late", tag="LATE")
    tx = await add_session(conn, cb, "LATE", energy_wh=4_321, start=T0)
    await engine.run()
    assert fake_lago.billed_wh_by_subscription() == {"sub_late": 4_321}
    (event,) = fake_lago.event_rows.values()
    assert event["timestamp"] == february.timestamp()
    props = event["properties"]
    assert props["occurred_at"] == (T0 + timedelta(minutes=60)).isoformat()
    assert props["start"] == T0.isoformat() and props["billed_in_period_from"] == february.isoformat()
    overview = await billing.billing_overview(conn)
    assert (overview["late_events"], overview["late_wh"]) == (1, 4_321)
    # The ledger says what was sent, so reconcile compares like with like.
    ts = await conn.fetchval("SELECT event_timestamp FROM billing.usage_events WHERE ocpp_transaction_id = $1", tx)
    assert ts == february


async def test_reconcile_reports_kwh_lago_stored_but_will_not_bill(conn, pool, engine, lago_client, fake_lago):
    from datetime import UTC, datetime

    from polaris.sync.reconcile import reconcile

    fake_lago.add_subscription("sub_rc")
    cb = await add_charger(conn)
    await add_customer(conn, "rc@example.com", subscription="sub_rc", tag="RC1")
    await add_session(conn, cb, "RC1", energy_wh=1_000)
    await engine.run()
    window = {"code": "ev_charging_kwh", "start": datetime(2026, 1, 1, tzinfo=UTC), "end": datetime(2026, 2, 1, tzinfo=UTC)}
    (report,) = await reconcile(pool, lago_client, **window, subscriptions=["sub_rc"])
    assert report.ok and report.periods[0]["billed_kwh"] == 1.0, report.as_dict()

    # January is invoiced; an event timed in January that Lago accepted after that (as the
    # old sync sent late usage) is stored, listed, and never billed.
    fake_lago.close_period("sub_rc", datetime(2026, 1, 6, tzinfo=UTC))
    tid = "late_into_closed_period"
    fake_lago.event_rows[("sub_rc", tid)] = {
        "lago_id": "y", "transaction_id": tid, "external_subscription_id": "sub_rc", "code": "ev_charging_kwh",
        "timestamp": (T0 + timedelta(hours=2)).timestamp(), "properties": {"value": 0.5},
    }
    await conn.execute(
        """INSERT INTO billing.usage_events (transaction_id, ocpp_transaction_id, kind, external_subscription_id,
               code, event_timestamp, wh, properties, status)
           SELECT $1, ocpp_transaction_id, 'increment', 'sub_rc', 'ev_charging_kwh', $2, 500, '{}', 'sent'
           FROM billing.usage_events LIMIT 1""",
        tid, T0 + timedelta(hours=2),
    )
    (report,) = await reconcile(pool, lago_client, **window, subscriptions=["sub_rc"])
    doc = report.as_dict()
    assert not report.ok and doc["unbilled_kwh"] == 0.5, doc
    invoiced = [p for p in doc["periods"] if p["invoiced"]]
    assert invoiced and invoiced[0]["ledger_kwh"] == 1.5 and invoiced[0]["billed_kwh"] == 1.0

    # A subscription Lago does not know: events "accepted", none billed.
    await add_customer(conn, "nx@example.com", subscription="sub_nx", tag="NX1")
    await conn.execute("INSERT INTO billing.lago_subscriptions (external_id, found) VALUES ('sub_nx', false)")
    (report,) = await reconcile(pool, lago_client, **window, subscriptions=["sub_nx"])
    assert not report.ok and "no such subscription" in report.usage_problem
