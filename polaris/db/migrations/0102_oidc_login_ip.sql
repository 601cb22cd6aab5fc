-- OIDC sign-ins in flight remember the address that started them, so the unauthenticated
-- login start can be limited per address (polaris.services.auth.oidc).
ALTER TABLE app.oidc_logins ADD COLUMN ip text;
CREATE INDEX oidc_logins_ip_idx ON app.oidc_logins (ip, expires_at);
