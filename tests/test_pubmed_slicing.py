"""Articles cut from efetch bodies without parsing them, against the real sets in
../shared/realdata/pubmed: the cuts are the articles the stream parser reads, a body that cannot
be cut whole or holds anything but articles (damage included) gives none."""

from __future__ import annotations

from pathlib import Path

import pytest

from bioloupe_data.sources.pubmed import ArticleParseError, ArticleXml, iter_pubmed_xml
from bioloupe_data.sources.pubmed.slicing import article_digest, cut_articles

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
        assert [(c.pmid, c.markup.decode()) for c in cuts] == [(r.pmid, r.xml) for r in read]
        # the digest landing stores with the parsed article is the one its cut is compared by
        assert [c.digest for c in cuts] == [article_digest(r.xml) for r in read]
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
    ],
)
def test_a_body_that_cannot_be_cut_whole_gives_no_cuts(body: bytes) -> None:
    assert cut_articles(TWO_ARTICLES) is not None
    assert cut_articles(body) is None


@pytest.mark.parametrize(
    "damage",
    [
        b"&nbsp;",
        b"<Unclosed>",
        b"</PubmedArticleSet><PubmedArticleSet>",
        b"&#0;",
        b"\x0b",
        b"<PubmedBookArticle><BookDocument><PMID>5</PMID></BookDocument></PubmedBookArticle>",
    ],
    ids=["undefined-entity", "unclosed", "second-root", "bad-character", "vertical-tab", "book"],
)
def test_anything_between_the_articles_but_white_space_gives_no_cuts(damage: bytes) -> None:
    body = TWO_ARTICLES.replace(b"</PubmedArticle>\n", b"</PubmedArticle>\n" + damage, 1)
    assert cut_articles(body) is None
    if (
        damage
        != b"<PubmedBookArticle><BookDocument><PMID>5</PMID></BookDocument></PubmedBookArticle>"
    ):
        with pytest.raises(ArticleParseError, match="not well-formed"):
            list(iter_pubmed_xml(body))  # what the pipeline does with it: fetch it again


@pytest.mark.parametrize(
    "envelope",
    [
        b"<PubmedArticleSet>\n",
        b'<?xml version="1.0" encoding="UTF-8" standalone="no"?><PubmedArticleSet>',
        b"<!DOCTYPE PubmedArticleSet SYSTEM 'pubmed.dtd'>\r\n<PubmedArticleSet>\t",
    ],
)
def test_any_prolog_a_well_formed_body_may_have_is_cut(envelope: bytes) -> None:
    body = envelope + TWO_ARTICLES[TWO_ARTICLES.index(b"<PubmedArticle>") :]
    cuts = cut_articles(body)
    assert cuts is not None and [c.pmid for c in cuts] == ["101", "102"]


@pytest.mark.parametrize(
    "envelope",
    [
        b' <?xml version="1.0"?><PubmedArticleSet>',  # no declaration after white space
        b"\xef\xbb\xbf<PubmedArticleSet>",
        b"<PubmedArticleSet>\f",
        b'<PubmedArticleSet attribute="x">',
    ],
    ids=["space-before-declaration", "byte-order-mark", "form-feed", "attribute"],
)
def test_an_unusual_prolog_gives_no_cuts(envelope: bytes) -> None:
    assert cut_articles(envelope + TWO_ARTICLES[TWO_ARTICLES.index(b"<PubmedArticle>") :]) is None


def test_a_body_cut_short_gives_no_cuts() -> None:
    assert cut_articles(TWO_ARTICLES) is not None
    for end in (b"</PubmedArticleSet>", b"</PubmedArticle>\n</PubmedArticleSet>"):
        assert cut_articles(TWO_ARTICLES[: TWO_ARTICLES.index(end)]) is None
