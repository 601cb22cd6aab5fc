"""The simulated charger against a real WebSocket central system (the bare reference server)."""

from __future__ import annotations

import asyncio

import pytest
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from polaris.sim.charger import SimulatedCharger
from polaris.sim.errors import ChargerRefused


def energy_wh(meter_values_payload: dict) -> float:
    for mv in meter_values_payload["meter_value"]:
        for sv in mv["sampled_value"]:
            if sv.get("measurand") == "Energy.Active.Import.Register":
                return float(sv["value"]) * (1000 if sv.get("unit") == "kWh" else 1)
    raise AssertionError("no energy register in meter values")


def power_w(meter_values_payload: dict) -> float:
    for mv in meter_values_payload["meter_value"]:
        for sv in mv["sampled_value"]:
            if sv.get("measurand") == "Power.Active.Import":
                return float(sv["value"])
    raise AssertionError("no power in meter values")


async def eventually(check, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_boot_reports_every_connector_and_takes_the_servers_heartbeat_interval(central_system, make_charger):
    charger = await make_charger(connectors=2)
    assert charger.connected and charger.registration_status == "Accepted"
    assert charger.heartbeat_interval == 60 == int(charger.configuration.values()["HeartbeatInterval"])
    await eventually(lambda: len(central_system.actions("SIM-0001", "StatusNotification")) == 3)
    boot = central_system.actions("SIM-0001", "BootNotification")[0]
    assert boot["vendor"] == "Polaris" and boot["firmware_version"] == "1.0.0"
    statuses = central_system.actions("SIM-0001", "StatusNotification")
    assert [s["connector_id"] for s in statuses] == [0, 1, 2]
    assert {s["status"] for s in statuses} == {"Available"}
    assert all(s["timestamp"].endswith("+00:00") for s in statuses)


async def test_auto_sessions_charge_with_a_climbing_energy_register(central_system, make_charger):
    charger = await make_charger(auto_sessions=True, session_seconds=3, idle_seconds=0.1, meter_interval=1)
    await charger.wait_for(lambda c: len(c.completed_transactions) >= 1, timeout=15)

    def statuses():
        return [p["status"] for p in central_system.actions("SIM-0001", "StatusNotification") if p["connector_id"] == 1]

    await eventually(lambda: len(statuses()) >= 5)
    got = central_system.received["SIM-0001"]
    actions = [a for a, _ in got]
    first_start = actions.index("StartTransaction")
    assert actions[first_start - 1] in ("StatusNotification", "Authorize")
    start = central_system.actions("SIM-0001", "StartTransaction")[0]
    stop = central_system.actions("SIM-0001", "StopTransaction")[0]
    meters = [p for p in central_system.actions("SIM-0001", "MeterValues") if p["transaction_id"] == stop["transaction_id"]]
    assert start["id_tag"] == "TAG-0001" and start["connector_id"] == 1
    assert stop["transaction_id"] == charger.completed_transactions[0].transaction_id
    assert stop["meter_stop"] >= start["meter_start"]
    readings = [energy_wh(m) for m in meters]
    assert readings == sorted(readings) and readings[0] >= start["meter_start"]
    assert readings[-1] <= stop["meter_stop"]
    assert all(1_000 <= power_w(m) <= 22_000 for m in meters)
    # transactionData brackets the session with Transaction.Begin and Transaction.End readings.
    contexts = [sv["context"] for mv in stop["transaction_data"] for sv in mv["sampled_value"]]
    assert contexts == ["Transaction.Begin", "Transaction.End"]
    assert statuses()[:5] == ["Available", "Preparing", "Charging", "Finishing", "Available"]


async def test_remote_start_starts_a_session_and_remote_stop_ends_it(central_system, make_charger):
    charger = await make_charger(session_seconds=3600, meter_interval=1)
    res = await central_system.call("SIM-0001", call.RemoteStartTransaction(id_tag="APP-START", connector_id=1))
    assert res.status == "Accepted"
    await charger.wait_for(lambda c: c.transaction_ids[1] is not None)
    tx = charger.transaction_ids[1]
    start = central_system.actions("SIM-0001", "StartTransaction")[-1]
    assert start["id_tag"] == "APP-START"
    # A remote start is not re-authorized (AuthorizeRemoteTxRequests=false, the usual default).
    assert central_system.actions("SIM-0001", "Authorize") == []
    busy = await central_system.call("SIM-0001", call.RemoteStartTransaction(id_tag="OTHER", connector_id=1))
    assert busy.status == "Rejected"
    assert (await central_system.call("SIM-0001", call.RemoteStopTransaction(transaction_id=tx + 100))).status == "Rejected"
    assert (await central_system.call("SIM-0001", call.RemoteStopTransaction(transaction_id=tx))).status == "Accepted"
    await charger.wait_for(lambda c: c.completed_transactions)
    stop = central_system.actions("SIM-0001", "StopTransaction")[-1]
    assert stop["transaction_id"] == tx and stop["reason"] == "Remote"
    assert charger.last_request["RemoteStopTransaction"] == {"transactionId": tx}


async def test_soft_reset_ends_sessions_then_reboots(central_system, make_charger):
    charger = await make_charger(session_seconds=3600)
    charger.start_session(1)
    await charger.wait_for(lambda c: c.transaction_ids[1] is not None)
    assert (await central_system.call("SIM-0001", call.Reset(type="Soft"))).status == "Accepted"
    await charger.wait_for(lambda c: c.boot_count == 2 and c.connected)
    stop = central_system.actions("SIM-0001", "StopTransaction")[-1]
    assert stop["reason"] == "SoftReset"
    assert charger.connect_count == 2
    assert charger.statuses[1] == "Available"


async def test_hard_reset_sends_the_cut_sessions_stop_after_the_new_boot(central_system, make_charger):
    charger = await make_charger(session_seconds=3600)
    charger.start_session(1)
    await charger.wait_for(lambda c: c.transaction_ids[1] is not None)
    tx = charger.transaction_ids[1]
    await central_system.call("SIM-0001", call.Reset(type="Hard"))
    await charger.wait_for(lambda c: c.boot_count == 2 and c.completed_transactions)
    actions = [a for a, _ in central_system.received["SIM-0001"]]
    last_boot = len(actions) - 1 - actions[::-1].index("BootNotification")
    assert "StopTransaction" in actions[last_boot:]
    stop = central_system.actions("SIM-0001", "StopTransaction")[-1]
    assert stop["transaction_id"] == tx and stop["reason"] == "HardReset"


@pytest.mark.parametrize("forget", [False, True])
async def test_power_cut_reboots_and_stops_or_forgets_the_session(central_system, make_charger, forget):
    charger = await make_charger(session_seconds=3600)
    charger.start_session(1)
    await charger.wait_for(lambda c: c.transaction_ids[1] is not None)
    await charger.power_cut(forget=forget)
    await charger.wait_for(lambda c: c.boot_count == 2 and c.connected and c.queued_messages == 0)
    stops = central_system.actions("SIM-0001", "StopTransaction")
    if forget:
        assert stops == [] and charger.completed_transactions == []  # a zombie on the server's side
    else:
        await charger.wait_for(lambda c: c.completed_transactions)
        assert [s["reason"] for s in central_system.actions("SIM-0001", "StopTransaction")] == ["PowerLoss"]
    assert charger.statuses[1] == "Available"


async def test_transaction_messages_wait_out_an_outage_and_go_out_in_order(central_system, make_charger):
    charger = await make_charger(
        session_seconds=3, meter_interval=1, configuration={"AllowOfflineTxForUnknownId": "true"}
    )
    port = central_system.port
    await central_system.stop()
    await eventually(lambda: not charger.connected)
    assert charger.start_session(1)
    await charger.wait_for(lambda c: c.connectors[1].session is None, timeout=10)
    assert charger.queued_messages >= 3  # start, meter values, stop: nothing was answered yet
    await central_system.start("127.0.0.1", port)
    await charger.wait_for(lambda c: c.connected and c.queued_messages == 0, timeout=15)
    actions = [a for a, _ in central_system.received["SIM-0001"] if a in ("StartTransaction", "MeterValues", "StopTransaction")]
    assert actions[0] == "StartTransaction" and actions[-1] == "StopTransaction"
    assert set(actions[1:-1]) == {"MeterValues"}
    start = central_system.actions("SIM-0001", "StartTransaction")[-1]
    stop = central_system.actions("SIM-0001", "StopTransaction")[-1]
    # Timestamps are those of the events, not of the late delivery.
    assert start["timestamp"] < stop["timestamp"]
    assert charger.completed_transactions[-1].transaction_id == stop["transaction_id"]


async def test_configuration_store_answers_like_a_charger(central_system, make_charger):
    charger = await make_charger()
    cs = central_system

    async def change(key, value):
        return (await cs.call("SIM-0001", call.ChangeConfiguration(key=key, value=value))).status

    assert await change("HeartbeatInterval", "120") == "Accepted"
    assert charger.heartbeat_interval == 120
    assert await change("NumberOfConnectors", "4") == "Rejected"  # read-only
    assert await change("HeartbeatInterval", "often") == "Rejected"
    assert await change("NoSuchKey", "1") == "NotSupported"
    assert await change("MeterValuesSampledData", "Energy.Active.Import.Register,Celcius") == "Rejected"
    res = await cs.call("SIM-0001", call.GetConfiguration(key=["HeartbeatInterval", "NumberOfConnectors", "Nope"]))
    assert res.configuration_key == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "120"},
        {"key": "NumberOfConnectors", "readonly": True, "value": "1"},
    ]
    assert res.unknown_key == ["Nope"]
    everything = await cs.call("SIM-0001", call.GetConfiguration())
    keys = {k["key"] for k in everything.configuration_key}
    assert "MeterValueSampleInterval" in keys and "AuthorizationKey" not in keys
    # A new AuthorizationKey is used from the next connection on.
    assert await change("AuthorizationKey", "short") == "Rejected"
    assert await change("AuthorizationKey", "a-new-key-of-20-char") == "Accepted"
    assert charger.password == "a-new-key-of-20-char"


async def test_availability_reservation_and_unlock(central_system, make_charger):
    charger = await make_charger(connectors=2, session_seconds=3600)
    cs = central_system
    assert (await cs.call("SIM-0001", call.ChangeAvailability(connector_id=2, type="Inoperative"))).status == "Accepted"
    await charger.wait_for(lambda c: c.statuses[2] == "Unavailable")
    assert not charger.start_session(2)
    assert (await cs.call("SIM-0001", call.ChangeAvailability(connector_id=3, type="Inoperative"))).status == "Rejected"
    charger.start_session(1)
    await charger.wait_for(lambda c: c.transaction_ids[1] is not None)
    # Inoperative during a session is Scheduled and applied when the session ends.
    assert (await cs.call("SIM-0001", call.ChangeAvailability(connector_id=0, type="Inoperative"))).status == "Scheduled"
    assert (await cs.call("SIM-0001", call.UnlockConnector(connector_id=1))).status == "Unlocked"
    await charger.wait_for(lambda c: c.completed_transactions and c.statuses[1] == "Unavailable")
    assert central_system.actions("SIM-0001", "StopTransaction")[-1]["reason"] == "UnlockCommand"
    assert (await cs.call("SIM-0001", call.UnlockConnector(connector_id=9))).status == "NotSupported"
    assert (await cs.call("SIM-0001", call.ChangeAvailability(connector_id=0, type="Operative"))).status == "Accepted"
    await charger.wait_for(lambda c: c.statuses == {0: "Available", 1: "Available", 2: "Available"})

    expiry = "2099-01-01T00:00:00+00:00"
    res = await cs.call("SIM-0001", call.ReserveNow(connector_id=1, expiry_date=expiry, id_tag="RES-TAG", reservation_id=7))
    assert res.status == "Accepted"
    await charger.wait_for(lambda c: c.statuses[1] == "Reserved")
    assert not charger.start_session(1, "SOMEONE-ELSE")
    res = await cs.call("SIM-0001", call.ReserveNow(connector_id=0, expiry_date=expiry, id_tag="X", reservation_id=8))
    assert res.status == "Rejected"  # ReserveConnectorZeroSupported is false
    assert (await cs.call("SIM-0001", call.CancelReservation(reservation_id=99))).status == "Rejected"
    assert (await cs.call("SIM-0001", call.CancelReservation(reservation_id=7))).status == "Accepted"
    await charger.wait_for(lambda c: c.statuses[1] == "Available")
    await cs.call("SIM-0001", call.ReserveNow(connector_id=2, expiry_date=expiry, id_tag="RES-TAG", reservation_id=9))
    assert charger.start_session(2, "res-tag")  # id tags compare case-insensitively
    await charger.wait_for(lambda c: c.transaction_ids[2] is not None)
    assert central_system.actions("SIM-0001", "StartTransaction")[-1]["reservation_id"] == 9


async def test_firmware_diagnostics_and_trigger_messages(central_system, make_charger):
    charger = await make_charger()
    cs = central_system
    res = await cs.call("SIM-0001", call.GetDiagnostics(location="ftp://example.com/upload"))
    assert res.file_name.startswith("diagnostics-SIM-0001-")
    await eventually(lambda: [p["status"] for p in cs.actions("SIM-0001", "DiagnosticsStatusNotification")] == ["Uploading", "Uploaded"])
    await cs.call("SIM-0001", call.UpdateFirmware(location="https://example.com/fw.bin", retrieve_date="2000-01-01T00:00:00Z"))
    await eventually(lambda: [p["status"] for p in cs.actions("SIM-0001", "FirmwareStatusNotification")][-1:] == ["Installed"])
    fw = [p["status"] for p in cs.actions("SIM-0001", "FirmwareStatusNotification")]
    assert fw == ["Downloading", "Downloaded", "Installing", "Installed"]
    boots = cs.actions("SIM-0001", "BootNotification")
    assert len(boots) == 2 and boots[1]["firmware_version"] != boots[0]["firmware_version"]

    for message in ("Heartbeat", "StatusNotification", "MeterValues", "BootNotification", "FirmwareStatusNotification"):
        before = len(cs.actions("SIM-0001", message))
        res = await cs.call("SIM-0001", call.TriggerMessage(requested_message=message, connector_id=1))
        assert res.status == "Accepted"
        await eventually(lambda m=message, b=before: len(cs.actions("SIM-0001", m)) > b)
    assert cs.actions("SIM-0001", "MeterValues")[-1]["meter_value"][0]["sampled_value"][0]["context"] == "Trigger"
    res = await cs.call("SIM-0001", call.TriggerMessage(requested_message="Heartbeat", connector_id=5))
    assert res.status == "Rejected"
    assert charger.requests["TriggerMessage"] == 6


async def test_local_list_cache_and_data_transfer(central_system, make_charger):
    charger = await make_charger()
    cs = central_system
    assert (await cs.call("SIM-0001", call.GetLocalListVersion())).list_version == 0
    full = call.SendLocalList(
        list_version=3,
        update_type="Full",
        local_authorization_list=[{"id_tag": "A"}, {"id_tag": "B", "id_tag_info": {"status": "Blocked"}}],
    )
    # The library sends the list with camelCase keys on the wire.
    assert (await cs.call("SIM-0001", full)).status == "Accepted"
    assert charger.local_list == {"B": {"status": "Blocked"}}
    stale = call.SendLocalList(list_version=2, update_type="Differential", local_authorization_list=[])
    assert (await cs.call("SIM-0001", stale)).status == "VersionMismatch"
    assert (await cs.call("SIM-0001", call.GetLocalListVersion())).list_version == 3
    assert (await cs.call("SIM-0001", call.ClearCache())).status == "Accepted"
    echo = await cs.call("SIM-0001", call.DataTransfer(vendor_id="Polaris", message_id="ping", data="hello"))
    assert (echo.status, echo.data) == ("Accepted", "hello")
    other = await cs.call("SIM-0001", call.DataTransfer(vendor_id="com.example"))
    assert other.status == "UnknownVendorId"


async def test_charging_profiles_limit_power_and_shape_the_composite_schedule(central_system, make_charger):
    charger = await make_charger(session_seconds=3600, meter_interval=1)
    cs = central_system
    profile = {
        "charging_profile_id": 1,
        "stack_level": 0,
        "charging_profile_purpose": "TxDefaultProfile",
        "charging_profile_kind": "Absolute",
        "charging_schedule": {"charging_rate_unit": "W", "charging_schedule_period": [{"start_period": 0, "limit": 3000}]},
    }
    res = await cs.call("SIM-0001", call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile))
    assert res.status == "Accepted"
    tx_profile = {**profile, "charging_profile_id": 2, "charging_profile_purpose": "TxProfile"}
    res = await cs.call("SIM-0001", call.SetChargingProfile(connector_id=1, cs_charging_profiles=tx_profile))
    assert res.status == "Rejected"  # no transaction on that connector
    sched = await cs.call("SIM-0001", call.GetCompositeSchedule(connector_id=1, duration=600, charging_rate_unit="W"))
    assert sched.status == "Accepted"
    assert sched.charging_schedule["charging_schedule_period"][0]["limit"] == 3000
    charger.start_session(1)
    await eventually(lambda: any(p.get("transaction_id") for p in cs.actions("SIM-0001", "MeterValues")))
    mv = [p for p in cs.actions("SIM-0001", "MeterValues") if p.get("transaction_id")][0]
    assert power_w(mv) <= 3000
    cleared = await cs.call("SIM-0001", call.ClearChargingProfile(id=1))
    assert cleared.status == "Accepted" and charger.charging_profiles == {}
    again = await cs.call("SIM-0001", call.ClearChargingProfile(id=1))
    assert again.status == "Unknown"


async def test_boot_pending_is_retried_after_the_interval(central_system, make_charger, reference_module):
    class PendingFirst(reference_module.ChargePoint):
        @on(Action.boot_notification)
        def on_boot_notification(self, **kwargs):
            self._record("BootNotification", kwargs)
            first = len(self.server.actions(self.id, "BootNotification")) == 1
            return call_result.BootNotification(
                current_time="2026-01-01T00:00:00+00:00", interval=1 if first else 60,
                status="Pending" if first else "Accepted",
            )

    central_system.charge_point_class = PendingFirst
    charger = await make_charger(start=False)
    await charger.start(require_accepted=False)
    assert charger.registration_status == "Pending" and not charger.connected
    # Pending: nothing but the boot goes out until the interval has passed and a boot is Accepted.
    await charger.wait_for(lambda c: c.connected, timeout=5)
    assert charger.registration_status == "Accepted" and charger.boot_count == 2
    actions = [a for a, _ in central_system.received["SIM-0001"]]
    assert actions[:2] == ["BootNotification", "BootNotification"]


async def test_a_callerror_to_the_boot_means_reconnect_and_boot_again(central_system, make_charger, reference_module):
    class FailsFirstBoot(reference_module.ChargePoint):
        @on(Action.boot_notification)
        def on_boot_notification(self, **kwargs):
            self._record("BootNotification", kwargs)
            if len(self.server.actions(self.id, "BootNotification")) == 1:
                raise RuntimeError("database is restarting")  # the library answers CALLERROR InternalError
            return call_result.BootNotification(current_time="2026-01-01T00:00:00+00:00", interval=60, status="Accepted")

    central_system.charge_point_class = FailsFirstBoot
    charger = await make_charger(start=False)
    await charger.start(timeout=10)
    assert charger.connect_count == 2 and charger.boot_count == 1
    assert "CALLERROR" in (charger.last_error or "")


@pytest.fixture
async def refusing_server():
    """A WebSocket server that refuses every handshake with 401, as ours does for a wrong key."""

    def refuse(connection, request):
        return Response(401, "Unauthorized", Headers([("WWW-Authenticate", 'Basic realm="OCPP"')]), b"")

    async with serve(lambda ws: None, "127.0.0.1", 0, process_request=refuse) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ocpp"


async def test_start_raises_a_clear_error_on_http_401(refusing_server):
    charger = SimulatedCharger(refusing_server, "SIM-0001", "wrong-password-123", id_tag="T", reconnect_max_delay=0.2)
    with pytest.raises(ChargerRefused, match="HTTP 401") as info:
        await charger.start(timeout=5)
    assert info.value.status_code == 401
    assert not charger.connected


async def test_start_says_what_went_wrong_when_nothing_listens(unused_tcp_port):
    from polaris.sim.errors import SimError

    charger = SimulatedCharger(f"ws://127.0.0.1:{unused_tcp_port}/ocpp", "SIM-0001", None, id_tag="T", reconnect_max_delay=0.2)
    with pytest.raises(SimError, match="cannot connect"):
        await charger.start(timeout=1)
