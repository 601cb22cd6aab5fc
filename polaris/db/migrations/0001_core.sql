-- Core schemas and tables: chargers and their sessions (ocpp), people and cards (app),
-- billing sync state (billing). Later features add their own numbered migrations.

CREATE SCHEMA IF NOT EXISTS ocpp;
CREATE SCHEMA IF NOT EXISTS app;
CREATE SCHEMA IF NOT EXISTS billing;

-- ---------------------------------------------------------------- ocpp

CREATE TABLE ocpp.sites (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(trim(name)) > 0),
    address     text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ocpp.charge_boxes (
    id                         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The OCPP identity: the last path segment of the charger's WebSocket URL.
    charge_box_id              text NOT NULL UNIQUE
                               CHECK (charge_box_id ~ '^[A-Za-z0-9._:*+|@-]{1,48}$'),
    -- Short random id printed in QR codes (the portal's /c/{public_id}).
    public_id                  text NOT NULL UNIQUE,
    site_id                    bigint REFERENCES ocpp.sites (id) ON DELETE SET NULL,
    description                text,
    -- HMAC-SHA256(key_salt, password): charger keys are high-entropy machine secrets.
    key_salt                   bytea,
    key_hash                   bytea,
    registration_status        text NOT NULL DEFAULT 'Accepted'
                               CHECK (registration_status IN ('Accepted', 'Pending', 'Rejected')),
    active                     boolean NOT NULL DEFAULT true,
    vendor                     text,
    model                      text,
    charge_point_serial_number text,
    charge_box_serial_number   text,
    firmware_version           text,
    iccid                      text,
    imsi                       text,
    meter_type                 text,
    meter_serial_number        text,
    ocpp_protocol              text,
    last_boot_at               timestamptz,
    last_heartbeat_at          timestamptz,
    last_seen_at               timestamptz,
    connected                  boolean NOT NULL DEFAULT false,
    -- Which OCPP server instance holds the socket (commands are routed there).
    connected_instance         text,
    diagnostics_status         text,
    diagnostics_status_at      timestamptz,
    firmware_status            text,
    firmware_status_at         timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ocpp.connectors (
    charge_box_pk      bigint NOT NULL REFERENCES ocpp.charge_boxes (id) ON DELETE CASCADE,
    connector_id       integer NOT NULL CHECK (connector_id >= 0),
    status             text,
    error_code         text,
    info               text,
    vendor_id          text,
    vendor_error_code  text,
    -- The charger's own timestamp of the status; an older one never overwrites a newer one.
    status_at          timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (charge_box_pk, connector_id)
);

CREATE TABLE ocpp.connector_status_history (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charge_box_pk      bigint NOT NULL REFERENCES ocpp.charge_boxes (id) ON DELETE CASCADE,
    connector_id       integer NOT NULL,
    status             text NOT NULL,
    error_code         text,
    info               text,
    vendor_id          text,
    vendor_error_code  text,
    status_at          timestamptz,
    received_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connector_status_history_box_idx
    ON ocpp.connector_status_history (charge_box_pk, connector_id, received_at DESC);

CREATE TABLE ocpp.transactions (
    -- The transactionId given to the charger (OCPP integer).
    id                 integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charge_box_pk      bigint NOT NULL REFERENCES ocpp.charge_boxes (id),
    connector_id       integer NOT NULL CHECK (connector_id >= 0),
    id_tag             text NOT NULL,
    -- What Authorize said about the tag when the session started (Accepted, Invalid, ...).
    id_tag_status      text,
    reservation_id     integer,
    start_timestamp    timestamptz NOT NULL,
    meter_start        bigint NOT NULL,
    stop_timestamp     timestamptz,
    meter_stop         bigint,
    stop_reason        text,
    stop_id_tag        text,
    -- Who ended it: the charger's StopTransaction, an operator's force-close, or inference.
    stopped_by         text CHECK (stopped_by IN ('charger', 'operator', 'inferred')),
    transaction_data   jsonb,
    -- Flagged when no StopTransaction came in time (see OCPP_STUCK_TRANSACTION_HOURS).
    stuck_since        timestamptz,
    -- Smoke-test sessions are never billed.
    is_test            boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (stop_timestamp IS NULL OR meter_stop IS NOT NULL)
);
-- A resent StartTransaction (lost reply) must map onto the same transaction.
CREATE UNIQUE INDEX transactions_dedupe_idx
    ON ocpp.transactions (charge_box_pk, connector_id, lower(id_tag), start_timestamp, meter_start);
CREATE INDEX transactions_open_idx ON ocpp.transactions (charge_box_pk, connector_id)
    WHERE stop_timestamp IS NULL;
CREATE INDEX transactions_start_idx ON ocpp.transactions (start_timestamp DESC);
CREATE INDEX transactions_id_tag_idx ON ocpp.transactions (lower(id_tag));

CREATE TABLE ocpp.meter_values (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charge_box_pk   bigint NOT NULL REFERENCES ocpp.charge_boxes (id) ON DELETE CASCADE,
    connector_id    integer NOT NULL,
    transaction_id  integer REFERENCES ocpp.transactions (id),
    sampled_at      timestamptz NOT NULL,
    -- As received (a JSON number or a decimal string); value_num parsed when possible.
    value           text NOT NULL,
    value_num       double precision,
    measurand       text,
    unit            text,
    phase           text,
    context         text,
    location        text,
    format          text,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX meter_values_transaction_idx ON ocpp.meter_values (transaction_id, sampled_at)
    WHERE transaction_id IS NOT NULL;
CREATE INDEX meter_values_box_idx ON ocpp.meter_values (charge_box_pk, sampled_at DESC);

-- ---------------------------------------------------------------- app

CREATE TABLE app.users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text NOT NULL CHECK (email = lower(email) AND email LIKE '%_@_%'),
    name            text,
    role            text NOT NULL CHECK (role IN ('admin', 'operator', 'customer')),
    -- argon2id; NULL for people who sign in by magic link or OIDC only.
    password_hash   text,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_login_at   timestamptz
);
CREATE UNIQUE INDEX users_email_idx ON app.users (email);

CREATE TABLE app.customers (
    id                         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id                    bigint NOT NULL UNIQUE REFERENCES app.users (id) ON DELETE CASCADE,
    name                       text,
    -- Lago's external ids: the subscription metered kWh are billed to.
    lago_external_customer_id  text UNIQUE,
    lago_subscription_id       text UNIQUE,
    active                     boolean NOT NULL DEFAULT true,
    receipts_enabled           boolean NOT NULL DEFAULT true,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE app.id_tags (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Stored as received; matched case-insensitively (chargers disagree on hex case).
    id_tag               text NOT NULL CHECK (length(id_tag) BETWEEN 1 AND 20),
    customer_id          bigint REFERENCES app.customers (id) ON DELETE SET NULL,
    label                text,
    parent_id_tag        text CHECK (parent_id_tag IS NULL OR length(parent_id_tag) BETWEEN 1 AND 20),
    expiry_date          timestamptz,
    blocked              boolean NOT NULL DEFAULT false,
    -- Seen by a charger without being registered (kept so no energy is lost).
    unknown              boolean NOT NULL DEFAULT false,
    last_seen_at         timestamptz,
    last_seen_charge_box_pk bigint REFERENCES ocpp.charge_boxes (id) ON DELETE SET NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX id_tags_id_tag_idx ON app.id_tags (lower(id_tag));
CREATE INDEX id_tags_customer_idx ON app.id_tags (customer_id);

-- ---------------------------------------------------------------- billing

CREATE TABLE billing.sync_runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    status         text NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
    tier           text,
    trigger        text NOT NULL DEFAULT 'schedule',
    events_sent    integer NOT NULL DEFAULT 0,
    kwh_sent       numeric(14, 3) NOT NULL DEFAULT 0,
    error          text
);
CREATE INDEX sync_runs_started_idx ON billing.sync_runs (started_at DESC);

CREATE TABLE billing.transaction_sync_state (
    transaction_id      integer PRIMARY KEY REFERENCES ocpp.transactions (id),
    -- Energy already delivered to Lago, in Wh (the sum of every accepted event).
    billed_wh           bigint NOT NULL DEFAULT 0,
    final_sent          boolean NOT NULL DEFAULT false,
    unbillable_reason   text,
    last_synced_at      timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
