-- core.trials and its child tables, normalized from ClinicalTrials.gov API v2 study records.
-- Column names follow AACT (CTTI's ClinicalTrials.gov database) wherever the concept is the same;
-- column order matches TRIAL_COLUMNS / CHILD_TABLES in bioloupe_data.sources.clinicaltrials.parser.
-- Enumerations are kept as the API spells them (PHASE2, RECRUITING, ACTUAL).
-- Child rows are keyed (nct_id, ordinal): ordinal is the 0-based position in the source list.

CREATE TABLE IF NOT EXISTS core.trials (
    nct_id text NOT NULL,
    brief_title text,
    official_title text,
    acronym text,
    overall_status text,
    last_known_status text,
    why_stopped text,
    phase text,
    study_type text,
    enrollment integer,
    enrollment_type text,
    start_month_year text,
    start_date date,
    start_date_precision text CHECK (start_date_precision IN ('day', 'month', 'year')),
    start_date_type text,
    primary_completion_month_year text,
    primary_completion_date date,
    primary_completion_date_precision text
        CHECK (primary_completion_date_precision IN ('day', 'month', 'year')),
    primary_completion_date_type text,
    completion_month_year text,
    completion_date date,
    completion_date_precision text
        CHECK (completion_date_precision IN ('day', 'month', 'year')),
    completion_date_type text,
    verification_month_year text,
    verification_date date,
    study_first_submitted_date date,
    study_first_posted_date date,
    results_first_posted_date date,
    last_update_submitted_date date,
    last_update_posted_date date,
    source text,
    source_class text,
    org_study_id text,
    brief_summary text,
    detailed_description text,
    has_results boolean,
    number_of_arms integer,
    allocation text,
    intervention_model text,
    primary_purpose text,
    masking text,
    has_dmc boolean,
    is_fda_regulated_drug boolean,
    is_fda_regulated_device boolean,
    nct_id_aliases text[] NOT NULL DEFAULT '{}',
    -- Bookkeeping filled by the upsert engine.
    source_updated_at timestamptz NOT NULL,
    version_key text NOT NULL,
    content_hash text NOT NULL,
    derivation_hash text NOT NULL,
    partition_date date NOT NULL,
    normalized_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (nct_id)
);
CREATE INDEX IF NOT EXISTS trials_partition_date_idx ON core.trials (partition_date);
COMMENT ON TABLE core.trials IS
    'One row per ClinicalTrials.gov study; corresponds to AACT studies (with designs and calculated_values fields).';

CREATE TABLE IF NOT EXISTS core.trial_conditions (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    name text,
    downcase_name text,
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_conditions IS
    'Conditions as entered by the sponsor; corresponds to AACT conditions.';

CREATE TABLE IF NOT EXISTS core.trial_keywords (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    name text,
    downcase_name text,
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_keywords IS
    'Keywords as entered by the sponsor; corresponds to AACT keywords.';

CREATE TABLE IF NOT EXISTS core.trial_interventions (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    intervention_type text,
    name text,
    description text,
    other_names text[] NOT NULL DEFAULT '{}',
    arm_group_labels text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_interventions IS
    'Interventions; corresponds to AACT interventions (other_names: intervention_other_names).';

CREATE TABLE IF NOT EXISTS core.trial_sponsors (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    agency_class text,
    lead_or_collaborator text CHECK (lead_or_collaborator IN ('lead', 'collaborator')),
    name text,
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_sponsors IS
    'Lead sponsor (ordinal 0) then collaborators; corresponds to AACT sponsors.';

CREATE TABLE IF NOT EXISTS core.trial_sites (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    status text,
    name text,
    city text,
    state text,
    zip text,
    country text,
    latitude double precision,
    longitude double precision,
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_sites IS
    'One row per study location entry, duplicates included; corresponds to AACT facilities.';

CREATE TABLE IF NOT EXISTS core.trial_arms (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    group_type text,
    title text,
    description text,
    intervention_names text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_arms IS
    'Arm groups; corresponds to AACT design_groups.';

CREATE TABLE IF NOT EXISTS core.trial_references (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    pmid text,
    reference_type text,
    citation text,
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_references IS
    'Literature references; corresponds to AACT study_references.';

CREATE TABLE IF NOT EXISTS core.trial_countries (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    name text,
    removed boolean,
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_countries IS
    'Distinct site countries, then removed countries; corresponds to AACT countries.';

CREATE TABLE IF NOT EXISTS core.trial_outcomes (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    outcome_type text CHECK (outcome_type IN ('primary', 'secondary', 'other')),
    measure text,
    time_frame text,
    description text,
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_outcomes IS
    'Registered primary, secondary and other outcome measures; corresponds to AACT design_outcomes.';

CREATE TABLE IF NOT EXISTS core.trial_browse_conditions (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    mesh_id text,
    mesh_term text,
    downcase_mesh_term text,
    mesh_type text CHECK (mesh_type IN ('mesh-list', 'mesh-ancestor')),
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_browse_conditions IS
    'MeSH terms derived from conditions; corresponds to AACT browse_conditions.';

CREATE TABLE IF NOT EXISTS core.trial_browse_interventions (
    nct_id text NOT NULL,
    ordinal integer NOT NULL,
    mesh_id text,
    mesh_term text,
    downcase_mesh_term text,
    mesh_type text CHECK (mesh_type IN ('mesh-list', 'mesh-ancestor')),
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_browse_interventions IS
    'MeSH terms derived from interventions; corresponds to AACT browse_interventions.';

CREATE TABLE IF NOT EXISTS core.trial_eligibilities (
    nct_id text NOT NULL,
    ordinal integer NOT NULL CHECK (ordinal = 0),
    sampling_method text,
    gender text,
    gender_based boolean,
    minimum_age text,
    maximum_age text,
    healthy_volunteers boolean,
    population text,
    criteria text,
    std_ages text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (nct_id, ordinal),
    FOREIGN KEY (nct_id) REFERENCES core.trials (nct_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.trial_eligibilities IS
    'Eligibility criteria, one row per study; corresponds to AACT eligibilities.';
