-- Signatures of the OCPP hooks' requests seen lately, so a captured request is refused if
-- sent again within its timestamp window (polaris.services.hook_guard). Unlogged: a crash
-- empties it, which costs only the few minutes of replay protection a restart takes anyway.
CREATE UNLOGGED TABLE app.hook_signatures (
    signature   bytea PRIMARY KEY,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hook_signatures_seen_idx ON app.hook_signatures (seen_at);
