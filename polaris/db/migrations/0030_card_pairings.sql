-- "Tap your card" pairing windows: a customer (or a signed-out browser) arms a short
-- window at one charger; the next card tapped there is intercepted by the pre-authorize
-- hook (answered BLOCKED, so no charging starts) and recorded here for the portal.

CREATE TABLE app.card_pairings (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charge_box_pk    bigint NOT NULL REFERENCES ocpp.charge_boxes (id) ON DELETE CASCADE,
    purpose          text NOT NULL CHECK (purpose IN ('link', 'signin')),
    -- link: the signed-in customer the card will be linked to.
    user_id          bigint REFERENCES app.users (id) ON DELETE CASCADE,
    customer_id      bigint REFERENCES app.customers (id) ON DELETE CASCADE,
    -- signin: an opaque id of the signed-out browser that armed the window.
    browser_session  text CHECK (browser_session IS NULL OR length(browser_session) BETWEEN 16 AND 200),
    armed_at         timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    cancelled_at     timestamptz,
    -- The card that was tapped (as the charger sent it) and when.
    tapped_id_tag    text,
    tapped_at        timestamptz,
    CHECK (expires_at > armed_at),
    CHECK ((tapped_id_tag IS NULL) = (tapped_at IS NULL)),
    CHECK (purpose <> 'link' OR customer_id IS NOT NULL),
    CHECK (purpose <> 'signin' OR browser_session IS NOT NULL)
);
-- The hook looks up live windows of one charger on every Authorize / StartTransaction.
CREATE INDEX card_pairings_live_idx ON app.card_pairings (charge_box_pk, expires_at)
    WHERE cancelled_at IS NULL;
