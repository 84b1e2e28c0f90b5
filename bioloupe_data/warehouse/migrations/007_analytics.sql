-- The analytics layer: the competitive landscape per day and tumor area, and the rollups written
-- by the pandas I/O manager. Everything here is derived from core and enriched and can be
-- recomputed at any time; `tumor_area` holds the `tumor_area` partition keys (the values of
-- enriched.trial_features.tumor_areas).
CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE IF NOT EXISTS analytics.landscape (
    day          date        NOT NULL,
    tumor_area   text        NOT NULL,
    dimension    text        NOT NULL
        CHECK (dimension IN ('total', 'phase', 'status', 'modality', 'sponsor_class', 'region')),
    category     text        NOT NULL,
    trial_count  integer     NOT NULL CHECK (trial_count > 0),
    entity_count integer     NOT NULL CHECK (entity_count >= 0),
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tumor_area, day, dimension, category)
);
CREATE INDEX IF NOT EXISTS landscape_day_idx ON analytics.landscape (day, dimension);
COMMENT ON TABLE analytics.landscape IS
    'The landscape of each tumor area on each day (partition day|tumor_area), one row per '
    '(dimension, category) with at least one active trial. A trial is active from its start date '
    '(else first posted date) to its completion date (else primary completion, else last update); '
    'trials the registry still lists as not yet recruiting, recruiting, enrolling by invitation, '
    'active not recruiting or suspended stay active until today. Interventional studies only; '
    'withdrawn studies never count. Computed from the current warehouse: the registry keeps no '
    'history of statuses or sponsors.';
COMMENT ON COLUMN analytics.landscape.dimension IS
    'total (category all), phase (registry phase, unspecified when empty), status (the '
    'registry''s current overall status), modality (enriched.drug_profiles, unknown without one), '
    'sponsor_class (enriched.sponsor_profiles of lead and collaborators, unknown without one), '
    'region (UN M49 region of the sites, enriched.site_geocodes, unknown when not placed).';
COMMENT ON COLUMN analytics.landscape.trial_count IS
    'Active trials in the category that day: for modality, trials testing a drug of it; for '
    'sponsor_class, trials with a sponsor of it; for region, trials with a site in it. A trial '
    'may count in several categories of one dimension.';
COMMENT ON COLUMN analytics.landscape.entity_count IS
    'What the dimension counts that day: distinct drugs (modality), distinct sponsors '
    '(sponsor_class), sites (region); equal to trial_count for total, phase and status.';
COMMENT ON COLUMN analytics.landscape.computed_at IS
    'When the row was last written; a recomputation that changes nothing leaves it.';

CREATE TABLE IF NOT EXISTS analytics.sponsor_pipelines (
    tumor_area       text    NOT NULL,
    sponsor_key      text    NOT NULL,
    drug_key         text    NOT NULL,
    phase            text    NOT NULL,
    sponsor_name     text    NOT NULL,
    sponsor_class    text    NOT NULL,
    drug_name        text    NOT NULL,
    modality         text    NOT NULL,
    trials           integer NOT NULL CHECK (trials > 0),
    ongoing_trials   integer NOT NULL CHECK (ongoing_trials >= 0),
    first_start_date date,
    highest_phase    text    NOT NULL,
    PRIMARY KEY (tumor_area, sponsor_key, drug_key, phase)
);
COMMENT ON TABLE analytics.sponsor_pipelines IS
    'Each lead sponsor''s drugs by phase in a tumor area (partition tumor_area): the '
    'interventional trials it leads that test the drug (enriched.trial_drugs), per registry '
    'phase; highest_phase is the most advanced phase of the sponsor''s trials of the drug in the '
    'area. Written by the pandas I/O manager, one tumor area per slice.';
COMMENT ON COLUMN analytics.sponsor_pipelines.ongoing_trials IS
    'Trials the registry lists as not yet recruiting, recruiting, enrolling by invitation, '
    'active not recruiting or suspended.';

CREATE TABLE IF NOT EXISTS analytics.drug_phases (
    tumor_area       text    NOT NULL,
    drug_key         text    NOT NULL,
    phase            text    NOT NULL,
    drug_name        text    NOT NULL,
    modality         text    NOT NULL,
    trials           integer NOT NULL CHECK (trials > 0),
    ongoing_trials   integer NOT NULL CHECK (ongoing_trials >= 0),
    sponsors         integer NOT NULL CHECK (sponsors > 0),
    first_start_date date,
    highest_phase    text    NOT NULL,
    PRIMARY KEY (tumor_area, drug_key, phase)
);
COMMENT ON TABLE analytics.drug_phases IS
    'Each drug''s interventional trials per phase in a tumor area (partition tumor_area), over '
    'all lead sponsors (sponsors: how many lead them); rolled up from '
    'analytics.sponsor_pipelines. Written by the pandas I/O manager, one tumor area per slice.';
