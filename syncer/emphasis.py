"""Whether our bold or italic markers, where they ended up in a written line, are read as
emphasis by the tracker's markup, or would show as stray ``*`` and ``_``.

Both syntaxes look at the characters around a marker: textile (Redmine's RedCloth3
``QTAGS``) opens one only at a line start or after whitespace, ``>`` or ``(`` (or right
after another opener there), and closes it only before punctuation, whitespace, ``<``,
``)`` or the line end; CommonMark needs an opening run "left-flanking" and a closing run
"right-flanking" (spec 6.2). A pair that fails is dropped by the writer, so the reader
sees the text without emphasis rather than with extra characters. CommonMark's matching of
neighbouring runs (the "rule of 3") is not modelled: a CommonMark parser (markdown-it-py)
checks the line, and where the emphasis would change the text shown, it is all left out.
"""

from __future__ import annotations

import string
import unicodedata

from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt("commonmark")

_ASCII_PUNCT = frozenset(string.punctuation)


def _punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith(("P", "S"))


def _space(ch: str) -> bool:
    return ch.isspace()


def textile_pair(text: str, opener: tuple[int, int], closer: tuple[int, int]) -> bool:
    start, end = opener[0], closer[1]
    before = text[start - 1] if start else ""
    if before in "*_" and before:  # another of our openers right before: look past it
        before = text[start - 2] if start > 1 else ""
    opens = before == "" or before in ">(" or _space(before)
    after = text[end] if end < len(text) else ""
    closes = after == "" or after in "<)" or _space(after) or _punct(after)
    return opens and closes


def _run(text: str, start: int, end: int) -> tuple[str, str]:
    """The characters before and after the ``*`` run holding ``text[start:end]`` (an
    escaped ``\\*`` is no part of a run)."""
    while start > 0 and text[start - 1] == "*" and (start < 2 or text[start - 2] != "\\"):
        start -= 1
    while end < len(text) and text[end] == "*":
        end += 1
    return (text[start - 1] if start else ""), (text[end] if end < len(text) else "")


def commonmark_pair(text: str, opener: tuple[int, int], closer: tuple[int, int]) -> bool:
    before, after = _run(text, *opener)
    left = after != "" and not _space(after) and (
        not _punct(after) or before == "" or _space(before) or _punct(before))
    before, after = _run(text, *closer)
    right = before != "" and not _space(before) and (
        not _punct(before) or after == "" or _space(after) or _punct(after))
    return left and right


def _shown(line: str) -> str:
    return "".join(t.content for t in _MARKDOWN.parseInline(line)[0].children or []
                   if t.type in ("text", "code_inline", "html_inline"))


def commonmark_shows_same(line: str, plain: str) -> bool:
    """Whether ``line`` shows the same text as ``plain`` (the line without our emphasis):
    no marker left over as a stray ``*``, none eating another's."""
    return _shown(line) == _shown(plain)
