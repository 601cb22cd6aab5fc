-- The price of our metric's charge as the portal shows it, rendered by the sync worker from
-- the subscription's own plan (with overrides) or the plan by code: per kWh when one price
-- holds for every kWh (else NULL), and in words ("see your plan" when it cannot be exact).
ALTER TABLE billing.lago_subscriptions
    ADD COLUMN price_per_kwh numeric,
    ADD COLUMN price_text    text,
    ADD COLUMN price_model   text;
