-- Which derivation version last normalized each source day: a day normalized by the current
-- version re-derives only the documents whose landed version differs from their core row's.
CREATE TABLE IF NOT EXISTS ops.normalized_days (
    source             text        NOT NULL,
    partition_date     date        NOT NULL,
    derivation_version text        NOT NULL,
    run_id             text        NOT NULL,
    normalized_at      timestamptz NOT NULL,
    PRIMARY KEY (source, partition_date)
);
COMMENT ON TABLE ops.normalized_days IS
    'The derivation version that last normalized each source day; rewritten only when it changes.';

-- A day's documents are read in key order: the index hands them over sorted, so reading a
-- batch of payloads never sorts them.
CREATE INDEX IF NOT EXISTS documents_partition_doc_idx
    ON raw.documents (source, partition_date, doc_id);
DROP INDEX IF EXISTS raw.documents_partition_idx;

-- Payloads are compressed with lz4 where the server has it (several times faster than the
-- default pglz at a similar ratio); a server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE raw.documents ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available on this server: raw.documents.payload keeps pglz';
END
$$;
