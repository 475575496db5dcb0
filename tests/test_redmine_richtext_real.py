"""A Re:amaze HTML message (``original_body``) against a REAL Redmine 5.0, in textile and in
common_mark: the engine's copy renders with the message's own list, link, code and quote,
and with nothing the customer's text could have injected (tests/redmine_html.py parses
the issue page).
"""

from __future__ import annotations

import html
import random
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from bs4 import BeautifulSoup
from e2e_support import real_redmine_engine
from redmine_html import Block, rendered_blocks
from servers.redmine_server import RedmineAdmin

from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.app import run_all_once
from syncer.htmldoc import safe_url
from syncer.sandbox import BRAND, LOGIN, REAMAZE_TOKEN, sandbox_config

if TYPE_CHECKING:
    from pathlib import Path

    from servers.redmine_server import RedmineServer

pytest_plugins = ["redmine_fixtures"]
pytestmark = pytest.mark.redmine

HOSTILE = "<!-- {{hello_world}} !http://evil.example/i.png! #1 *b* [[Wiki]]"
DOCS = "https://docs.example/setup?step=2&x=y"
MESSAGE = (
    "<p>Hello, <b>here</b> is what I <em>tried</em>:</p>"
    f"<ul><li>step one {html.escape(HOSTILE)}</li>"
    f'<li>step two, see <a href="{html.escape(DOCS)}">the docs</a>'
    "<ul><li>nested step</li></ul></li></ul>"
    "<ol><li>first</li><li>second</li></ol>"
    "<p>I ran <code>make test --fast</code> and got:</p>"
    "<pre>Traceback (most recent call last):\n  File \"x.py\", line 1\n"
    "    {{collapse}} &lt;b&gt; #2</pre>"
    "<blockquote><p>Your earlier reply, quoted</p></blockquote>"
    '<p><a href="javascript:alert(1)">not a link</a> <img src="http://evil.example/t.png">'
    "</p><script>alert(1)</script><!-- hidden -->"
)
ALLOWED = {"p", "br", "strong", "em", "ul", "ol", "li", "a", "code", "pre", "blockquote"}


@pytest.fixture
def admin(redmine_server: RedmineServer) -> Iterator[RedmineAdmin]:
    a = RedmineAdmin(redmine_server.url, redmine_server.admin_key)
    yield a
    a.close()


def _config(server: RedmineServer, project: str, formatting: str,
            tmp_path: Path) -> dict[str, Any]:
    data = sandbox_config(f"sqlite:///{tmp_path / 'state.db'}", name="rich",
                          title_template="{subject}")
    data["trackers"]["redmine"].update(base_url=server.url, project=project,
                                       text_formatting=formatting)
    return data


def _synced_and_rendered(redmine_server: RedmineServer, admin: RedmineAdmin,
                         formatting: str, tmp_path: Path, htmls: list[str]) -> dict[str, Block]:
    """A bug conversation with one customer message per HTML source, synced by one pass
    into a new project on the real Redmine set to ``formatting``; the blocks of the issue
    page as Redmine renders it."""
    project = f"rt-{uuid.uuid4().hex[:8]}"
    admin.create_project(project)
    redmine_server.set_setting("text_formatting", formatting)
    try:
        reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN)
        slug = reamaze.add_conversation("Rich", "Opening", "eve@customer.example",
                                        tags=["bug"])
        for n, source in enumerate(htmls):  # distinct bodies: distinct message ids
            reamaze.add_customer_message(slug, f"plain fallback {n}", html=source)
        engine = real_redmine_engine(_config(redmine_server, project, formatting, tmp_path),
                                     redmine_server.admin_key, reamaze)
        try:
            results = run_all_once(engine)
        finally:
            engine.close()
        assert [r.ok and not r.failed for r in results] == [True], results
        [issue] = admin.http.get("/issues.json", params={"project_id": project,
                                                        "status_id": "*"}).json()["issues"]
        with httpx.Client(base_url=redmine_server.url, timeout=30,
                          headers={"X-Redmine-API-Key": redmine_server.admin_key}) as client:
            return rendered_blocks(client.get(f"/issues/{issue['id']}").text)
    finally:
        redmine_server.set_setting("text_formatting", "textile")


@pytest.mark.parametrize("formatting", ["textile", "common_mark"])
def test_html_message_renders_with_its_structure(redmine_server: RedmineServer,
                                                 admin: RedmineAdmin, formatting: str,
                                                 tmp_path: Path) -> None:
    """List, nested list, link, inline code, code block and quote render as such; the
    customer's hostile text inside a list item shows as text; the javascript link, the
    image, the script and the comment leave nothing behind."""
    blocks = _synced_and_rendered(redmine_server, admin, formatting, tmp_path, [MESSAGE])

    [block] = [b for k, b in blocks.items() if k != "description" and "step one" in b.text]
    tags = [tag for tag, _ in block.elements]
    assert set(tags) <= ALLOWED, tags
    for needed in ("ul", "li", "ol", "a", "code", "pre", "blockquote", "strong", "em"):
        assert needed in tags, (needed, tags)
    assert tags.count("ul") == 2  # the nested list is a list inside the item
    hrefs = [attrs.get("href") for tag, attrs in block.elements if tag == "a"]
    assert hrefs == [DOCS], hrefs
    seen = block.text.replace("\u200b", "")
    for text in (HOSTILE, "the docs", "make test --fast", "nested step", "first", "second",
                 "{{collapse}} <b> #2", "Your earlier reply, quoted", "not a link",
                 'File "x.py", line 1'):
        assert " ".join(text.split()) in seen, (text, seen)
    assert "alert" not in seen and "hidden" not in seen


_WORDS = [*"*_-+^~%?=!@#<>&[]{}()|\"':.`\\/", "abc", "x1", "www.", "://", "&#64;", "{{",
          "<!--", "-->", "#12", "r3", "http://e.example", "@x", "h1. ", "bq. "]
_URLS = ["https://ok.example/a", "http://ok.example/b_c*d", "mailto:carol@example.com",
         "javascript:alert(1)", "https://ok.example/@x", "data:,x"]


def _text(rnd: random.Random) -> str:
    words = [rnd.choice(_WORDS) for _ in range(rnd.randint(1, 5))]
    return "tq" + " ".join(words) if rnd.random() < 0.5 else " ".join(words) + "qt"


def _doc(rnd: random.Random, depth: int) -> str:
    """A random HTML fragment of the structures we write (seeded: reproducible)."""
    leaf = html.escape(_text(rnd))
    if depth == 0:
        return leaf
    # Joined with or without a space: emphasis and code right next to words too.
    kids = rnd.choice(["", " "]).join(_doc(rnd, depth - 1) for _ in range(rnd.randint(1, 3)))
    choice = rnd.randrange(10)
    if choice == 0:
        return f"<p>{kids}</p>"
    if choice == 1:
        return f"<b>{kids}</b> <em>{leaf}</em>"
    if choice == 2:
        return f'<a href="{html.escape(rnd.choice(_URLS))}">{leaf}</a> {kids}'
    if choice == 3:
        return f"<code>{leaf}</code> {kids}"
    if choice == 4:
        return f"<pre>{leaf}\n{leaf}</pre>"
    if choice == 5:
        return f"<blockquote>{kids}</blockquote>"
    if choice in (6, 7):
        tag = "ol" if choice == 6 else "ul"
        return f"<{tag}>" + "".join(f"<li>{_doc(rnd, depth - 1)}</li>"
                                    for _ in range(rnd.randint(1, 3))) + f"</{tag}>"
    if choice == 8:
        return f"{kids}<br>{leaf}"
    return kids


def _squeeze(text: str) -> str:
    return "".join(text.replace("\u200b", "").split())


def _check_fuzzed(block: Block, source: str, where: str) -> None:
    for tag, attrs in block.elements:
        assert tag in ALLOWED, (where, tag, attrs, source)
        if tag == "a":
            wanted = {safe_url(html.unescape(h))
                      for h in re.findall(r'href="([^"]*)"', source)}
            href = attrs.get("href") or ""
            # Redmine links e-mail addresses in text by itself (mailto:, class "email").
            assert href in wanted or href.startswith("mailto:"), (where, href, source)
    assert _squeeze(block.text) == _squeeze(BeautifulSoup(source, "html.parser").get_text()), (
        where, block.text, source)


@pytest.mark.parametrize("formatting", ["textile", "common_mark"])
def test_random_html_renders_only_its_own_structure(redmine_server: RedmineServer,
                                                    admin: RedmineAdmin, formatting: str,
                                                    tmp_path: Path) -> None:
    """Seeded random messages of nested lists, quotes, code, links and emphasis around
    hostile text render with no element beyond those we write, links only to their own
    safe targets, and every character of their text."""
    rnd = random.Random(9)
    sources = [f"<p>tok{n}a</p>{_doc(rnd, 3)}" for n in range(30)]
    blocks = _synced_and_rendered(redmine_server, admin, formatting, tmp_path, sources)
    for n, source in enumerate(sources):
        [block] = [b for b in blocks.values() if f"tok{n}a" in b.text.split()]
        # The engine's attribution header comes first, then a blank line: drop it.
        header = "Customer (customer) — Re:amaze message, "
        assert block.text.startswith(header), block.text
        body = Block(elements=block.elements, parts=[block.text.split(" UTC ", 1)[1]])
        _check_fuzzed(body, source, f"message {n}")
