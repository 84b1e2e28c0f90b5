-- The SHA-256 of what an enriched row was derived from, with the version of what derived it. A
-- re-run finds the digest unchanged and leaves the row alone without deriving it again; NULL
-- means derive again (an LLM answer that is still missing, or a row written before this column).
ALTER TABLE enriched.trial_features ADD COLUMN IF NOT EXISTS input_digest bytea;
COMMENT ON COLUMN enriched.trial_features.input_digest IS
    'SHA-256 of the rules (and prompt) version and the trial''s text the row was derived from; NULL: derive again.';
ALTER TABLE enriched.site_geocodes ADD COLUMN IF NOT EXISTS input_digest bytea;
COMMENT ON COLUMN enriched.site_geocodes.input_digest IS
    'SHA-256 of the geocoder version and the site''s address and point the row was placed from; NULL: geocode again.';
