-- The original iOS app's device registration (POST /api/devices/register): a staff member's
-- browser session mints a one-time code bound to a PKCE challenge; the app exchanges it for
-- a bearer token (`dev_...`, stored as its SHA-256) and an HMAC secret.
--
-- A registered app is a row of app.devices (the same table push uses): it may have no APNs
-- token yet, and it carries what the app told us about itself.

ALTER TABLE app.devices ALTER COLUMN token DROP NOT NULL;
ALTER TABLE app.devices DROP CONSTRAINT devices_platform_check;
ALTER TABLE app.devices ADD CONSTRAINT devices_platform_check CHECK (platform IN ('ios', 'ipados', 'macos'));
ALTER TABLE app.devices
    ADD COLUMN public_id     uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    ADD COLUMN label         text CHECK (char_length(label) <= 120),
    ADD COLUMN model         text CHECK (char_length(model) <= 80),
    ADD COLUMN os_version    text CHECK (char_length(os_version) <= 40),
    ADD COLUMN app_version   text CHECK (char_length(app_version) <= 40),
    ADD COLUMN capabilities  text[] NOT NULL DEFAULT '{}',
    ADD COLUMN last_status   jsonb,
    -- Set for a device registered with a one-time code (null: a customer's push token).
    ADD COLUMN registered_at timestamptz,
    ADD COLUMN deleted_at    timestamptz;

CREATE TABLE app.device_register_codes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- SHA-256 (hex) of the one-time code; the code itself only travels in the app's callback URL.
    code_hash       text NOT NULL UNIQUE,
    -- base64url(SHA-256(code_verifier)), no padding (RFC 7636 S256).
    code_challenge  text NOT NULL CHECK (code_challenge ~ '^[A-Za-z0-9_-]{43}$'),
    user_id         bigint NOT NULL REFERENCES app.users (id) ON DELETE CASCADE,
    label           text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    consumed_at     timestamptz,
    -- What the code was used for: a retry with the same Idempotency-Key (and verifier)
    -- while the code is live gets fresh credentials for this device, not a second device.
    device_id       bigint REFERENCES app.devices (id) ON DELETE CASCADE,
    idempotency_key text CHECK (char_length(idempotency_key) <= 200)
);

CREATE TABLE app.device_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id     bigint NOT NULL REFERENCES app.devices (id) ON DELETE CASCADE,
    -- SHA-256 (hex) of the bearer token `dev_...`.
    token_hash    text NOT NULL UNIQUE,
    -- The HMAC key the app signs scan results with: symmetric, so it is kept to verify them.
    -- Returned once, in the registration answer.
    secret        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX device_tokens_device_idx ON app.device_tokens (device_id);
