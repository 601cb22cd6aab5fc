-- Live events (SSE): every event is stored so a client reconnecting with Last-Event-ID
-- gets what it missed; rows are deleted after a retention period by the web process.

CREATE TABLE app.events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Who may see it: 'admin', 'customer:<id>', 'pairing:<id>'.
    topics      text[] NOT NULL CHECK (cardinality(topics) > 0),
    type        text NOT NULL,
    data        jsonb NOT NULL,
    -- Several web instances reacting to the same NOTIFY store an event once.
    dedupe_key  text UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_topics_idx ON app.events USING gin (topics);
CREATE INDEX events_created_idx ON app.events (created_at);
