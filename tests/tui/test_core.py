"""The console's core (no UI): SSE grammar, the chargers store, action forms, error decoding."""

from __future__ import annotations

import httpx
import pytest

from polaris.tui.api_client import ApiError, Unauthorized, decode, quote
from polaris.tui.charger_store import ChargerStore, StatusUpdate, update_from_event
from polaris.tui.events import LiveEvent, SSEParser
from polaris.tui.models import Charger, Connector, summarize_status
from polaris.tui.operations import BY_KEY, build_body


def feed(parser: SSEParser, text: str) -> list[LiveEvent]:
    return [e for line in text.split("\n") if (e := parser.feed(line)) is not None]


def test_sse_parser_follows_the_event_stream_grammar():
    p = SSEParser()
    events = feed(
        p,
        ": keep-alive\n"
        "retry: 3000\n"
        "id: 41\nevent: charger.status\ndata: {\"charge_box_id\": \"CP-1\",\n"
        "data:  \"status\": \"Faulted\"}\n\n"
        "data: plain text\n\n"
        "id: 42\nevent: empty\n\n",
    )
    assert [e.type for e in events] == ["charger.status", "message"]
    assert events[0].data == {"charge_box_id": "CP-1", "status": "Faulted"}
    assert events[0].id == "41"
    assert events[1].data == "plain text"
    # An event with no data is not dispatched, but its id still counts for resuming.
    assert p.last_event_id == "42"
    assert p.retry_ms == 3000


def charger(cid: str, connected=True, *statuses: str, site="Depot") -> Charger:
    return Charger(
        charge_box_id=cid,
        connected=connected,
        site_name=site,
        connectors=[Connector(connector_id=i + 1, status=s) for i, s in enumerate(statuses)],
    )


def test_status_summary_is_the_worst_connector():
    assert summarize_status(False, [(1, "Charging")]) == "Offline"
    assert summarize_status(True, [(0, "Available"), (1, "Charging"), (2, "Faulted")]) == "Faulted"
    assert summarize_status(True, [(0, "Unavailable"), (1, "Available")]) == "Available"
    assert summarize_status(True, []) == "Unknown"


def test_store_applies_a_batch_and_reports_touched_rows():
    s = ChargerStore()
    s.load([charger("CP-1", True, "Available"), charger("CP-2", False), charger("CP-3", True, "Charging")])
    touched, reshaped = s.apply(
        [
            StatusUpdate("CP-1", 1, "Faulted", "GroundFailure"),
            StatusUpdate("CP-2", connected=True),
            StatusUpdate("NOT-LOADED", 1, "Available"),
        ]
    )
    assert touched == {0, 1} and reshaped is False
    assert s.rows[0].status == "Faulted" and s.rows[0].error_code == "GroundFailure"
    assert s.rows[1].connected is True
    assert s.counts() == {"total": 3, "online": 3, "offline": 0, "charging": 1, "faulted": 1}


def test_last_message_is_any_message_not_only_heartbeats():
    # A simulated charger sends status and meter values but rarely a Heartbeat: the list
    # said "never" for a charger that spoke a second ago.
    from datetime import UTC, datetime, timedelta

    from polaris.tui.widgets.charger_table import age

    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    c = charger("CP-1", True, "Charging")
    c.last_seen_at = now - timedelta(seconds=12)
    s = ChargerStore()
    s.load([c])
    assert s.rows[0].last_heartbeat_at is None
    assert age(s.rows[0].last_seen_at, now) == "12s ago"
    s.apply([StatusUpdate("CP-1", 1, "SuspendedEV", seen_at=now)])
    assert s.rows[0].last_seen_at == now
    s.apply([StatusUpdate("CP-1", connected=False, seen_at=now + timedelta(seconds=5))])
    assert s.rows[0].last_seen_at == now, "going away is not a message from the charger"


def test_store_filters_and_reshapes_when_a_row_leaves_the_filter():
    s = ChargerStore()
    s.load([charger(f"CP-{i}", True, "Available") for i in range(5)])
    s.set_filter(status="faulted")
    assert s.view == []
    _, reshaped = s.apply([StatusUpdate("CP-3", 1, "Faulted")])
    assert reshaped and s.view == [3] and s.row_at(0).charge_box_id == "CP-3"
    s.set_filter(status="all", search="cp-1")
    assert [s.row_at(i).charge_box_id for i in range(len(s.view))] == ["CP-1"]
    assert s.line_of("CP-1") == 0 and s.line_of("CP-2") is None
    with pytest.raises(ValueError, match="unknown filter"):
        s.set_filter(status="sideways")


def test_events_become_status_updates():
    u = update_from_event(LiveEvent("charger.status", {"charge_box_id": "CP-1", "connector_id": 2, "status": "Charging"}))
    assert (u.charge_box_id, u.connector_id, u.status) == ("CP-1", 2, "Charging")
    u = update_from_event(LiveEvent("charger.disconnected", {"charge_box_id": "CP-1"}))
    assert u.connected is False
    assert update_from_event(LiveEvent("transaction.started", {"charge_box_id": "CP-1"})) is None
    assert update_from_event(LiveEvent("charger.status", "garbage")) is None


def test_action_forms_validate_for_people():
    start = BY_KEY["start"]
    assert build_body(start, {"connectorId": "2", "idTag": "CARD1"}) == {"connectorId": 2, "idTag": "CARD1"}
    with pytest.raises(ValueError, match="Connector must be a whole number"):
        build_body(start, {"connectorId": "two", "idTag": "CARD1"})
    with pytest.raises(ValueError, match="Card \\(idTag\\) is required"):
        build_body(start, {"connectorId": "1"})
    assert build_body(BY_KEY["hard_reset"], {}) == {"type": "Hard"}
    assert build_body(BY_KEY["availability"], {"connectorId": "0", "type": "operative"}) == {
        "connectorId": 0,
        "type": "Operative",
    }
    with pytest.raises(ValueError, match="one of Operative, Inoperative"):
        build_body(BY_KEY["availability"], {"connectorId": "0", "type": "maybe"})
    assert build_body(BY_KEY["get_config"], {"key": "HeartbeatInterval, MeterValueSampleInterval"}) == {
        "key": ["HeartbeatInterval", "MeterValueSampleInterval"]
    }
    assert build_body(BY_KEY["get_config"], {"key": ""}) == {}


def test_error_answers_become_exceptions_with_the_servers_message():
    req = httpx.Request("GET", "http://x/api/admin/v1/chargers")
    with pytest.raises(Unauthorized):
        decode(httpx.Response(401, json={"error": "unauthorized", "message": "sign in first"}, request=req))
    with pytest.raises(ApiError) as e:
        decode(httpx.Response(409, json={"error": "offline", "message": "CP-1 is not connected"}, request=req))
    assert (e.value.status, e.value.code, e.value.message) == (409, "offline", "CP-1 is not connected")
    with pytest.raises(ApiError) as e:
        decode(httpx.Response(502, text="<html>bad gateway</html>", request=req))
    assert e.value.code == "http_error"
    assert decode(httpx.Response(204, request=req)) is None


def test_charge_box_ids_are_one_path_segment():
    assert quote("A B/c%") == "A%20B%2Fc%25"
    assert quote("SIM-0001") == "SIM-0001"
