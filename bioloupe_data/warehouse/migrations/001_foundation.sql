-- Schemas, the shared landing table and the operational tables.
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS core;
CREATE SCHEMA IF NOT EXISTS ops;

CREATE TABLE IF NOT EXISTS raw.documents (
    source            text        NOT NULL,
    doc_id            text        NOT NULL,
    payload           jsonb       NOT NULL,
    source_updated_at timestamptz NOT NULL,
    version_key       text        NOT NULL,
    content_hash      text        NOT NULL,
    partition_date    date        NOT NULL,
    landed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, doc_id)
);
CREATE INDEX IF NOT EXISTS documents_partition_idx ON raw.documents (source, partition_date);
COMMENT ON TABLE raw.documents IS
    'One row per source document, newest version only; rewritten only when its content changes.';

CREATE TABLE IF NOT EXISTS ops.partition_fetches (
    source         text        NOT NULL,
    partition_date date        NOT NULL,
    run_id         text        NOT NULL,
    fetched_at     timestamptz NOT NULL,
    chunk_start    date        NOT NULL,
    chunk_end      date        NOT NULL,
    source_total   integer,
    received       integer     NOT NULL,
    landed         integer     NOT NULL,
    inserted       integer     NOT NULL,
    updated        integer     NOT NULL,
    unchanged      integer     NOT NULL,
    dead_letters   integer     NOT NULL,
    PRIMARY KEY (source, partition_date)
);
COMMENT ON TABLE ops.partition_fetches IS
    'Latest fetch of each source day: what the source reported (source_total is the total of the '
    'whole chunk query chunk_start..chunk_end) beside what was received and landed.';

CREATE TABLE IF NOT EXISTS ops.dead_letters (
    source          text        NOT NULL,
    doc_id          text        NOT NULL,
    partition_date  date        NOT NULL,
    reason          text        NOT NULL,
    stage           text        NOT NULL,
    detail          text        NOT NULL,
    payload_excerpt text        NOT NULL,
    run_id          text        NOT NULL,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, doc_id, partition_date, reason)
);
COMMENT ON TABLE ops.dead_letters IS
    'Records that could not be landed or normalized, with the reason and an excerpt of the payload.';
