-- The customer portal: sign-in links sent by email, the requests for them (rate limits),
-- and the mark a deleted account leaves behind.

-- A one-use sign-in link. Only the SHA-256 of the token is stored. Opening the link shows a
-- confirm button; only the POST consumes it, so a mail client's link previewer cannot burn it.
CREATE TABLE app.magic_links (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash      bytea NOT NULL UNIQUE,
    user_id         bigint NOT NULL REFERENCES app.users (id) ON DELETE CASCADE,
    -- signin (15 minutes), invite (24 hours), email_change (confirms new_email).
    purpose         text NOT NULL CHECK (purpose IN ('signin', 'invite', 'email_change')),
    -- The address the link was mailed to.
    email           text NOT NULL,
    new_email       text CHECK (new_email IS NULL OR (new_email = lower(new_email) AND new_email LIKE '%_@_%')),
    -- Where the browser goes after signing in (a path on the customer host).
    return_to       text CHECK (return_to IS NULL OR (return_to LIKE '/%' AND return_to NOT LIKE '//%')),
    requested_ip    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    consumed_at     timestamptz,
    CHECK (expires_at > created_at),
    CHECK (purpose <> 'email_change' OR new_email IS NOT NULL)
);
CREATE INDEX magic_links_user_idx ON app.magic_links (user_id, created_at DESC);

-- Every request for a link, also for addresses nobody registered (never revealed to the
-- asker): the rate limits per email and per address count these.
CREATE TABLE app.magic_link_requests (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text NOT NULL,
    ip              text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX magic_link_requests_email_idx ON app.magic_link_requests (email, at DESC);
CREATE INDEX magic_link_requests_ip_idx ON app.magic_link_requests (ip, at DESC);

-- A customer who deleted their account: the person's data is gone, the row stays so the
-- sessions and invoices that billing law requires us to keep still add up.
ALTER TABLE app.customers ADD COLUMN deleted_at timestamptz;
