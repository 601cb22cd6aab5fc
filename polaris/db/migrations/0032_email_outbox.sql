-- Outgoing mail, written in the same transaction as the change that causes it and
-- delivered to the email worker by a sender that retries: an outage delays mail, never loses it.

CREATE TABLE app.email_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    to_address       text NOT NULL CHECK (to_address LIKE '%_@_%'),
    category         text NOT NULL,
    subject          text NOT NULL,
    html             text NOT NULL,
    text             text NOT NULL,
    reply_to         text,
    headers          jsonb,
    -- Several web instances reacting to the same event queue a mail once.
    dedupe_key       text UNIQUE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'held')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- A claimed row is leased; a sender that died mid-send gives it back when the lease ends.
    locked_until     timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX email_outbox_due_idx ON app.email_outbox (next_attempt_at)
    WHERE status IN ('pending', 'sending');
CREATE INDEX email_outbox_created_idx ON app.email_outbox (created_at DESC);
