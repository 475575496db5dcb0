"""Escaping text from outside for the tracker's markup (syncer/markup.py).

The tables pin what each hostile input is written as; the property tests check that no
character is lost (undoing the escapes the way each renderer reads them gives the input
back). Whether Redmine then really shows plain text is for the real-server test
(tests/test_redmine_markup_real.py).
"""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.markup import Markup, escape, escape_commonmark, escape_textile, strong

Z = "\u200b"

# (input, as written for textile, as written for common_mark)
HOSTILE = [
    # an HTML comment would swallow everything up to the next "-->" (our marker's)
    ("<!-- hidden", "&#60;&#33;&#45;&#45; hidden", f"\\<!{Z}-- hidden"),
    ("-->", "&#45;&#45;&#62;", "\\--\\>"),
    # macros run on the raw text: "{{" must never stand
    ("{{collapse}}", "&#123;&#123;collapse&#125;&#125;", "\\{\\{collapse\\}\\}"),
    ("{{include(x)}}", "&#123;&#123;include&#40;x&#41;&#125;&#125;",
     "\\{\\{include(x)\\}\\}"),
    # images from elsewhere, in both syntaxes and as HTML
    ("!http://evil/x.png!", "&#33;http&#58;//evil/x.png!", f"!{Z}http\\://evil/x.png!"),
    ("![](http://evil/x.png)", "&#33;&#91;&#93;&#40;http&#58;//evil/x.png&#41;",
     "!\\[\\](http\\://evil/x.png)"),
    ('<img src="http://evil/x.png">', '&#60;img src="http&#58;//evil/x.png"&#62;',
     '\\<img src="http\\://evil/x.png"\\>'),
    ("<script>alert(1)</script>", "&#60;script&#62;alert&#40;1&#41;&#60;/script&#62;",
     "\\<script\\>alert(1)\\</script\\>"),
    # emphasis and blocks
    ("*bold*", "&#42;bold&#42;", "\\*bold\\*"),
    ("_it_", "&#95;it_", "\\_it\\_"),
    ("h1. title", "h1&#46; title", "h1. title"),
    ("p{color:red}. x", "p&#123;color:red&#125;. x", "p\\{color:red\\}. x"),
    ("# heading", "&#35; heading", "\\# heading"),
    ("> quote", "&#62; quote", "\\> quote"),
    ("| table |", "&#124; table &#124;", "\\| table \\|"),
    ("`code`", "`code`", "\\`code\\`"),
    ("    indented", "&#32;&#32;&#32;&#32;indented", "&#32;&#32;&#32;&#32;indented"),
    ("\tx", "&#9;x", "&#9;x"),
    ("1. item", "1. item", "1\\. item"),
    ("- item", "&#45; item", "\\- item"),
    ("Title\n===", "Title\n&#61;&#61;&#61;", "Title\n\\==="),
    # Redmine's own links, found in the rendered text
    ("@user", "&#64;user", "@user"),  # mentions: render.neutralise_mentions's job
    ("#123", "&#35;123", f"\\#{Z}123"),
    ("user:admin", "user&#58;admin", f"user{Z}:admin"),
    ("r12", "&#114;12", f"r{Z}12"),
    ("!:x", "&#33;:x", f"!{Z}:x"),
    ("www.evil.example", "www&#46;evil.example", "www\\.evil.example"),
    # what must show literally
    ("&#64;", "&#38;&#35;64;", f"\\&\\#{Z}64;"),
    ("x%x%", "x&#37;x&#37;", "x%x%"),
    ("a\\b", "a\\b", "a\\\\b"),
    # ordinary text is written unchanged (or nearly)
    ("naïve 日本 🚀", "naïve 日本 🚀", "naïve 日本 🚀"),
    ("carol@example.com", "carol@example.com", "carol@example.com"),
    ("Since the update it crashes.", "Since the update it crashes.",
     "Since the update it crashes."),
    ("snake_case e-mail 2026-01-02", "snake_case e-mail 2026-01-02",
     "snake\\_case e-mail 2026-01-02"),
    ("line\r\nnext\rlast", "line\nnext\nlast", "line\nnext\nlast"),
]


@pytest.mark.parametrize(("text", "textile", "common_mark"), HOSTILE,
                         ids=[repr(h[0])[1:-1][:30] for h in HOSTILE])
def test_hostile_text_is_written_inert(text: str, textile: str, common_mark: str) -> None:
    """Each construct is broken where it would start, and nowhere else."""
    assert escape("textile", text) == textile
    assert escape("common_mark", text) == common_mark


@pytest.mark.parametrize("text", [h[0] for h in HOSTILE])
def test_plain_trackers_get_the_text_as_it_is(text: str) -> None:
    """A tracker that shows text verbatim needs no escaping at all."""
    assert escape("plain", text) == text


@pytest.mark.parametrize(("markup", "expected"), [
    ("textile", "*Jane*"), ("common_mark", "**Jane**"), ("plain", "Jane")])
def test_our_emphasis_in_each_syntax(markup: Markup, expected: str) -> None:
    """Bold is *x* in textile and **x** in CommonMark; plain text has none."""
    assert strong(markup, "Jane") == expected


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


_CM_READ = re.compile(r"\\([!-/:-@\[-`{-~])|&#(\d+);|" + Z)


def _read_commonmark(written: str) -> str:
    """What CommonMark shows for text made only of escapes, references and our U+200B."""
    return _CM_READ.sub(lambda m: m.group(1) or (chr(int(m.group(2))) if m.group(2) else ""),
                        written)


TEXT = st.lists(st.sampled_from([*"*_-+^~%?=!@#<>&[]{}()|\"':.`\\/ \n\r\tabcprwh1;",
                                 "www.", "://", "&#64;", "{{", Z]), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_textile_loses_no_character(text: str) -> None:
    """Textile references decode back to the input: every character still shows."""
    assert html.unescape(escape_textile(text)) == _newlines(text)


@settings(max_examples=400, deadline=None)
@given(TEXT.filter(lambda t: Z not in t))
def test_commonmark_loses_no_character(text: str) -> None:
    """Backslash escapes, references and zero width spaces read back to the input."""
    assert _read_commonmark(escape_commonmark(text)) == _newlines(text)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_no_macro_and_no_tag_survives(text: str) -> None:
    """Whatever the input, "{{" (a macro to Redmine) and "<" followed by anything never
    reach the tracker unescaped, in either syntax."""
    for written in (escape_textile(text), escape_commonmark(text)):
        assert "{{" not in written
        assert re.search(r"(?<!\\)<", written) is None
