-- Entities derived from the core tables (drugs, sponsors) and their profiles. Entity keys are
-- also Dagster dynamic partition keys: lowercase ascii slugs, nothing a partition key forbids.
CREATE SCHEMA IF NOT EXISTS enriched;

CREATE TABLE IF NOT EXISTS enriched.drugs (
    drug_key text PRIMARY KEY CHECK (drug_key ~ '^[a-z0-9][a-z0-9-]{0,119}$'),
    name text NOT NULL,
    synonyms text[] NOT NULL DEFAULT '{}',
    trial_count integer NOT NULL DEFAULT 0,
    -- Order of first appearance; the registering sensor's cursor.
    registered_seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE enriched.drugs IS
    'Canonical drug entities clustered from core.trial_interventions (name, code names, other names).';

CREATE TABLE IF NOT EXISTS enriched.trial_drugs (
    nct_id text NOT NULL REFERENCES core.trials (nct_id) ON DELETE CASCADE,
    drug_key text NOT NULL REFERENCES enriched.drugs (drug_key) ON DELETE CASCADE,
    PRIMARY KEY (nct_id, drug_key)
);
CREATE INDEX IF NOT EXISTS trial_drugs_drug_key ON enriched.trial_drugs (drug_key);

CREATE TABLE IF NOT EXISTS enriched.sponsors (
    sponsor_key text PRIMARY KEY CHECK (sponsor_key ~ '^[a-z0-9][a-z0-9-]{0,119}$'),
    name text NOT NULL,
    agency_class text,
    trial_count integer NOT NULL DEFAULT 0,
    registered_seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE enriched.sponsors IS
    'Sponsors (lead and collaborators) from core.trial_sponsors, one row per normalized name.';

CREATE TABLE IF NOT EXISTS enriched.drug_profiles (
    drug_key text PRIMARY KEY REFERENCES enriched.drugs (drug_key) ON DELETE CASCADE,
    modality text,
    mechanism text,
    target text,
    developer text,
    stem text,
    extracted_by text NOT NULL CHECK (extracted_by = 'rules' OR extracted_by LIKE 'llm:%'
                                      OR extracted_by = 'none'),
    prompt_version text,
    note text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS enriched.sponsor_profiles (
    sponsor_key text PRIMARY KEY REFERENCES enriched.sponsors (sponsor_key) ON DELETE CASCADE,
    sponsor_class text CHECK (sponsor_class IN
        ('industry', 'academic', 'cooperative group', 'government', 'other')),
    normalized_name text NOT NULL,
    country text,
    extracted_by text NOT NULL CHECK (extracted_by = 'rules' OR extracted_by LIKE 'llm:%'),
    prompt_version text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS enriched.site_geocodes (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    latitude double precision,
    longitude double precision,
    country_code text,
    region text,
    source text,
    reason text,
    partition_date date NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id, ordinal) REFERENCES core.trial_sites (nct_id, ordinal) ON DELETE CASCADE,
    -- Every site ends with coordinates or the reason it has none.
    CHECK ((latitude IS NOT NULL AND longitude IS NOT NULL AND source IS NOT NULL)
           OR (latitude IS NULL AND reason IS NOT NULL))
);
COMMENT ON TABLE enriched.site_geocodes IS
    'Coordinates for every trial site: the registry''s geoPoint, else the offline GeoNames '
    'gazetteer (city + state + country); country as ISO 3166 alpha-2 and UN M49 region.';

CREATE TABLE IF NOT EXISTS enriched.trial_features (
    nct_id text PRIMARY KEY REFERENCES core.trials (nct_id) ON DELETE CASCADE,
    tumor_areas text[] NOT NULL DEFAULT '{}',
    biomarkers text[] NOT NULL DEFAULT '{}',
    line_of_therapy text,
    combination_partners text[] NOT NULL DEFAULT '{}',
    extracted_by text NOT NULL CHECK (extracted_by = 'rules' OR extracted_by LIKE 'llm:%'),
    rules_version text NOT NULL,
    unresolved boolean NOT NULL,
    partition_date date NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS trial_features_tumor_areas ON enriched.trial_features
    USING gin (tumor_areas);
COMMENT ON TABLE enriched.trial_features IS
    'Tumor areas, biomarkers, line of therapy and combination partners per trial, with how '
    'each row was extracted (rules or llm:<model>) and the rules/prompt version.';
