-- core.publications and its child tables, normalized from PubMed efetch XML (one PubmedArticle).
-- Column order matches PUBLICATION_COLUMNS / CHILD_TABLES in bioloupe_data.sources.pubmed.parser.
-- Enumerations are kept as PubMed spells them (MEDLINE, In-Process; ppublish, epublish).
-- Child rows are keyed (pmid, ordinal): ordinal is the 1-based position in the source list.
-- publication_trials.nct_id deliberately has no foreign key to core.trials: a publication may
-- cite a trial that is not in the warehouse (yet).

CREATE TABLE IF NOT EXISTS core.publications (
    pmid text NOT NULL CHECK (pmid ~ '^[1-9][0-9]*$'),
    title text,
    vernacular_title text,
    abstract text,
    journal_title text,
    journal_iso_abbreviation text,
    issn text,
    volume text,
    issue text,
    pages text,
    publication_date date,
    publication_date_precision text
        CHECK (publication_date_precision IN ('day', 'month', 'season', 'year')),
    publication_date_text text,
    publication_year integer,
    status text,
    publication_status text,
    doi text,
    pmc_id text,
    language text,
    publication_types text[] NOT NULL DEFAULT '{}',
    date_revised date,
    date_completed date,
    entrez_date date,
    keywords text[] NOT NULL DEFAULT '{}',
    nlm_unique_id text,
    article_date date,
    date_created date,
    -- Bookkeeping filled by the upsert engine.
    source_updated_at timestamptz NOT NULL,
    version_key text NOT NULL,
    content_hash text NOT NULL,
    derivation_hash text NOT NULL,
    partition_date date NOT NULL,
    normalized_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pmid),
    CHECK ((publication_date IS NULL) = (publication_date_precision IS NULL))
);
CREATE INDEX IF NOT EXISTS publications_partition_date_idx ON core.publications (partition_date);
COMMENT ON TABLE core.publications IS
    'One row per PubMed citation (PubmedArticle); publication_date is the first day of the '
    'period PubDate names, with its precision (day, month, season or year).';

CREATE TABLE IF NOT EXISTS core.publication_authors (
    pmid text NOT NULL,
    ordinal integer NOT NULL CHECK (ordinal >= 1),
    last_name text,
    fore_name text,
    initials text,
    suffix text,
    collective_name text,
    affiliations text[] NOT NULL DEFAULT '{}',
    orcid text CHECK (orcid ~ '^[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{3}[0-9X]$'),
    is_valid boolean,
    PRIMARY KEY (pmid, ordinal),
    FOREIGN KEY (pmid) REFERENCES core.publications (pmid) ON DELETE CASCADE
);
COMMENT ON TABLE core.publication_authors IS
    'Authors in byline order; a group author has only collective_name.';

CREATE TABLE IF NOT EXISTS core.publication_mesh (
    pmid text NOT NULL,
    ordinal integer NOT NULL CHECK (ordinal >= 1),
    descriptor text,
    descriptor_ui text,
    is_major_topic boolean NOT NULL,
    qualifiers text[] NOT NULL DEFAULT '{}',
    major_qualifiers text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (pmid, ordinal),
    FOREIGN KEY (pmid) REFERENCES core.publications (pmid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS publication_mesh_descriptor_idx ON core.publication_mesh (descriptor);
COMMENT ON TABLE core.publication_mesh IS
    'MeSH headings; is_major_topic when the descriptor or any of its qualifiers is major.';

CREATE TABLE IF NOT EXISTS core.publication_trials (
    pmid text NOT NULL,
    ordinal integer NOT NULL CHECK (ordinal >= 1),
    nct_id text NOT NULL CHECK (nct_id ~ '^NCT[0-9]{8}$'),
    origin text NOT NULL CHECK (origin IN ('databank', 'title', 'abstract')),
    PRIMARY KEY (pmid, ordinal),
    UNIQUE (pmid, nct_id),
    FOREIGN KEY (pmid) REFERENCES core.publications (pmid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS publication_trials_nct_id_idx ON core.publication_trials (nct_id);
COMMENT ON TABLE core.publication_trials IS
    'ClinicalTrials.gov ids a publication names: origin databank (DataBankList accession), '
    'title or abstract (NCT ids in the text); one row per nct_id, strongest origin kept.';
