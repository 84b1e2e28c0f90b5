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
import re
from dataclasses import dataclass

_ARTICLE_START = re.compile(rb"<PubmedArticle[\s>/]")
_ARTICLE_END = b"</PubmedArticle>"
# Markup in which `<PubmedArticle` could be text rather than a tag, or declarations that give an
# article's text a meaning outside the article (entities of an internal DTD subset).
_NOT_SLICEABLE = re.compile(rb"<!--|<!\[CDATA\[|<\?(?!xml[\s?])|<!DOCTYPE[^>\[]*\[")
_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)")
# What an efetch body holds before its articles: an XML declaration (UTF-8), a DOCTYPE without
# an internal subset, and the set's start tag without attributes. `~` is XML's white space
# (not \f or \v, which XML does not allow).
_ENVELOPE_START = re.compile(
    rb"""
    (?:<\?xml~+version~*=~*(["'])1\.[0-9]+\1
       (?:~+encoding~*=~*(["'])(?i:utf-?8)\2)?
       (?:~+standalone~*=~*(["'])(?:yes|no)\3)?~*\?>)?
    ~*(?:<!DOCTYPE~+PubmedArticleSet
         (?:~+PUBLIC~+(?:"[^"<>]*"|'[^'<>]*')~+(?:"[^"<>]*"|'[^'<>]*')
           |~+SYSTEM~+(?:"[^"<>]*"|'[^'<>]*'))?~*>)?
    ~*<PubmedArticleSet>
    """.replace(b"~", rb"[ \t\r\n]"),
    re.VERBOSE,
)
_ENVELOPE_END = re.compile(rb"[ \t\r\n]*</PubmedArticleSet>[ \t\r\n]*")
_FIRST_PMID = re.compile(rb"<PMID(?:\s[^>]*)?>\s*([^<\s]+)\s*</PMID>")


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
    """One article's bytes as the body holds them. `pmid` is what its first `<PMID>` holds: a
    key to look a stored article up by, not an identity read by a parser."""

    pmid: str
    markup: bytes

    @property
    def digest(self) -> bytes:
        """The SHA-256 of the bytes (taken when asked: a new article's is never compared)."""
        return hashlib.sha256(self.markup).digest()


def article_digest(xml: str) -> bytes:
    """The SHA-256 of an article's XML as UTF-8: a cut's `digest` when the XML is the cut."""
    return hashlib.sha256(xml.encode("utf-8")).digest()


def cut_articles(body: bytes) -> list[ArticleCut] | None:
    """Every `<PubmedArticle>` of a body made of its articles and nothing else, cut without
    parsing any; None for any other body.

    "Nothing else": an XML declaration (UTF-8), a DOCTYPE without an internal subset,
    `<PubmedArticleSet>`, the articles with only whitespace between them, `</PubmedArticleSet>`;
    no deleted citations, book articles or damage between the articles. Every article also has
    a PMID to look it up by. Whether each cut is a well-formed article is not checked: a cut
    whose bytes are those of an article already parsed and stored (its `digest`) is, and then
    so is the body.
    """
    envelope = _ENVELOPE_START.match(body)
    slicer = ArticleSlicer.of(body)
    if envelope is None or slicer is None:
        return None
    cuts = []
    end = envelope.end()
    while (cut := slicer.next_cut()) is not None:
        start = slicer.position - len(cut)
        pmid = _FIRST_PMID.search(cut)
        if body[end:start].strip(b" \t\r\n") or pmid is None:
            return None
        cuts.append(ArticleCut(pmid.group(1).decode("utf-8", errors="replace"), cut))
        end = slicer.position
    if not slicer.exhausted() or not _ENVELOPE_END.fullmatch(body, end):
        return None
    return cuts
