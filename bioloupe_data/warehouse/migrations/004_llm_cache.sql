-- Cache of LLM structured extractions, so re-runs and backfills never pay for the same call twice.
-- Keyed by the model, the prompt version (bumped whenever the prompt or the output schema changes)
-- and the sha256 of the canonical JSON of the input payload
-- (bioloupe_data.enrichment.llm.input_hash). Only responses that parsed and matched the schema
-- are stored; failed calls leave no row. Token counts are NULL when the server sent no `usage`.
CREATE SCHEMA IF NOT EXISTS ops;

CREATE TABLE IF NOT EXISTS ops.llm_cache (
    model             text        NOT NULL,
    prompt_version    text        NOT NULL,
    input_hash        text        NOT NULL,
    response          jsonb       NOT NULL,
    prompt_tokens     integer     CHECK (prompt_tokens >= 0),
    completion_tokens integer     CHECK (completion_tokens >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, prompt_version, input_hash)
);
COMMENT ON TABLE ops.llm_cache IS
    'Validated LLM responses keyed by (model, prompt_version, input_hash); written once, never updated.';
COMMENT ON COLUMN ops.llm_cache.input_hash IS
    'sha256 (hex) of the input payload as canonical JSON (sorted keys, no whitespace, UTF-8).';
COMMENT ON COLUMN ops.llm_cache.prompt_tokens IS
    'Tokens the API reported for the prompt; NULL when the response carried no usage.';
