-- The customer a session belongs to, fixed when it starts: the owner of its card at that
-- moment (polaris.db.repos.transactions.start_transaction; importers set it the same way).
-- What a customer sees (portal, customer API, CSV, live energy, receipts) filters on this
-- column, so a card moved to another account later never shows its past to the new holder.
ALTER TABLE ocpp.transactions
    ADD COLUMN customer_id bigint REFERENCES app.customers (id) ON DELETE SET NULL;

-- Sessions recorded before this column existed: the card's current owner is the best record
-- there is (the card's earlier owners were not kept).
UPDATE ocpp.transactions t SET customer_id = tag.customer_id
FROM app.id_tags tag
WHERE lower(tag.id_tag) = lower(t.id_tag) AND tag.customer_id IS NOT NULL;

CREATE INDEX transactions_customer_idx ON ocpp.transactions (customer_id, id DESC)
    WHERE customer_id IS NOT NULL;
