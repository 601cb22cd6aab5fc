-- Delivery walks pending events in the order they were written. created_at is the same for
-- every event written in one transaction, so a sequence gives the order and a cheap keyset.
ALTER TABLE billing.usage_events ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
DROP INDEX billing.usage_events_pending_idx;
CREATE INDEX usage_events_pending_idx ON billing.usage_events (seq) WHERE status = 'pending';
