-- OCPP 2.0.1 chargers beside the 1.6 fleet: the version a charger speaks (and an operator's
-- pin), its device model, and how a 2.0.1 transaction (a string id chosen by the charger, a
-- stream of TransactionEvents numbered by seqNo) maps onto our integer sessions.

-- The version negotiated at the last connection ('1.6', '2.0.1'); a pin, when set, is the
-- only version the charger may connect with (it must offer that subprotocol).
ALTER TABLE ocpp.charge_boxes
    ADD COLUMN ocpp_version text,
    ADD COLUMN ocpp_version_pinned text CHECK (ocpp_version_pinned IN ('1.6', '2.0.1'));

-- The 2.0.1 device model, as NotifyReport (GetBaseReport) and GetVariables/SetVariables told us.
CREATE TABLE ocpp.device_model_variables (
    charge_box_pk      bigint NOT NULL REFERENCES ocpp.charge_boxes (id) ON DELETE CASCADE,
    component          text NOT NULL,
    component_instance text NOT NULL DEFAULT '',
    evse_id            integer NOT NULL DEFAULT -1,  -- -1: the component is not on an EVSE
    connector_id       integer NOT NULL DEFAULT -1,
    variable           text NOT NULL,
    variable_instance  text NOT NULL DEFAULT '',
    attribute_type     text NOT NULL DEFAULT 'Actual',
    value              text,
    mutability         text,
    persistent         boolean,
    constant           boolean,
    data_type          text,
    unit               text,
    characteristics    jsonb,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (charge_box_pk, component, component_instance, evse_id, connector_id,
                 variable, variable_instance, attribute_type)
);

-- A charger's transactionId (a string up to 36 characters) -> our session. A resent Started
-- finds the same row; `meter_start_known` is false while no register reading came yet.
CREATE TABLE ocpp.transaction_ids (
    charge_box_pk      bigint NOT NULL REFERENCES ocpp.charge_boxes (id) ON DELETE CASCADE,
    charger_tx_id      text NOT NULL CHECK (length(charger_tx_id) BETWEEN 1 AND 36),
    transaction_id     integer NOT NULL REFERENCES ocpp.transactions (id),
    meter_start_known  boolean NOT NULL DEFAULT false,
    last_seq_no        integer,
    gaps               integer NOT NULL DEFAULT 0,  -- seqNos skipped (messages never received)
    ended_at           timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (charge_box_pk, charger_tx_id)
);
CREATE UNIQUE INDEX transaction_ids_transaction_idx ON ocpp.transaction_ids (transaction_id);

-- Every TransactionEvent as received, once per (transaction, seqNo): duplicates are answered
-- and not applied again.
CREATE TABLE ocpp.transaction_events (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charge_box_pk      bigint NOT NULL REFERENCES ocpp.charge_boxes (id) ON DELETE CASCADE,
    charger_tx_id      text NOT NULL,
    seq_no             integer NOT NULL,
    event_type         text NOT NULL,
    trigger_reason     text,
    event_at           timestamptz NOT NULL,
    offline            boolean NOT NULL DEFAULT false,
    payload            jsonb NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (charge_box_pk, charger_tx_id, seq_no)
);

-- What a 2.0.1 station reports that has no table of its own (NotifyEvent, SecurityEventNotification,
-- LogStatusNotification, ReservationStatusUpdate, NotifyChargingLimit, ReportChargingProfiles, ...).
CREATE TABLE ocpp.station_reports (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charge_box_pk      bigint NOT NULL REFERENCES ocpp.charge_boxes (id) ON DELETE CASCADE,
    action             text NOT NULL,
    payload            jsonb NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX station_reports_box_idx ON ocpp.station_reports (charge_box_pk, action, received_at DESC);
