-- The core child tables lose their foreign keys to core.trials and core.publications. A foreign
-- key checks every inserted child row with a query of its own (a row-level trigger), which cost
-- about a quarter of the server's time normalizing a day. Children are written only by the
-- upsert engine, in the transaction that wrote their parent and only for parents whose upsert
-- won, and the `child_rows_have_parents` asset checks verify it. Deleting a trial or a
-- publication still deletes its children: once per statement, not once per row.
DO $$
DECLARE
    fk record;
BEGIN
    FOR fk IN
        SELECT c.conrelid::regclass AS child, c.conname
        FROM pg_constraint AS c
        WHERE c.contype = 'f'
          AND c.confrelid IN ('core.trials'::regclass, 'core.publications'::regclass)
          AND c.conrelid::regclass::text LIKE 'core.%'
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.child, fk.conname);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION core.delete_trial_children() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM core.trial_conditions AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    DELETE FROM core.trial_keywords AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    DELETE FROM core.trial_interventions AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    DELETE FROM core.trial_sponsors AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    DELETE FROM core.trial_sites AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    DELETE FROM core.trial_arms AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    DELETE FROM core.trial_references AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    DELETE FROM core.trial_countries AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    DELETE FROM core.trial_outcomes AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    DELETE FROM core.trial_browse_conditions AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    DELETE FROM core.trial_browse_interventions AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    DELETE FROM core.trial_eligibilities AS c USING gone AS g WHERE c.nct_id = g.nct_id;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS trials_delete_children ON core.trials;
CREATE TRIGGER trials_delete_children
    AFTER DELETE ON core.trials REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION core.delete_trial_children();

CREATE OR REPLACE FUNCTION core.delete_publication_children() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM core.publication_authors AS c USING gone AS g WHERE c.pmid = g.pmid;
    DELETE FROM core.publication_mesh AS c USING gone AS g WHERE c.pmid = g.pmid;
    DELETE FROM core.publication_trials AS c USING gone AS g WHERE c.pmid = g.pmid;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS publications_delete_children ON core.publications;
CREATE TRIGGER publications_delete_children
    AFTER DELETE ON core.publications REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION core.delete_publication_children();
