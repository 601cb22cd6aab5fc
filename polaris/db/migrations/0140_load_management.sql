-- Site load management: a site's grid limit, circuits (breakers) nesting under it, each
-- charger's own min/max, and what the controller last decided and sent per session.

ALTER TABLE ocpp.sites
    -- The grid connection's limit per phase (A) and/or in total (kW); NULL: not managed.
    ADD COLUMN limit_amps   numeric CHECK (limit_amps IS NULL OR limit_amps > 0),
    ADD COLUMN limit_kw     numeric CHECK (limit_kw IS NULL OR limit_kw > 0),
    ADD COLUMN phases       integer NOT NULL DEFAULT 3 CHECK (phases IN (1, 3)),
    -- Kept free under the limit (A per phase), for meter error and loads we do not see.
    ADD COLUMN margin_amps  numeric NOT NULL DEFAULT 0 CHECK (margin_amps >= 0),
    -- equal: every car the same share; first_come: earlier sessions first, each at least the minimum.
    ADD COLUMN policy       text NOT NULL DEFAULT 'equal' CHECK (policy IN ('equal', 'first_come')),
    ADD COLUMN updated_at   timestamptz NOT NULL DEFAULT now();

-- A group of chargers under one breaker; nests under the site or another circuit.
CREATE TABLE ocpp.circuits (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     bigint NOT NULL REFERENCES ocpp.sites (id) ON DELETE CASCADE,
    parent_id   bigint REFERENCES ocpp.circuits (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(trim(name)) > 0),
    limit_amps  numeric NOT NULL CHECK (limit_amps > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, name),
    CHECK (parent_id IS DISTINCT FROM id)
);

ALTER TABLE ocpp.charge_boxes
    ADD COLUMN circuit_id  bigint REFERENCES ocpp.circuits (id) ON DELETE SET NULL,
    -- The charger's own range (A per phase); NULL: the OCPP minimum (6 A) and 32 A.
    ADD COLUMN min_amps    numeric CHECK (min_amps IS NULL OR min_amps >= 0),
    ADD COLUMN max_amps    numeric CHECK (max_amps IS NULL OR max_amps > 0);

-- What the controller decided for each charging connector, what it sent and what came back.
CREATE TABLE ocpp.load_allocations (
    charge_box_pk    bigint NOT NULL REFERENCES ocpp.charge_boxes (id) ON DELETE CASCADE,
    connector_id     integer NOT NULL,
    site_id          bigint NOT NULL REFERENCES ocpp.sites (id) ON DELETE CASCADE,
    transaction_id   integer REFERENCES ocpp.transactions (id) ON DELETE SET NULL,
    limit_amps       numeric NOT NULL,          -- 0: paused
    phases           integer NOT NULL,
    paused_reason    text,
    drawn_amps       numeric,                   -- the car's last measured draw (max over phases)
    sent_amps        numeric,                   -- the limit last sent (NULL: not sent yet)
    answer           text,                      -- Accepted, Rejected, offline, timeout, ...
    composite_amps   numeric,                   -- what GetCompositeSchedule read back
    decided_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    PRIMARY KEY (charge_box_pk, connector_id)
);
CREATE INDEX load_allocations_site_idx ON ocpp.load_allocations (site_id);
CREATE INDEX load_allocations_tx_idx ON ocpp.load_allocations (transaction_id);

-- Each managed site's live state: the totals per phase, and since when it is over its limit.
CREATE TABLE ocpp.site_load (
    site_id          bigint PRIMARY KEY REFERENCES ocpp.sites (id) ON DELETE CASCADE,
    controller       text,                      -- the OCPP server instance that holds the site
    drawn_amps       numeric[] NOT NULL DEFAULT '{0,0,0}',
    allocated_amps   numeric[] NOT NULL DEFAULT '{0,0,0}',
    over_since       timestamptz,
    alerted_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
