"""A tracker comment as readable text for Re:amaze: the tracker's markup parsed by a real
parser (markdown-it-py for CommonMark and GitHub's Markdown, the ``textile`` package for
textile), the HTML it gives read into our few structures (``syncer.htmldoc``) and written
as plain text (``syncer.richtext``): links as ``text (url)``, lists as ``- `` and ``1. ``
lines, quotes as ``> `` lines, code in backticks; emphasis and our hidden markers (HTML
comments) dropped.
"""

from __future__ import annotations

import textile
from markdown_it import MarkdownIt

from syncer.htmldoc import parse_html
from syncer.markup import Markup
from syncer.richtext import write

# Redmine's common_mark, GitHub and GitLab all break a line where the author did, allow
# raw HTML (then sanitise it), and have tables and strikethrough.
_MARKDOWN = MarkdownIt("commonmark", {"html": True, "breaks": True}).enable(
    ["table", "strikethrough"])


def to_html(markup: Markup, text: str) -> str:
    if markup in ("common_mark", "gfm", "glfm"):
        return str(_MARKDOWN.render(text))
    if markup == "textile":
        return str(textile.textile(text))
    return ""


def markup_to_text(markup: Markup, text: str) -> str:
    """``text``, written in ``markup``, as a reader of the rendered page would read it."""
    if markup == "plain":
        return text
    return write("text", parse_html(to_html(markup, text)))
