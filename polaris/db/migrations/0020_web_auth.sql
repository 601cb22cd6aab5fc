-- Sign-in state of the web process: browser sessions, API tokens for the terminal console,
-- the device-login flow, login attempts (lock-out), OIDC logins in flight, and the audit log.

-- Admins who sign in through OIDC are matched by the issuer's subject after the first login.
ALTER TABLE app.users ADD COLUMN oidc_subject text;
CREATE UNIQUE INDEX users_oidc_subject_idx ON app.users (oidc_subject) WHERE oidc_subject IS NOT NULL;

-- A browser session. Only the SHA-256 of the cookie value is stored, so a database leak
-- does not hand out live sessions.
CREATE TABLE app.sessions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash      bytea NOT NULL UNIQUE,
    user_id         bigint NOT NULL REFERENCES app.users (id) ON DELETE CASCADE,
    -- Compared with the X-CSRF-Token header (or csrf_token form field) on cookie writes.
    csrf_token      text NOT NULL,
    -- How the person signed in: password, oidc, magic_link.
    method          text NOT NULL,
    ip              text,
    user_agent      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    -- Sliding expiry, never beyond absolute_expires_at.
    expires_at      timestamptz NOT NULL,
    absolute_expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_idx ON app.sessions (user_id);
CREATE INDEX sessions_expires_idx ON app.sessions (expires_at);

-- Bearer tokens (the terminal console, scripts). Stored hashed; listed by prefix.
CREATE TABLE app.api_tokens (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash      bytea NOT NULL UNIQUE,
    -- The first characters of the token, shown in listings so a person can tell tokens apart.
    token_prefix    text NOT NULL,
    user_id         bigint NOT NULL REFERENCES app.users (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- password or device (the device-login flow).
    method          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    expires_at      timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX api_tokens_user_idx ON app.api_tokens (user_id);

-- Device login (RFC 8628 style): the console shows user_code; an admin approves it in a
-- browser after signing in; the console polls with device_code and receives a token.
CREATE TABLE app.device_codes (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_code_hash  bytea NOT NULL UNIQUE,
    user_code         text NOT NULL,
    client_name       text NOT NULL,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'approved', 'denied', 'consumed')),
    approved_by       bigint REFERENCES app.users (id) ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    last_polled_at    timestamptz,
    decided_at        timestamptz
);
CREATE UNIQUE INDEX device_codes_user_code_idx ON app.device_codes (user_code)
    WHERE status IN ('pending', 'approved');

-- Every password sign-in attempt; failures drive the lock-out per email and per address.
CREATE TABLE app.login_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       text NOT NULL,
    ip          text,
    succeeded   boolean NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_email_idx ON app.login_attempts (email, at DESC);
CREATE INDEX login_attempts_ip_idx ON app.login_attempts (ip, at DESC);

-- An OIDC authorization in flight: state, nonce and PKCE verifier until the callback.
CREATE TABLE app.oidc_logins (
    state_hash      bytea PRIMARY KEY,
    nonce           text NOT NULL,
    code_verifier   text NOT NULL,
    return_to       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);

-- Who changed what, when, with the values before and after.
CREATE TABLE app.audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor_user_id   bigint REFERENCES app.users (id) ON DELETE SET NULL,
    -- Kept as text so the entry still says who it was after the user is deleted.
    actor_email     text,
    action          text NOT NULL,
    target_type     text NOT NULL,
    target_id       text,
    before          jsonb,
    after           jsonb,
    ip              text
);
CREATE INDEX audit_log_at_idx ON app.audit_log (at DESC, id DESC);
CREATE INDEX audit_log_target_idx ON app.audit_log (target_type, target_id, at DESC);
CREATE INDEX audit_log_actor_idx ON app.audit_log (actor_user_id, at DESC);
