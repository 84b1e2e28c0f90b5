-- Which extractor produced each trial-feature value ('rules' or 'llm:<model>'), so rows that
-- mix rules and LLM values say which is which.
ALTER TABLE enriched.trial_features
    ADD COLUMN IF NOT EXISTS value_sources jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN enriched.trial_features.value_sources IS
    'Extractor of each non-empty feature value, e.g. {"tumor_areas": "rules", '
    '"line_of_therapy": "llm:gpt-4o-mini"}; extracted_by is llm:<model> when any value is.';
