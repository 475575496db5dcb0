"""Reading Redmine's rendered issue page: the description and each note, as the elements
they hold and the text a reader sees.

Parsed with the standard library's HTML parser (character references decoded, as a
browser would), not with regular expressions: a customer's text that made Redmine emit a
``<div>`` must not cut the block short and hide the very evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

# Elements that start a new line on screen: their text is separated from its neighbours.
_BREAKS = frozenset({"p", "br", "div", "li", "ul", "ol", "blockquote", "pre", "table", "tr",
                     "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "hr"})
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr", "source"})


@dataclass
class Block:
    """One rendered wiki block: every element inside it and the text it shows."""

    elements: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    strong: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """What a reader sees, whitespace collapsed (HTML collapses it too)."""
        return " ".join("".join(self.parts).split())


class _Blocks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: dict[str, Block] = {}
        self._current: Block | None = None
        self._depth = 0
        self._strong_depth = 0
        self._strong_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if self._current is None:
            if tag == "div" and "wiki" in (attr.get("class") or "").split():
                ident = attr.get("id") or "description"
                match = re.fullmatch(r"journal-(\d+)-notes", ident)
                self._current = self.blocks.setdefault(match.group(1) if match else ident,
                                                       Block())
                self._depth = 1
            return
        self._current.elements.append((tag, attr))
        if tag in _BREAKS:
            self._current.parts.append(" ")
        if tag == "strong":
            self._strong_depth += 1
        if tag not in _VOID:
            self._depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._current is not None:
            self._current.elements.append((tag, dict(attrs)))
            if tag in _BREAKS:
                self._current.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self._current is None or tag in _VOID:
            return
        self._depth -= 1
        if tag in _BREAKS:
            self._current.parts.append(" ")
        if tag == "strong" and self._strong_depth:
            self._strong_depth -= 1
            if not self._strong_depth:
                self._current.strong.append("".join(self._strong_text).strip())
                self._strong_text = []
        if self._depth == 0:
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._current.parts.append(data)
            if self._strong_depth:
                self._strong_text.append(data)


def rendered_blocks(page: str) -> dict[str, Block]:
    """``"description"`` and each note's journal id -> its rendered block."""
    parser = _Blocks()
    parser.feed(page)
    parser.close()
    return parser.blocks
