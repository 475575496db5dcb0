"""A parsed message (``syncer.htmldoc``) written out in a tracker's markup, or as readable
text for Re:amaze.

The structure is ours to write; every text run inside it is customer text and goes
through the markup's escaper (``syncer.markup``) exactly as a plain body does. A line is
escaped whole, with each piece of our own markup held by a private-use placeholder the
text does not contain, so the escaper sees the customer's characters in their real
neighbourhood (``http:`` + ``//`` split over two runs is still an autolink) and our markup
is put back only afterwards. On top of the escaper, textile lines always escape ``"``,
``!``, ``_`` and ``@``: next to our own links, italics and code they could otherwise
pair with our markup.

Where a markup cannot hold a structure safely the content falls back to escaped text
(still readable): textile code whose text could end our ``<pre>``/``<code>`` early or
hold an HTML comment, a code block inside a textile list or quote, and a quote inside a
textile list item. Link targets are made safe by ``htmldoc.safe_url``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from syncer.emphasis import commonmark_pair, commonmark_shows_same, textile_pair
from syncer.htmldoc import Block, Br, Code, Inline, Link, ListBlock, Para, Pre, Quote, Span, Text
from syncer.markup import escape_commonmark, escape_gfm, escape_glfm, escape_textile

Target = Literal["text", "textile", "common_mark", "gfm", "glfm"]
_MARKDOWN = frozenset({"common_mark", "gfm", "glfm"})


@dataclass(frozen=True)
class _Raw:
    """Our own markup: written as is. ``space_after``: what follows must not touch it
    (textile's link target runs until whitespace); ``pair``: shared by the two markers
    of one bold or italic span."""

    text: str
    space_after: bool = False
    pair: object = None
    code: str | None = None  # a CommonMark code span's text


Piece = str | _Raw  # a str is text from outside, escaped on output
Line = list[Piece]

_WS = re.compile(r"[ \t\n\r\f]+")  # HTML's whitespace (not U+00A0)
_TEXTILE_UNSAFE_CODE = re.compile(r"(?i)<!|</?(?:pre|code|kbd|notextile)")
_TEXTILE_EXTRA = {c: f"&#{ord(c)};" for c in '"!_@'}


def _ws(text: str) -> str:
    return _WS.sub(" ", text)


def _plain_text(children: Sequence[Inline]) -> str:
    parts: list[str] = []
    for x in children:
        if isinstance(x, Text | Code):
            parts.append(x.text)
        elif isinstance(x, Br):
            parts.append(" ")
        else:
            parts.append(_plain_text(x.children))
    return "".join(parts)


def _backticks(text: str, least: int) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(least, longest + 1)


def _code_span(text: str) -> _Raw:
    fence = _backticks(text, 1)
    pad = " " if text.startswith("`") or text.endswith("`") or (
        text.startswith(" ") and text.endswith(" ")) else ""
    return _Raw(f"{fence}{pad}{text}{pad}{fence}", code=text)


def _merge_code(segs: list[str | _Raw]) -> list[str | _Raw]:
    """Code spans that ended up side by side as one: "`a``b`" would be one span of
    "a``b" with stray backticks."""
    out: list[str | _Raw] = []
    for s in segs:
        last = out[-1] if out else None
        if isinstance(s, _Raw) and s.code is not None and isinstance(last, _Raw) \
                and last.code is not None:
            out[-1] = _code_span(last.code + s.code)
        else:
            out.append(s)
    return out


def _joined(segs: list[str | _Raw]) -> str:
    """Segments written out; a "!" right before our "[" (the escaper leaves "!" bare
    there) is escaped, or it would turn our link into an image."""
    out = []
    for i, s in enumerate(segs):
        if isinstance(s, _Raw):
            out.append(s.text)
            continue
        nxt = segs[i + 1] if i + 1 < len(segs) else None
        out.append("\\!" if s == "!" and isinstance(nxt, _Raw) and nxt.text.startswith("[")
                   else s)
    return "".join(out)


class _Writer:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.escape: Callable[[str], str] = {
            "text": lambda s: s, "textile": self._escape_textile,
            "common_mark": escape_commonmark, "gfm": escape_gfm, "glfm": escape_glfm}[target]

    # --- inline ------------------------------------------------------------------------

    @staticmethod
    def _escape_textile(line: str) -> str:
        out = escape_textile(line)
        for c, ref in _TEXTILE_EXTRA.items():
            out = out.replace(c, ref)
        return out

    def _marks(self, kind: str) -> tuple[str, str]:
        if self.target == "textile":
            return ("*", "*") if kind == "strong" else ("_", "_")
        if self.target in _MARKDOWN:
            return ("**", "**") if kind == "strong" else ("*", "*")
        return "", ""

    def code(self, text: str) -> list[Piece]:
        text = _ws(text).strip()
        if not text:
            return []
        if self.target == "textile":
            if _TEXTILE_UNSAFE_CODE.search(text):
                return [text]
            return [_Raw(f"<code>{text}</code>")]
        return [_code_span(text)]

    def link(self, text: str, url: str) -> list[Piece]:
        shown = text or url
        if self.target == "textile":
            return [_Raw('"'), shown, _Raw(f'":{url}', space_after=True)]
        if self.target in _MARKDOWN:
            return [_Raw("["), shown, _Raw(f"]({url})")]
        if shown in (url, url.removeprefix("mailto:")):
            return [url]
        return [f"{shown} ({url})"]

    def wrap(self, kind: str, line: Line) -> Line:
        opener, closer = self._marks(kind)
        if not opener or not any(isinstance(p, _Raw) or p.strip() for p in line):
            return line
        body: Line = []
        for p in line:  # adjacent text merged, so the spaces to move out are all seen
            if isinstance(p, str) and body and isinstance(body[-1], str):
                body[-1] = _ws(body[-1] + p)
            elif p != "":
                body.append(p)
        lead = trail = ""
        if isinstance(body[0], str) and body[0] != body[0].lstrip():
            lead, body[0] = " ", body[0].lstrip()
        if isinstance(body[-1], str) and body[-1] != body[-1].rstrip():
            trail, body[-1] = " ", body[-1].rstrip()
        pair = object()
        return [lead, _Raw(opener, pair=pair), *body, _Raw(closer, pair=pair), trail]

    def lines(self, inlines: Sequence[Inline], within: frozenset[str] = frozenset()
              ) -> list[Line]:
        """``within``: the emphasis already open around these (textile reads ``**`` as
        another element, CommonMark ``****`` as text)."""
        merged: list[Inline] = []
        for x in inlines:  # <b>a</b><b>b</b> is one bold span, not "**a****b**"
            last = merged[-1] if merged else None
            if isinstance(x, Span) and isinstance(last, Span) and last.kind == x.kind:
                merged[-1] = Span(x.kind, last.children + x.children)
            elif isinstance(x, Code) and isinstance(last, Code):  # nor "`a``b`"
                merged[-1] = Code(last.text + x.text)
            else:
                merged.append(x)
        out: list[Line] = [[]]
        for x in merged:
            if isinstance(x, Text):
                out[-1].append(_ws(x.text))
            elif isinstance(x, Br):
                out.append([])
            elif isinstance(x, Code):
                out[-1].extend(self.code(x.text))
            elif isinstance(x, Span):
                for i, sub in enumerate(self.lines(x.children, within | {x.kind})):
                    if i:
                        out.append([])
                    out[-1].extend(sub if x.kind in within else self.wrap(x.kind, sub))
            elif isinstance(x, Link):
                out[-1].extend(self.link(_ws(_plain_text(x.children)).strip(), x.url))
        return out

    def finish(self, line: Line) -> str:
        """One line written out: text escaped in context, our markup put back."""
        pieces: Line = []
        for i, p in enumerate(line):
            if isinstance(p, str) and pieces and isinstance(pieces[-1], str):
                pieces[-1] = _ws(pieces[-1] + p)
            else:
                pieces.append(p)
            if isinstance(p, _Raw) and p.space_after:
                nxt = line[i + 1] if i + 1 < len(line) else None
                if nxt is not None and not (isinstance(nxt, str) and nxt[:1] in ("", " ")):
                    pieces.append(" ")
        if pieces and isinstance(pieces[0], str):
            pieces[0] = pieces[0].lstrip()
        if pieces and isinstance(pieces[-1], str):
            pieces[-1] = pieces[-1].rstrip()
        text = "".join(p for p in pieces if isinstance(p, str))
        used = set(text)
        wanted = sum(isinstance(p, _Raw) for p in pieces)
        free = list(itertools.islice((chr(c) for c in range(0xE000, 0xF900)
                                      if chr(c) not in used), wanted))
        if len(free) < wanted:
            return self.escape(text)  # absurdly many spans in one line: text only
        raws: dict[str, _Raw] = {}
        joined = []
        for p in pieces:
            if isinstance(p, _Raw):
                mark = free[len(raws)]
                raws[mark] = p
                joined.append(mark)
            else:
                joined.append(p)
        written = self.escape("".join(joined))
        return self._settle([raws.get(ch, ch) for ch in written])

    def _settle(self, segs: list[str | _Raw]) -> str:
        """The line with every emphasis pair the markup would not read as one dropped."""
        check = textile_pair if self.target == "textile" else (
            commonmark_pair if self.target in _MARKDOWN else None)
        while check is not None:
            parts: list[str] = []
            spans: dict[object, list[tuple[int, int]]] = {}
            pos = 0
            for s in segs:
                text = s.text if isinstance(s, _Raw) else s
                if isinstance(s, _Raw) and s.pair is not None:
                    spans.setdefault(s.pair, []).append((pos, pos + len(text)))
                parts.append(text)
                pos += len(text)
            full = "".join(parts)
            bad = {pair for pair, (o, c) in spans.items() if not check(full, o, c)}
            if not bad:
                break
            segs = [s for s in segs if not (isinstance(s, _Raw) and s.pair in bad)]
        line = _joined(_merge_code(segs))
        if self.target in _MARKDOWN:
            plain = _joined(_merge_code([s for s in segs
                                         if not (isinstance(s, _Raw) and s.pair)]))
            if plain != line and not commonmark_shows_same(line, plain):
                return plain
        return line

    # --- blocks ------------------------------------------------------------------------

    def para(self, p: Para, *, tight: bool) -> list[str]:
        out: list[str] = []
        for line in self.lines(p.children):
            written = self.finish(line)
            if written or (out and out[-1] and not tight):
                out.append(written)
        while out and not out[-1]:
            out.pop()
        return out

    def pre(self, p: Pre, *, nested: bool) -> list[str]:
        """A code block; in textile, inside a list or a quote (where a ``<pre>`` would take
        the markers as code, or a blank line end the list) its lines as escaped text."""
        lines = p.text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if self.target == "textile":
            if nested or _TEXTILE_UNSAFE_CODE.search(p.text):
                return [self.escape(line) for line in lines]
            return ["<pre>", *lines, "</pre>"]
        fence = _backticks(p.text, 3)
        return [fence, *lines, fence]

    def blocks(self, blocks: Sequence[Block], *, tight: bool = False,
               nested: bool = False, quoted: bool = False) -> list[str]:
        """``nested``: inside a textile list item, where only lines can go; ``quoted``:
        inside a quote."""
        out: list[str] = []
        for b in blocks:
            if isinstance(b, Para):
                lines = self.para(b, tight=tight)
            elif isinstance(b, Pre):
                lines = self.pre(b, nested=nested or quoted)
            elif isinstance(b, Quote):
                lines = self.quote(b, nested=nested)
            else:
                lines = self.items(b, nested=nested)
            if not lines:
                continue
            if out and not tight:
                out.append("")
            out.extend(lines)
        return out

    def quote(self, q: Quote, *, nested: bool) -> list[str]:
        if nested and self.target == "textile":
            return self.blocks(q.blocks, tight=True, nested=True)
        return [f"> {line}".rstrip()
                for line in self.blocks(q.blocks, nested=nested, quoted=True)]

    def items(self, lb: ListBlock, *, nested: bool, prefix: str = "") -> list[str]:
        if self.target == "textile":
            return self._textile_list(lb, nested=nested, prefix=prefix)
        out: list[str] = []
        shown = 0
        for item in lb.items:
            lines = self.blocks(item, tight=True, nested=nested)
            if not lines:
                continue  # an empty item shows nothing (and could not interrupt a paragraph)
            marker = f"{lb.start + shown}. " if lb.ordered else "- "
            shown += 1
            for j, line in enumerate(lines):
                if j == 0:
                    out.append((marker + line).rstrip())
                else:
                    out.append(" " * len(marker) + line if line else "")
        return out

    def _textile_list(self, lb: ListBlock, *, nested: bool, prefix: str) -> list[str]:
        """Textile's ``*``/``#`` items, nested by repeating the markers; where a list
        stands inside a list item's flattened quote, each item is just its lines."""
        marks = "" if nested else prefix + ("#" if lb.ordered else "*")
        out: list[str] = []
        for item in lb.items:
            first = True
            for b in item:
                if isinstance(b, ListBlock) and not nested:
                    if first:  # RedCloth nests a list in an item only after its text
                        out.append(f"{marks} &#8203;")
                    out.extend(self._textile_list(b, nested=False, prefix=marks))
                    first = False
                    continue
                for line in self.blocks([b], tight=True, nested=True):
                    if not line:
                        continue
                    # A continuation line never starts an item: escaped text cannot start
                    # with "*" or "#", and our "*" of bold is never followed by a space.
                    out.append(f"{marks} {line}" if first and marks else line)
                    first = False
        return out


def write(target: Target, blocks: Sequence[Block]) -> str:
    """``blocks`` in ``target``'s markup (``text``: readable plain text)."""
    return "\n".join(_Writer(target).blocks(blocks)).strip("\n")
