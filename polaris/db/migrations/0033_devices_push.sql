-- iOS devices (APNs tokens) and the push outbox.

CREATE TABLE app.devices (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES app.users (id) ON DELETE CASCADE,
    platform      text NOT NULL DEFAULT 'ios' CHECK (platform IN ('ios')),
    -- APNs device token, lower-case hex.
    token         text NOT NULL UNIQUE CHECK (token ~ '^[0-9a-f]{64,200}$'),
    -- Development builds get tokens for Apple's sandbox.
    sandbox       boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_user_idx ON app.devices (user_id);

CREATE TABLE app.push_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id        bigint REFERENCES app.devices (id) ON DELETE SET NULL,
    -- Kept so the log can say which token a result was for after the device is gone.
    token            text NOT NULL,
    kind             text NOT NULL,
    payload          jsonb NOT NULL,
    dedupe_key       text UNIQUE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'dropped', 'expired')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    -- A push that could not go out by then is worthless (the session is long over).
    expires_at       timestamptz NOT NULL DEFAULT now() + interval '1 hour',
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX push_outbox_due_idx ON app.push_outbox (next_attempt_at)
    WHERE status IN ('pending', 'sending');
