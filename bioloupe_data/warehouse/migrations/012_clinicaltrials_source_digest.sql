-- ClinicalTrials.gov documents keep a digest too: the SHA-256 of the study's JSON as landed
-- (compact, as the API writes it) without the value of its versionHolder, the registry's
-- snapshot date, which changes every day. A re-fetched study with this digest is the stored one
-- in a new snapshot. Studies landed before have NULL (the payload's bytes are not kept: jsonb):
-- landing writes their digest the first time it finds one of them unchanged.
COMMENT ON COLUMN raw.documents.source_digest IS
    'SHA-256 of the source''s bytes kept in the payload: PubMed, payload->>''xml'' as UTF-8; ClinicalTrials.gov, the study''s compact JSON without the value of its one versionHolder; NULL where none is kept.';
