"""The OCPP central system (`polaris ocpp`): chargers over WebSocket, commands over HTTP.

The version-neutral core:
  errors.py       shared exceptions (DB_UNAVAILABLE, FrameError, CallErrorAnswer, CommandError...)
  session.py      one connection: frames in, dispatch to handlers, one outgoing call at a time
  context.py      OcppContext: what a connection may use (pool, settings, hooks, metrics,
                  presence, journal, spawn), handed to it instead of the server
  admission.py    path, id, subprotocol, security profile and credentials before the upgrade
  limits.py       admission limits: back-off, unknown-id cache, connection and message caps
  presence.py     last-seen / heartbeat / deferred-status buffers, connection-state batches
  journal.py      the message journal: one transaction per command, with its effects
  operations.py   Operation: validate, prepare, after (one table per version)
  commands.py     send_command: a command to a charger, here or routed
  routing.py      commands for chargers held by another instance, through Postgres
  jobs.py         Job / JobRunner: the server's maintenance jobs
  maintenance.py  the stuck-transaction check (a job)
  versions.py     Versions: which handler class a connecting charger gets
  core.py         what charger messages do, version-neutral (boot, status, authorize,
                  transactions, meter values, DataTransfer): each version's handlers call it
  authorize.py, parsing.py, hooks.py, metrics.py: id-tag decisions, tolerant reading of
                  charger data, the web process's hooks, Prometheus metrics
One package per OCPP version, thin over the core (only server.py imports them):
  v16/            charge_point.py (1.6 handlers), protocol.py (framing, schema, error codes),
                  operations.py (the 1.6 command table)
The process: server.py (OcppServer: wiring and the registry of connections), api.py (the
command API), steve_api.py + steve_operations.py (SteVe's REST API beside it, over the same
command code), main.py (run both until SIGTERM).
"""
