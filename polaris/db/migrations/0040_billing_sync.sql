-- Lago billing sync: the ledger (outbox) of usage events, cadence state, what Lago told us
-- about subscriptions and plans, received Lago webhooks, and invoices kept for the portal.

-- ---------------------------------------------------------------- sync runs

ALTER TABLE billing.sync_runs
    ADD COLUMN transactions_seen integer NOT NULL DEFAULT 0,
    ADD COLUMN events_held       integer NOT NULL DEFAULT 0,
    ADD COLUMN errors            integer NOT NULL DEFAULT 0,
    ADD COLUMN requested_by      text,
    ADD COLUMN worker            text;

-- ---------------------------------------------------------------- per-transaction state

ALTER TABLE billing.transaction_sync_state
    -- Energy written to the ledger (sent or still to send), in Wh: the next event is computed
    -- against this, so an event is decided once and only its delivery is ever retried.
    ADD COLUMN recorded_wh              bigint NOT NULL DEFAULT 0,
    ADD COLUMN final_recorded           boolean NOT NULL DEFAULT false,
    -- Nothing left to do: the final true-up was delivered, or it is a test session.
    ADD COLUMN done                     boolean NOT NULL DEFAULT false,
    ADD COLUMN external_subscription_id text,
    -- Why it is not billed (yet): no_customer, no_subscription, unknown_subscription,
    -- anomaly, invalid_event, test. NULL when billable.
    ADD COLUMN unbillable_code          text,
    ADD COLUMN held_since               timestamptz,
    -- An operator's decision for an anomaly: bill this many Wh instead.
    ADD COLUMN energy_override_wh       bigint CHECK (energy_override_wh >= 0),
    ADD COLUMN energy_override_by       text,
    ADD COLUMN discovered_at            timestamptz NOT NULL DEFAULT now(),
    -- How the transaction was found: the cursor of regular runs, or a backfill.
    ADD COLUMN discovered_by            text NOT NULL DEFAULT 'cursor';
CREATE INDEX transaction_sync_state_open_idx ON billing.transaction_sync_state (transaction_id)
    WHERE NOT done;
CREATE INDEX transaction_sync_state_held_idx ON billing.transaction_sync_state (unbillable_code, held_since)
    WHERE unbillable_code IS NOT NULL;

-- ---------------------------------------------------------------- the ledger (outbox)

-- Every usage event, written before it is sent and marked after Lago accepted it. The
-- transaction_id is deterministic, so resending after a crash is answered 422
-- value_already_exist by Lago, which counts as delivered.
CREATE TABLE billing.usage_events (
    transaction_id            text PRIMARY KEY,
    ocpp_transaction_id       integer NOT NULL REFERENCES ocpp.transactions (id),
    kind                      text NOT NULL CHECK (kind IN ('increment', 'final')),
    external_subscription_id  text NOT NULL,
    code                      text NOT NULL,
    event_timestamp           timestamptz NOT NULL,
    wh                        bigint NOT NULL CHECK (wh >= 0),
    properties                jsonb NOT NULL,
    -- pending: to send; sent: Lago has it; invalid: Lago refused it (reason in last_error).
    status                    text NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'sent', 'invalid')),
    attempts                  integer NOT NULL DEFAULT 0,
    last_error                text,
    recorded_run_id           bigint REFERENCES billing.sync_runs (id) ON DELETE SET NULL,
    sent_run_id               bigint REFERENCES billing.sync_runs (id) ON DELETE SET NULL,
    -- Lago answered "already exists": a retry of an event it had stored.
    duplicate                 boolean NOT NULL DEFAULT false,
    created_at                timestamptz NOT NULL DEFAULT now(),
    sent_at                   timestamptz
);
CREATE INDEX usage_events_pending_idx ON billing.usage_events (created_at) WHERE status = 'pending';
CREATE INDEX usage_events_tx_idx ON billing.usage_events (ocpp_transaction_id);
CREATE INDEX usage_events_sub_ts_idx ON billing.usage_events (external_subscription_id, event_timestamp);
CREATE INDEX usage_events_invalid_idx ON billing.usage_events (created_at) WHERE status = 'invalid';

-- ---------------------------------------------------------------- cadence

CREATE TABLE billing.cadence_state (
    id                  integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    tier                text NOT NULL DEFAULT 'active' CHECK (tier IN ('active', 'idle', 'dormant')),
    idle_ticks          integer NOT NULL DEFAULT 0,
    last_activity_at    timestamptz,
    last_run_at         timestamptz,
    -- An admin's pin overrides the adaptive tier until removed.
    pinned_tier         text CHECK (pinned_tier IN ('active', 'idle', 'dormant')),
    pinned_by           text,
    pinned_at           timestamptz,
    -- Transactions with an id above this are found by the cursor; older ones only by backfill.
    -- NULL until the first run of a fresh deployment sets it from SYNC_LOOKBACK_MINUTES.
    discovery_floor_id  integer,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO billing.cadence_state (id) VALUES (1);

-- ---------------------------------------------------------------- what Lago told us

CREATE TABLE billing.lago_subscriptions (
    external_id           text PRIMARY KEY,
    -- false: Lago answered 404 for this subscription (reported to operators).
    found                 boolean NOT NULL,
    status                text,
    plan_code             text,
    external_customer_id  text,
    lago_id               text,
    checked_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE billing.lago_plans (
    code              text PRIMARY KEY,
    name              text,
    currency          text,
    amount_cents      bigint,
    interval          text,
    -- The charge of the plan for our metric: model and price per kWh (Lago's decimal string).
    charge_model      text,
    unit_amount       text,
    charge_properties jsonb,
    fetched_at        timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- webhooks and invoices

CREATE TABLE billing.lago_webhooks (
    -- Lago's X-Lago-Unique-Key, or a hash of the signed payload when absent.
    unique_key     text PRIMARY KEY,
    webhook_type   text NOT NULL,
    object_type    text,
    payload        jsonb NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    -- How many times Lago delivered it (its retries after a lost answer).
    deliveries     integer NOT NULL DEFAULT 1
);
CREATE INDEX lago_webhooks_received_idx ON billing.lago_webhooks (received_at DESC);

CREATE TABLE app.invoices (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lago_id                text NOT NULL UNIQUE,
    customer_id            bigint REFERENCES app.customers (id) ON DELETE SET NULL,
    lago_customer_external_id text,
    subscription_ids       text[] NOT NULL DEFAULT '{}',
    number                 text,
    invoice_type           text,
    status                 text,
    payment_status         text,
    currency               text,
    total_amount_cents     bigint,
    issuing_date           date,
    file_url               text,
    payload                jsonb NOT NULL,
    -- The invoice-available mail is queued once per invoice.
    email_queued_at        timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_customer_idx ON app.invoices (customer_id, issuing_date DESC);
