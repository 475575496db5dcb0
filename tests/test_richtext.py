"""Re:amaze HTML written in the tracker's markup (syncer/htmldoc.py, syncer/richtext.py).

Tables pin the structure each markup gets and that customer text inside every structure
is escaped exactly as a plain body is; the property test re-parses random documents
written for CommonMark with markdown-it-py and checks that only the input's own safe
links come out, never an image or raw HTML, and that every character of text is there.
Real Redmine rendering is tests/test_redmine_richtext_real.py.
"""

from __future__ import annotations

import html as htmllib
import re
from typing import Any

import pytest
from bs4 import BeautifulSoup
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from redmine_mentions import redmine_mentions

from syncer.htmldoc import parse_html, safe_url
from syncer.markup import Markup, escape, escape_commonmark, escape_textile
from syncer.render import neutralise_mentions
from syncer.richtext import Target, write

Z = "\u200b"

# (html, textile, common_mark)
STRUCTURE = [
    ("<ul><li>step 1</li><li>step 2</li></ul>", "* step 1\n* step 2", "- step 1\n- step 2"),
    ("<ul><li>a<ul><li>b</li><li>c</li></ul></li><li>d</li></ul>",
     "* a\n** b\n** c\n* d", "- a\n  - b\n  - c\n- d"),
    ("<ol><li>one</li><li>two<ul><li>sub</li></ul></li></ol>",
     "# one\n# two\n#* sub", "1. one\n2. two\n   - sub"),
    ('<p>see <a href="https://ex.example/a?b=1&amp;c=2">the docs</a> now</p>',
     'see "the docs":https://ex.example/a?b=1&c=2 now',
     "see [the docs](https://ex.example/a?b=1&c=2) now"),
    ('<a href="https://ex.example/x">x</a>after',
     '"x":https://ex.example/x after', "[x](https://ex.example/x)after"),
    ('<a href="https://ex.example/a b(c)">x</a>',
     '"x":https://ex.example/a%20b%28c%29', "[x](https://ex.example/a%20b%28c%29)"),
    ('<a href="mailto:carol@example.com">mail</a>',
     '"mail":mailto:carol@example.com', "[mail](mailto:carol@example.com)"),
    ('<a href="javascript:alert(1)">click</a> <a href="data:text/html,x">d</a>',
     "click d", "click d"),
    ("<p>run <code>make test</code> now</p>", "run <code>make test</code> now",
     "run `make test` now"),
    ("<p><code>a`b</code></p>", "<code>a`b</code>", "``a`b``"),
    ("<pre>def f():\n    return 1</pre>", "<pre>\ndef f():\n    return 1\n</pre>",
     "```\ndef f():\n    return 1\n```"),
    ("<pre>x\n```\ny</pre>", "<pre>\nx\n```\ny\n</pre>", "````\nx\n```\ny\n````"),
    ("<blockquote><p>hi</p><p>there</p></blockquote>", "> hi\n>\n> there",
     "> hi\n>\n> there"),
    ('<p>Wow!<a href="https://ex.example/">x</a></p>', 'Wow&#33;"x":https://ex.example/',
     "Wow\\![x](https://ex.example/)"),
    ("<p><b>bold</b> and <em>it</em></p>", "*bold* and _it_", "**bold** and *it*"),
    ("<p><strong> spaced </strong>x</p>", "*spaced* x", "**spaced** x"),
    ("<p><b>a <b>b</b> <i>c</i></b></p>", "*a b _c_*", "**a b *c***"),
    # Emphasis the markup would not read as such is left out, not shown as "*".
    ("<p>a<b>b</b>c</p>", "abc", "a**b**c"),
    ("<p>(<b>x</b>)</p>", "&#40;x&#41;", "(**x**)"),
    ('<p><b>"q"</b>x</p>', "&#34;q&#34;x", '"q"x'),
    ("<p><b>*</b><b>*</b> <em><b>x</b></em></p>", "*&#42;&#42;* _*x*_", "**\\*\\*** ***x***"),
    ("<p><code>a</code><b><code>b</code></b></p>", "<code>a</code>*<code>b</code>*",
     "`a`**`b`**"),
    # Runs CommonMark would pair otherwise than we meant: no emphasis at all.
    ("<em><b>*</b>*<b>*</b></em>", "_*&#42;*&#42;&#42;_", "\\*\\*\\*"),
    # Bold dropped between two code spans: one span, not "`x``y`".
    ("<p><code>x</code><b><code>y</code></b>b</p>", "<code>x</code><code>y</code>b", "`xy`b"),
    ("<ol><li></li><li>x</li></ol>", "# x", "1. x"),
    ("<p>a<br>b</p><p>c</p>", "a\nb\n\nc", "a\nb\n\nc"),
    ("<div>a</div><div>b</div>", "a\n\nb", "a\n\nb"),
    ("<p>x</p><!-- hidden --><script>alert(1)</script><style>p{}</style>", "x", "x"),
    ('<p>a <img src="http://evil.example/i.png" alt="logo"> b</p>', "a logo b", "a logo b"),
    ("<table><tr><td>a</td><td>b</td></tr></table>", "a &#124; b", "a \\| b"),
]


@pytest.mark.parametrize(("source", "textile", "common_mark"), STRUCTURE,
                         ids=[s[0][:40] for s in STRUCTURE])
def test_structure_in_each_markup(source: str, textile: str, common_mark: str) -> None:
    """Lists, links, code, quotes, emphasis and breaks come out in the markup's syntax."""
    assert write("textile", parse_html(source)) == textile
    assert write("common_mark", parse_html(source)) == common_mark


def _textile(text: str) -> str:
    """Textile's escaper, plus the characters that could pair with our own markup."""
    out = escape_textile(text)
    for c in '"!_@':
        out = out.replace(c, f"&#{ord(c)};")
    return out


HOSTILE = ["<!-- hidden", "{{collapse(x)}}", "!http://evil.example/x.png!",
           "![](http://evil.example/x.png)", '<img src="x">', "*bold* _it_", "#123",
           "user:admin", "r12", "[[Wiki]]", "www.evil.example", "&#64;", "x%x%",
           "| cell |", "`code`", '"text":http://evil.example', "[t](http://evil.example)"]
WRAPPERS = {
    "paragraph": ("<p>{}</p>", "{}", "{}"),
    "list item": ("<ul><li>{}</li></ul>", "* {}", "- {}"),
    "ordered item": ("<ol><li>{}</li></ol>", "# {}", "1. {}"),
    "nested item": ("<ul><li>a<ul><li>{}</li></ul></li></ul>", "* a\n** {}", "- a\n  - {}"),
    "quote": ("<blockquote>{}</blockquote>", "> {}", "> {}"),
    "bold": ("<p><b>{}</b></p>", "*{}*", "**{}**"),
    "link text": ('<p><a href="https://ok.example/">{}</a></p>',
                  '"{}":https://ok.example/', "[{}](https://ok.example/)"),
}


@pytest.mark.parametrize("where", list(WRAPPERS))
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_stays_escaped_in_every_structure(where: str, text: str) -> None:
    """Customer text inside any structure is escaped as the plain-body escaper does."""
    source, textile, common_mark = WRAPPERS[where]
    doc = parse_html(source.format(htmllib.escape(text)))
    assert write("textile", doc) == textile.format(_textile(text))
    assert write("common_mark", doc) == common_mark.format(escape_commonmark(text))


@pytest.mark.parametrize("code", ["{{hello_world}} <!-- x", "a </code> b", "x <pre> y"])
def test_textile_code_that_could_break_out_is_escaped_text(code: str) -> None:
    """Code whose text could close our <code>/<pre> or open a comment is written as
    escaped text instead (still readable, no longer styled)."""
    inline = parse_html(f"<p><code>{htmllib.escape(code)}</code></p>")
    block = parse_html(f"<pre>{htmllib.escape(code)}</pre>")
    if "<" in code:
        assert write("textile", inline) == _textile(code)
        assert write("textile", block) == _textile(code)
    else:
        assert write("textile", inline) == f"<code>{code}</code>"


def test_textile_lists_and_quotes_hold_no_blocks_they_cannot_hold() -> None:
    """Inside a textile list, code and quotes become item lines (no blank line ends the
    list); a quote holds lists and quotes, but its code becomes escaped lines (a <pre>
    would take the "> " markers for code)."""
    doc = parse_html("<ul><li>a<pre>x\ny</pre><blockquote>q<ul><li>i</li></ul>"
                     "</blockquote></li></ul>"
                     "<blockquote><ul><li>i</li></ul><blockquote>in</blockquote>"
                     "<pre>(c)</pre></blockquote>")
    assert write("textile", doc) == ("* a\nx\ny\nq\ni\n\n"
                                     "> * i\n>\n> > in\n>\n> &#40;c&#41;")


@pytest.mark.parametrize(("href", "safe"), [
    ("https://ex.example/p?q=1#f", "https://ex.example/p?q=1#f"),
    (" HTTP://ex.example/ ", "HTTP://ex.example/"),
    ("https://ex.example/@admin", "https://ex.example/%40admin"),
    ("https://ex.example/\"><script>", "https://ex.example/%22%3E%3Cscript%3E"),
    ("https://ex.example/é", "https://ex.example/%C3%A9"),
    ("javascript:alert(1)", None), ("JaVaScRiPt:alert(1)", None),
    ("java\nscript:alert(1)", None), ("data:text/html,x", None), ("/relative", None),
    ("", None), (None, None),
])
def test_link_targets_are_safe(href: str | None, safe: str | None) -> None:
    """Only http, https and mailto links are kept; nothing in a target can end it early,
    start markup or mention anyone."""
    assert safe_url(href) == safe


# --- property: re-parsed output holds nothing the input did not ------------------------

WORDS = st.sampled_from([*"*_-+^~%?=!@#<>&[]{}()|\"':.`\\/ ", "abc", "x1", "www.", "://",
                         "&#64;", "{{", "<!--", "-->", "@admin", "#12", "r3", "http://e.x",
                         "\n", "\n\n", "    "])
TEXT = st.lists(WORDS, min_size=1, max_size=8).map("".join)
URLS = st.sampled_from(["https://ok.example/a", "http://ok.example/b_c*d",
                        "mailto:carol@example.com", "javascript:alert(1)",
                        "https://ok.example/@x", "data:,x"])


def _nodes(depth: int) -> st.SearchStrategy[str]:
    leaf = TEXT.map(htmllib.escape)
    if depth == 0:
        return leaf
    # Joined with or without a space: emphasis right next to a word or punctuation too.
    inner = st.tuples(st.lists(_nodes(depth - 1), min_size=1, max_size=3),
                      st.sampled_from(["", " "])).map(lambda t: t[1].join(t[0]))
    return st.one_of(
        leaf,
        inner.map(lambda s: f"<p>{s}</p>"),
        inner.map(lambda s: f"<b>{s}</b>"),
        inner.map(lambda s: f"<em>{s}</em>"),
        st.tuples(URLS, TEXT.filter(str.strip)).map(lambda t: f'<a href="{htmllib.escape(t[0])}">'
                                            f"{htmllib.escape(t[1])}</a>"),
        TEXT.map(lambda s: f"<code>{htmllib.escape(s)}</code>"),
        TEXT.map(lambda s: f"<pre>{htmllib.escape(s)}</pre>"),
        inner.map(lambda s: f"<blockquote>{s}</blockquote>"),
        st.lists(inner, min_size=1, max_size=3).map(
            lambda items: "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"),
        st.lists(inner, min_size=1, max_size=3).map(
            lambda items: "<ol>" + "".join(f"<li>{i}</li>" for i in items) + "</ol>"),
        inner.map(lambda s: f"{s}<br>{s}"),
    )


_MD = MarkdownIt("commonmark", {"html": True})


def _tokens(tokens: list[Any]) -> list[Any]:
    out = []
    for t in tokens:
        out.append(t)
        out.extend(_tokens(t.children or []))
    return out


def _squeeze(text: str) -> str:
    return "".join(text.replace(Z, "").split())


@pytest.mark.filterwarnings("ignore::bs4.MarkupResemblesLocatorWarning")
@pytest.mark.parametrize("target", ["common_mark", "gfm", "glfm"])
@settings(max_examples=300, deadline=None)
@given(source=_nodes(3))
def test_commonmark_output_holds_only_the_inputs_structure(target: Target,
                                                           source: str) -> None:
    """Re-parsed by a CommonMark parser, the output (Redmine's, GitHub's or GitLab's
    Markdown) has no image and no raw HTML, links only to the input's own safe targets,
    every character of the input's text, and (with mentions neutralised as render.py
    does) no Redmine mention."""
    written = write(target, parse_html(source))
    tokens = _tokens(_MD.parse(written))
    kinds = {t.type for t in tokens}
    assert not kinds & {"image", "html_inline", "html_block"}, written
    wanted = {safe_url(htmllib.unescape(h)) for h in re.findall(r'href="([^"]*)"', source)}
    assert {t.attrs.get("href") for t in tokens if t.type == "link_open"} <= wanted
    shown = "".join(t.content for t in tokens
                    if t.type in ("text", "code_inline", "fence", "code_block"))
    assert _squeeze(shown) == _squeeze(BeautifulSoup(source, "html.parser").get_text()), (
        source, written)
    assert redmine_mentions(neutralise_mentions(written), "common_mark") == []


@pytest.mark.parametrize(("markup", "target"), [("plain", "text"), ("textile", "textile"),
                                                ("common_mark", "common_mark"), ("gfm", "gfm"),
                                                ("glfm", "glfm")])
def test_each_markup_has_a_writer(markup: Markup, target: Target) -> None:
    """Every tracker markup gets its structure; plain trackers get readable text."""
    doc = parse_html('<ul><li><a href="https://ok.example/">docs</a></li></ul>')
    expected = {"text": "- docs (https://ok.example/)",
                "textile": '* "docs":https://ok.example/',
                "common_mark": "- [docs](https://ok.example/)",
                "gfm": "- [docs](https://ok.example/)",
                "glfm": "- [docs](https://ok.example/)"}[target]
    assert write(target, doc) == expected
    assert escape(markup, "x") == "x"
