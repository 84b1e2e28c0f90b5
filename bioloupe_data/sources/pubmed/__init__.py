"""PubMed (NCBI E-utilities efetch XML): splitting responses into articles and parsing them."""

from bioloupe_data.sources.pubmed.parser import (
    CHILD_TABLES,
    PUBLICATION_COLUMNS,
    SOURCE,
    ArticleIdentity,
    ArticleParseError,
    ArticleXml,
    DeletedCitations,
    ParsedArticle,
    article_identity,
    find_nct_ids,
    iter_pubmed_xml,
    parse_article,
)

__all__ = [
    "CHILD_TABLES",
    "PUBLICATION_COLUMNS",
    "SOURCE",
    "ArticleIdentity",
    "ArticleParseError",
    "ArticleXml",
    "DeletedCitations",
    "ParsedArticle",
    "article_identity",
    "find_nct_ids",
    "iter_pubmed_xml",
    "parse_article",
]
