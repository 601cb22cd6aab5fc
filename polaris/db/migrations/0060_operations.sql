-- On-call: test chargers (polaris smoke) and operator alerts.

-- A test charger's sessions are flagged is_test (never billed, never emailed, never
-- alerted on). `polaris smoke` registers one for the length of a run.
ALTER TABLE ocpp.charge_boxes ADD COLUMN is_test boolean NOT NULL DEFAULT false;

-- One row per incident: opened when a condition has held longer than its threshold,
-- cleared when it stops. The email for each edge is sent once (the *_notified_at
-- columns are set in the same transaction as the outbox row).
CREATE TABLE app.operator_alerts (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- What is wrong: charger_offline, charger_faulted, sync_failing, outbox_stuck.
    kind               text NOT NULL,
    -- What it is wrong with: a charge box id, 'sync', 'email_outbox'.
    subject            text NOT NULL,
    detail             text NOT NULL DEFAULT '',
    opened_at          timestamptz NOT NULL DEFAULT now(),
    cleared_at         timestamptz,
    open_notified_at   timestamptz,
    clear_notified_at  timestamptz
);
-- At most one open incident per condition.
CREATE UNIQUE INDEX operator_alerts_open_idx ON app.operator_alerts (kind, subject)
    WHERE cleared_at IS NULL;
CREATE INDEX operator_alerts_opened_idx ON app.operator_alerts (opened_at DESC);
