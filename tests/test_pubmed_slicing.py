"""Articles cut from efetch bodies without parsing them, against the real sets in
../shared/realdata/pubmed: the cuts are the articles the stream parser reads, a body that cannot
be cut whole gives none, and well-formedness is judged as the stream parser judges it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bioloupe_data.sources.pubmed import ArticleParseError, ArticleXml, iter_pubmed_xml
from bioloupe_data.sources.pubmed.slicing import check_well_formed, cut_articles

PUBMED = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "pubmed"
BODIES = sorted((PUBMED / "sets").glob("*.xml")) + sorted((PUBMED / "articles").glob("*.xml"))

TWO_ARTICLES = (
    b'<?xml version="1.0"?>\n'
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
    b"<PubmedArticleSet>\n"
    b'<PubmedArticle><MedlineCitation><PMID Version="1">101</PMID><Article>'
    b"<ArticleTitle>First &amp; <i>one</i></ArticleTitle></Article></MedlineCitation>"
    b"</PubmedArticle>\n"
    b'<PubmedArticle><MedlineCitation><PMID Version="2">102</PMID><Article>'
    b"<ArticleTitle>Second</ArticleTitle></Article></MedlineCitation></PubmedArticle>\n"
    b"</PubmedArticleSet>\n"
)


def test_the_cuts_of_every_real_body_are_the_articles_the_stream_parser_reads() -> None:
    cut_bodies = 0
    for path in BODIES:
        body = path.read_bytes()
        cuts = cut_articles(body)
        if b"<DeleteCitation" in body:
            assert cuts is None, path.name  # an update file is more than its articles
            continue
        assert cuts is not None, path.name
        read = [r for r in iter_pubmed_xml(body) if isinstance(r, ArticleXml)]
        assert [(c.pmid, c.xml) for c in cuts] == [(r.pmid, r.xml) for r in read], path.name
        assert all(c.digest == hashlib.sha256(c.xml.encode()).digest() for c in cuts)
        check_well_formed(body)
        cut_bodies += 1
    assert cut_bodies > 200


@pytest.mark.parametrize(
    "body",
    [
        TWO_ARTICLES.replace(b"<PubmedArticle>", b"<!-- <PubmedArticle> --><PubmedArticle>", 1),
        TWO_ARTICLES.replace(b"First", b"<![CDATA[</PubmedArticle><PubmedArticle>]]>"),
        TWO_ARTICLES.replace(b"</PubmedArticle>\n", b"</PubmedArticle><?pi x?>", 1),
        TWO_ARTICLES.replace(b"<PubmedArticleSet>", b"<PubmedArticleSet xmlns:m='urn:m'>"),
        TWO_ARTICLES.replace(b"<PubmedArticleSet>\n", b"<PubmedArticleSet><PubmedArticle/>"),
        TWO_ARTICLES.replace(b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="latin1"?>'),
        TWO_ARTICLES.replace(b"</PubmedArticleSet>", b"<DeleteCitation><PMID>7</PMID>"),
        TWO_ARTICLES.replace(b'<PMID Version="2">102</PMID>', b""),
        TWO_ARTICLES.replace(b"</PubmedArticle>\n</PubmedArticleSet>", b"</Article>"),
        TWO_ARTICLES.replace(b"PubmedArticleSet>", b"eFetchResult>"),
        TWO_ARTICLES.replace(b"First", b"F\xefrst"),
    ],
    ids=[
        "comment",
        "cdata",
        "instruction",
        "namespace",
        "empty-article",
        "latin-1",
        "deletions",
        "no-pmid",
        "unclosed-article",
        "other-root",
        "not-utf-8",
    ],
)
def test_a_body_that_cannot_be_cut_whole_gives_no_cuts(body: bytes) -> None:
    assert cut_articles(TWO_ARTICLES) is not None
    assert cut_articles(body) is None


def test_a_body_cut_short_after_an_article_cuts_but_is_not_well_formed() -> None:
    short = TWO_ARTICLES[: TWO_ARTICLES.index(b"</PubmedArticleSet>")]
    cuts = cut_articles(short)
    assert cuts is not None and [c.pmid for c in cuts] == ["101", "102"]
    with pytest.raises(ValueError, match="no element found"):
        check_well_formed(short)
    with pytest.raises(ArticleParseError, match="not well-formed"):
        list(iter_pubmed_xml(short))


@pytest.mark.parametrize(
    "damage",
    [b"&nbsp;", b"<Unclosed>", b"</PubmedArticleSet><PubmedArticleSet>", b"&#0;"],
    ids=["undefined-entity", "unclosed-element", "second-root", "bad-character"],
)
def test_damage_between_articles_is_found_as_the_stream_parser_finds_it(damage: bytes) -> None:
    body = TWO_ARTICLES.replace(b"</PubmedArticle>\n", b"</PubmedArticle>" + damage, 1)
    assert cut_articles(body) is not None  # the articles themselves cut as before
    with pytest.raises(ValueError):
        check_well_formed(body)
    with pytest.raises(ArticleParseError, match="not well-formed"):
        list(iter_pubmed_xml(body))
