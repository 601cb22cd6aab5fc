"""Postgres NOTIFY channels shared by the processes (payloads are JSON objects)."""

# OCPP server -> web, sync: {"event": "started"|"stopped", "transaction_id", "charge_box_id",
#                           "connector_id", "id_tag"}
TRANSACTION_EVENTS = "transaction_events"
# OCPP server -> web: {"event": "status"|"connected"|"disconnected"|"boot", "charge_box_id",
#                     "connector_id"?, "status"?, "error_code"?}
CHARGER_EVENTS = "charger_events"
# web -> sync: run a sync now. Payload: {"requested_by": email} (may be empty).
SYNC_TRIGGER = "sync_trigger"
# web -> ocpp (when several OCPP instances run): route a command to the instance holding a charger.
OCPP_COMMANDS = "ocpp_commands"
