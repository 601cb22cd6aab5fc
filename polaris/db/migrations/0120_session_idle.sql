-- A session remembers its own idle timeout: customer sessions follow
-- CUSTOMER_SESSION_TTL_SECONDS (the original product's setting); NULL is the default
-- (polaris.db.repos.sessions.SESSION_IDLE, 8 hours) that staff sessions keep.
ALTER TABLE app.sessions ADD COLUMN idle_seconds integer CHECK (idle_seconds IS NULL OR idle_seconds > 0);
