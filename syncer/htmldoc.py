"""An HTML message read into the few structures a copy keeps: paragraphs and line breaks,
lists (nested, ordered or not), quotes, code (inline and blocks), links, bold and italic.

Parsed by Beautiful Soup (with the standard library's parser), so the structure comes from
the document, never from patterns over the text. Everything else is read for its text
alone: an image becomes its alt text, a table row its cells' text; what a reader never
sees (comments, scripts, styles, the head) is dropped. Text stays as it came here: the
renderers escape it for each markup (``syncer.richtext``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning
from bs4.element import NavigableString, Tag

# --- the document ----------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Br:
    pass


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Span:
    kind: Literal["strong", "em"]
    children: tuple[Inline, ...]


@dataclass(frozen=True)
class Link:
    url: str  # already made safe (``safe_url``)
    children: tuple[Inline, ...]


Inline = Text | Br | Code | Span | Link


@dataclass(frozen=True)
class Para:
    children: tuple[Inline, ...]


@dataclass(frozen=True)
class ListBlock:
    ordered: bool
    start: int
    items: tuple[tuple[Block, ...], ...]


@dataclass(frozen=True)
class Quote:
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Pre:
    text: str


Block = Para | ListBlock | Quote | Pre


# --- links -------------------------------------------------------------------------------

_SCHEMES = frozenset({"http", "https", "mailto"})
# Kept as they are: what URLs need and no markup can start with. Everything else (spaces,
# quotes, brackets, "!", "*", "_", "~", "<", ">", non-ASCII) is percent-encoded, so a URL
# cannot end a link early, open emphasis or an image, or carry an HTML tag.
_URL_SAFE = "-.:/?#&=+,;%$"


def safe_url(href: str | None) -> str | None:
    """``href`` as a link target we may write, or None: http, https and mailto only (a
    ``javascript:`` or ``data:`` link becomes plain text)."""
    # As browsers read it: outer spaces and control characters never count.
    href = "".join(ch for ch in (href or "").strip() if ch >= " " and ch != "\x7f")
    try:
        scheme = urlsplit(href).scheme.lower()
    except ValueError:
        return None
    if scheme not in _SCHEMES:
        return None
    # "@" after a non-word character is a mention to Redmine, which scans the raw text.
    out = []
    for i, ch in enumerate(href):
        if ch == "@":
            prev = href[i - 1] if i else ""
            out.append("@" if prev.isascii() and (prev.isalnum() or prev == "_") else "%40")
        else:
            out.append(quote(ch, safe=_URL_SAFE))
    return "".join(out)


# --- reading HTML ------------------------------------------------------------------------

_DROP = frozenset({"script", "style", "head", "title", "template", "noscript", "iframe",
                   "object", "embed", "svg", "math", "select", "button"})
_LIST = frozenset({"ul", "ol", "menu"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCK = frozenset({"p", "div", "section", "article", "header", "footer", "main", "nav",
                    "aside", "address", "figure", "figcaption", "center", "form", "fieldset",
                    "dl", "dt", "dd", "li", "table", "thead", "tbody", "tfoot", "caption",
                    "hr", "body", "html", "details", "summary"})
_STRONG = frozenset({"b", "strong"})
_EM = frozenset({"i", "em", "cite", "dfn", "var"})
_CODE = frozenset({"code", "tt", "kbd", "samp"})


def _inline(node: Tag) -> list[Inline]:
    out: list[Inline] = []
    for child in node.children:
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # not a comment, doctype or CDATA
                out.append(Text(str(child)))
            continue
        if not isinstance(child, Tag):
            continue
        out.extend(_inline_tag(child))
    return out


def _inline_tag(tag: Tag) -> list[Inline]:
    name = tag.name.lower()
    if name in _DROP:
        return []
    if name == "br":
        return [Br()]
    if name == "img":
        alt = tag.get("alt")
        return [Text(f" {alt} ")] if isinstance(alt, str) and alt.strip() else []
    if name in _CODE:
        return [Code(tag.get_text())]
    if name == "a":
        href = tag.get("href")
        url = safe_url(href if isinstance(href, str) else None)
        kids = tuple(_inline(tag))
        return [Link(url, kids)] if url is not None else list(kids)
    if name in _STRONG or name in _HEADINGS:
        return [Span("strong", tuple(_inline(tag)))]
    if name in _EM:
        return [Span("em", tuple(_inline(tag)))]
    if name == "tr":
        cells = [c for c in tag.children if isinstance(c, Tag) and c.name in ("td", "th")]
        row: list[Inline] = [Br()]
        for i, cell in enumerate(cells):
            row.extend([Text(" | ")] if i else [])
            row.extend(_inline(cell))
        return [*row, Br()]
    if name in _BLOCK or name in _LIST or name in ("blockquote", "pre"):
        return [Br(), *_inline(tag), Br()]
    return _inline(tag)


def _blocks(node: Tag) -> list[Block]:
    out: list[Block] = []
    pending: list[Inline] = []

    def flush() -> None:
        if any(not (isinstance(x, Text) and not x.text.strip()) and not isinstance(x, Br)
               for x in pending):
            out.append(Para(tuple(pending)))
        pending.clear()

    for child in node.children:
        if not isinstance(child, Tag):
            if type(child) is NavigableString:
                pending.append(Text(str(child)))
            continue
        name = child.name.lower()
        if name in _LIST:
            flush()
            items = [c for c in child.children if isinstance(c, Tag) and c.name == "li"]
            start = child.get("start")
            number = int(start) if isinstance(start, str) and start.isdigit() else 1
            out.append(ListBlock(name == "ol", number, tuple(tuple(_blocks(li))
                                                              for li in items)))
        elif name == "blockquote":
            flush()
            out.append(Quote(tuple(_blocks(child))))
        elif name == "pre":
            flush()
            out.append(Pre(child.get_text().strip("\n")))
        elif name in _HEADINGS:
            flush()
            out.append(Para((Span("strong", tuple(_inline(child))),)))
        elif name in _BLOCK and name != "li":
            flush()
            out.extend(_blocks(child))
        else:
            pending.extend(_inline_tag(child))
    flush()
    return out


def parse_html(html: str) -> tuple[Block, ...]:
    """The blocks of an HTML message (a fragment or a whole document)."""
    with warnings.catch_warnings():
        # A message that is only a URL or a file name is still a message.
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(html, "html.parser")
    return tuple(_blocks(soup))
