-- What Lago says about a subscription beyond its status: when its open billing period
-- started (events timed before it land in an invoiced period and are never billed) and the
-- plan it embeds (with the subscription's overrides), which the portal prices from.
ALTER TABLE billing.lago_subscriptions
    ADD COLUMN current_period_started_at timestamptz,
    ADD COLUMN current_period_ending_at  timestamptz,
    ADD COLUMN started_at                timestamptz,
    ADD COLUMN plan                      jsonb;
