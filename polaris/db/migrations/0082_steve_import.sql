-- What `polaris import steve` brings over that had no place yet, and how it stays idempotent.

-- SteVe's max_active_transaction_count: how many sessions a card may have at once
-- (-1 unlimited; SteVe's 0 means blocked, which is our `blocked`).
ALTER TABLE app.id_tags
    ADD COLUMN max_active_transactions integer NOT NULL DEFAULT 1
        CHECK (max_active_transactions = -1 OR max_active_transactions >= 1),
    ADD COLUMN note text;

-- One row per SteVe record brought over: SteVe's table and primary key -> ours. A second run
-- finds every record here and changes nothing.
CREATE TABLE ocpp.steve_imports (
    steve_table  text NOT NULL,
    steve_pk     bigint NOT NULL,
    polaris_id   bigint NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (steve_table, steve_pk)
);

-- A charger brought over from SteVe keeps its password: SteVe stored it as a bcrypt hash,
-- which admission checks the first time the charger connects; then it stores our key hash
-- (key_salt, key_hash) and clears this.
ALTER TABLE ocpp.charge_boxes ADD COLUMN steve_key_bcrypt text;
