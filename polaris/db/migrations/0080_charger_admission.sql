-- Chargers as SteVe admits them, and what admission reports.
--
-- A security profile per charger (OCPP 1.6 security whitepaper): 0 = no password at all
-- (SteVe's default; admitted by id alone, only at the paths OCPP_PROFILE0_PATHS enables),
-- 1 = HTTP Basic, 2 = HTTP Basic over TLS, 3 = client certificates (kept for later).
-- Chargers added before this migration all have a key: profile 1.
ALTER TABLE ocpp.charge_boxes
    ADD COLUMN security_profile smallint NOT NULL DEFAULT 1 CHECK (security_profile BETWEEN 0 AND 3),
    -- A second claimant of a Pending charger (registered on first connection) that came with
    -- another key: refused, counted and shown to operators before they accept the charger.
    ADD COLUMN rival_claims     integer NOT NULL DEFAULT 0,
    ADD COLUMN rival_claim_at   timestamptz;

-- SteVe's charge box id charset: anything but = / ( ) < >, no control characters, no
-- surrounding whitespace, up to 255 characters (its varchar(255)).
ALTER TABLE ocpp.charge_boxes DROP CONSTRAINT charge_boxes_charge_box_id_check;
ALTER TABLE ocpp.charge_boxes ADD CONSTRAINT charge_boxes_charge_box_id_check CHECK (
    length(charge_box_id) BETWEEN 1 AND 255
    AND charge_box_id !~ '[=/()<>[:cntrl:]]'
    AND charge_box_id !~ '^\s|\s$'
);

-- Charge box ids match ignoring case, as in SteVe (its column collation is case-insensitive):
-- CB-1 and cb-1 are one charger.
CREATE UNIQUE INDEX charge_boxes_charge_box_id_lower_idx ON ocpp.charge_boxes (lower(charge_box_id));
