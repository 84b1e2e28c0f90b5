"""Articles cut from an efetch body's bytes, without parsing them.

An article's XML is stored as the source wrote it (`ArticleSlicer`): ElementTree's serializer is
pure Python and cost more than parsing the whole body. The same cuts let a re-fetch recognise
articles byte for byte identical to those stored (`cut_articles`): their key, version and
content hash are then the stored ones, and nothing of them needs parsing.

A cut is only taken where it is certainly the element's own markup: a UTF-8 document without
comments, CDATA, processing instructions or an internal DTD subset, and no namespace declared
outside the articles. In such a document `<` only ever starts a tag, so the n-th
`<PubmedArticle` start tag is the n-th article, and an article's bytes mean the same wherever
they stand.
"""

from __future__ import annotations

import hashlib
import pyexpat
import re
from dataclasses import dataclass

_ARTICLE_START = re.compile(rb"<PubmedArticle[\s>/]")
_ARTICLE_END = b"</PubmedArticle>"
# Markup in which `<PubmedArticle` could be text rather than a tag, or declarations that give an
# article's text a meaning outside the article (entities of an internal DTD subset).
_NOT_SLICEABLE = re.compile(rb"<!--|<!\[CDATA\[|<\?(?!xml[\s?])|<!DOCTYPE[^>\[]*\[")
_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)")
# Without comments and processing instructions, the first `<` followed by a name is the root.
_FIRST_ELEMENT = re.compile(rb"<([A-Za-z_][\w.:-]*)")
_FIRST_PMID = re.compile(rb"<PMID(?:\s[^>]*)?>\s*([^<\s]+)\s*</PMID>")
_ARTICLE_SET = b"PubmedArticleSet"


class ArticleSlicer:
    """Each article's XML as the source wrote it, cut from the document's bytes, in order."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.position = 0
        self.usable = True

    @classmethod
    def of(cls, body: bytes) -> ArticleSlicer | None:
        """A slicer of `body`, or None when a cut of it could be something else than an
        article's own markup."""
        first = _ARTICLE_START.search(body)
        if first is None or _NOT_SLICEABLE.search(body) or b"xmlns" in body[: first.start()]:
            return None
        declared = _DECLARED_ENCODING.match(body)
        if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
            return None
        return cls(body)

    def next_article(self, pmid: str | None) -> str | None:
        """The next article's markup, or None (and None from then on) when it cannot be cut or
        does not hold `pmid`, the PMID the parser read off the same article."""
        cut = self.next_cut()
        if cut is None or (pmid is not None and f">{pmid}</PMID>".encode() not in cut):
            self.usable = False
            return None
        return cut.decode("utf-8")

    def next_cut(self) -> bytes | None:
        """The next article's bytes, or None (and None from then on) when there is no next
        article or it cannot be cut."""
        start = _ARTICLE_START.search(self.body, self.position) if self.usable else None
        if start is None:
            self.usable = False
            return None
        end = self.body.find(_ARTICLE_END, start.end())
        tag_end = self.body.find(b">", start.start())
        self_closing = self.body[tag_end - 1 : tag_end] == b"/"
        if end < 0 or self_closing:
            self.usable = False
            return None
        self.position = end + len(_ARTICLE_END)
        return self.body[start.start() : self.position]

    def exhausted(self) -> bool:
        """True when no article start tag follows the last cut."""
        return _ARTICLE_START.search(self.body, self.position) is None


@dataclass(frozen=True, slots=True)
class ArticleCut:
    """One article's markup. `pmid` is what its first `<PMID>` holds: a key to look a stored
    article up by, not an identity read by a parser. `digest` is the SHA-256 of the bytes."""

    pmid: str
    xml: str
    digest: bytes


def article_digest(xml: str) -> bytes:
    """The SHA-256 of an article's XML as UTF-8: what `ArticleCut.digest` is of a cut."""
    return hashlib.sha256(xml.encode("utf-8")).digest()


def cut_articles(body: bytes) -> list[ArticleCut] | None:
    """Every `<PubmedArticle>` of a `<PubmedArticleSet>` body, cut without parsing any; None
    when the body cannot be cut whole (see the module's conditions), holds something else than
    articles to act on (deleted citations), or an article has no PMID to look it up by.

    The cuts say nothing of the body's well-formedness (a body cut short after its n-th article
    cuts as n articles): check it with `check_well_formed` before relying on them.
    """
    slicer = ArticleSlicer.of(body)
    root = _FIRST_ELEMENT.search(body)
    if slicer is None or root is None or root.group(1) != _ARTICLE_SET:
        return None
    if b"<DeleteCitation" in body:
        return None
    cuts = []
    while (cut := slicer.next_cut()) is not None:
        pmid = _FIRST_PMID.search(cut)
        try:
            xml = cut.decode("utf-8")
            key = pmid.group(1).decode("utf-8") if pmid else None
        except UnicodeDecodeError:
            return None
        if key is None:
            return None
        cuts.append(ArticleCut(key, xml, hashlib.sha256(cut).digest()))
    return cuts if slicer.exhausted() else None


def check_well_formed(body: bytes) -> None:
    """Raise `ValueError` unless `body` is well-formed XML, by the rules `iter_pubmed_xml`
    parses with (a reference to an entity defined nowhere in the document is an error), without
    building anything."""

    def undefined_entity(name: str, _is_parameter_entity: bool) -> None:
        raise ValueError(f"undefined entity &{name};")

    parser = pyexpat.ParserCreate()
    parser.SkippedEntityHandler = undefined_entity
    try:
        parser.Parse(body, True)
    except pyexpat.ExpatError as exc:
        raise ValueError(str(exc)) from None
