-- This deployment's id, part of every usage event's transaction_id: Lago refuses a
-- transaction_id it has for the subscription (value_already_exist), so ids from a second
-- deployment, the original stack or a restored database must not collide with ours.
CREATE TABLE billing.deployment (
    id             integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    deployment_id  text NOT NULL DEFAULT substr(md5(gen_random_uuid()::text || clock_timestamp()::text), 1, 10),
    created_at     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO billing.deployment (id) VALUES (1);
