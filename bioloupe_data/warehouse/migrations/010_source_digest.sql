-- The SHA-256 of a document's payload as the source wrote it, where the source's own bytes are
-- what the payload keeps (PubMed: the article's XML). A re-fetch whose bytes have this digest is
-- the stored document: its key, version and content hash need not be read again.
ALTER TABLE raw.documents ADD COLUMN IF NOT EXISTS source_digest bytea;
COMMENT ON COLUMN raw.documents.source_digest IS
    'SHA-256 of the source''s bytes kept in the payload (PubMed: payload->>''xml'' as UTF-8); NULL where the payload is not the source''s bytes.';

UPDATE raw.documents
SET source_digest = sha256(convert_to(payload ->> 'xml', 'UTF8'))
WHERE source = 'pubmed' AND payload ->> 'xml' IS NOT NULL AND source_digest IS NULL;
