-- Admin password resets by email: a one-use link, stored as the SHA-256 of its token.
CREATE TABLE app.password_resets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    user_id     bigint NOT NULL REFERENCES app.users (id) ON DELETE CASCADE,
    -- who asked: the person themself (forgot password) or an admin (their email).
    requested_by text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX password_resets_user_idx ON app.password_resets (user_id, created_at DESC);
