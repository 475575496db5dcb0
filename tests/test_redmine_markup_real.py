"""Customer text against a REAL Redmine 5.0's renderer, in textile and in common_mark: what
the engine writes into an issue shows the customer's characters as plain text and nothing
else — no image from another host, no macro output, no HTML comment swallowing what
follows, no element restyled.

The engine writes a transcript description (customer name, tags and channel included) and
one note per message; the issue page is read with the admin key (Redmine accepts it on the
HTML page too) and each rendered block is parsed (tests/redmine_html.py). Every entry is
wrapped in alphanumeric tokens (``tok3a … tok3z``): the text between them must be visible
and whole.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from e2e_support import real_redmine_engine
from redmine_html import Block, rendered_blocks
from servers.redmine_server import RedmineAdmin

from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.app import run_all_once
from syncer.sandbox import BRAND, LOGIN, REAMAZE_TOKEN, sandbox_config

if TYPE_CHECKING:
    from pathlib import Path

    from servers.redmine_server import RedmineServer

pytest_plugins = ["redmine_fixtures"]
pytestmark = pytest.mark.redmine

EVIL = "http://evil.example"
HOSTILE = {
    "comment opened": "Before <!-- everything after this must stay visible",
    "comment closed": "stray --> closer",
    "collapse macro": "{{collapse(Details)\nhidden inside\n}}",
    "include macro": "{{include(Wiki)}} and {{hello_world}}",
    "escaped macro": "!{{hello_world}} keeps its bang",
    "textile image": f"!{EVIL}/t.png!",
    "textile image link": f"!{EVIL}/t.png!:{EVIL}/go",
    "markdown image": f"![]({EVIL}/m.png) and ![alt]({EVIL}/n.png)",
    "raw img": f'<img src="{EVIL}/r.png"> <IMG SRC={EVIL}/s.png>',
    "script": "<script>alert(1)</script> done",
    "emphasis": "*bold* **b** _it_ __i__ -del- +ins+ ^sup^ ~sub~ ~~strike~~ ??cite??",
    "span style": "%{color:red}red% and p{color:red}. styled",
    "textile heading": "h1. Title",
    "styled paragraph": "p{color:red}. red paragraph",
    "block quote textile": "bq. quoted",
    "markdown heading": "# Heading",
    "setext heading": "Title\n=====",
    "quote": "> quoted line",
    "table": "| a | b |\n|---|---|\n| c | d |",
    "textile table": "|_. h |\n| c |",
    "code": "`inline` and\n```\nfenced\n```",
    "indented code": "para\n\n    indented four\n\n\tand a tab",
    "lists": "* one\n# two\n- three\n+ four\n1. five\n2) six",
    "rule": "---\n***\n___",
    "links": f'"text":{EVIL}/l and [text]({EVIL}/m) and <{EVIL}/a> and {EVIL}/bare',
    "www link": "www.evil.example/w.png",
    "wiki link": "[[Wiki]] and [[sandbox:Page|x]]",
    "redmine links": "#1 ##1 r1 user:admin @admin document#1 project:x commit:abc",
    "notextile": "==*raw*== and <notextile>*n*</notextile> <pre>pre</pre>",
    "entities": "&lt;b&gt; &#64; &amp; &copy; x%x% & alone",
    "abbreviation": "ABC(a title) and footnote[1]",
    "backslashes": "\\*not em\\* and a trailing \\",
    "html": '<b>b</b> <div style="color:red">d</div> <a href="http://evil.example">a</a>',
    "unicode": "naïve café 日本語 🚀 — “quotes” \u2018single\u2019 «guillemets»",
    "mail": "carol@example.com and josé@example.com",
}


def _fuzz(n: int, seed: int) -> list[str]:
    """Seeded strings of markup characters, for combinations nobody listed."""
    rnd = random.Random(seed)
    alphabet = [*"*_-+^~%?=!@#<>&[]{}()|\"':.`\\/ \n\tabcph1", "  ", "\n\n", "{{", "!["]
    return ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 24)))
            for _ in range(n)]


FUZZ = _fuzz(40, seed=8)


@pytest.fixture
def admin(redmine_server: RedmineServer) -> Iterator[RedmineAdmin]:
    a = RedmineAdmin(redmine_server.url, redmine_server.admin_key)
    yield a
    a.close()


def _tokened(n: int, text: str) -> str:
    return f"tok{n}a {text} tok{n}z"


def _visible(text: str) -> str:
    return " ".join(text.split())


def _check(block: Block, entries: list[str], names: set[str], where: str) -> None:
    """The block shows each entry whole, and holds no element the customer made."""
    for tag, attrs in block.elements:
        if tag == "a":
            href = attrs.get("href") or ""
            assert href.startswith(("mailto:", f"https://{BRAND}.reamaze.io/")), (where, attrs)
            assert set((attrs.get("class") or "").split()) <= {"email", "external"}, where
        else:
            assert tag in {"p", "br", "strong"}, (where, tag, attrs)
            assert not attrs, (where, tag, attrs)
    assert {s.replace("\u200b", "") for s in block.strong} <= names, (where, block.strong)
    seen = block.text.replace("\u200b", "")
    for entry in entries:
        assert _visible(entry) in seen, (where, entry)


def _config(server: RedmineServer, project: str, formatting: str,
            tmp_path: Path) -> dict[str, Any]:
    data = sandbox_config(f"sqlite:///{tmp_path / 'state.db'}", name="notes",
                          title_template="{subject}")
    data["trackers"]["redmine"].update(base_url=server.url, project=project,
                                       text_formatting=formatting)
    data["pairs"].append({**data["pairs"][0], "name": "transcript",
                          "match": {"tags": ["transcript"]}, "history": "transcript",
                          "visibility": {"include_customer_pii": True}})
    return data


@pytest.mark.parametrize("formatting", ["textile", "common_mark"])
def test_customer_text_renders_as_itself(redmine_server: RedmineServer, admin: RedmineAdmin,
                                         formatting: str, tmp_path: Path) -> None:
    """Hostile and random customer text, written by the engine into a transcript
    description and into notes, renders as exactly its own characters, in plain
    paragraphs, under both of Redmine's text formats."""
    project = f"mk-{uuid.uuid4().hex[:8]}"
    admin.create_project(project)
    redmine_server.set_setting("text_formatting", formatting)
    try:
        _render_and_check(redmine_server, admin, project, formatting, tmp_path)
    finally:
        redmine_server.set_setting("text_formatting", "textile")


def _render_and_check(server: RedmineServer, admin: RedmineAdmin, project: str,
                      formatting: str, tmp_path: Path) -> None:
    reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN)
    name, tag, channel = "*Eve* <!-- {{hello_world}}", "<!--tag-->", f"!{EVIL}/c.png! #1"
    reamaze.add_channel("hostile", name=channel)
    transcript = [_tokened(n, t) for n, t in enumerate([*HOSTILE.values(), *FUZZ])]
    slug = reamaze.add_conversation("Transcript", transcript[0], "eve@customer.example",
                                    customer_name=name, category="hostile",
                                    tags=["transcript", tag])
    for text in transcript[1:]:
        reamaze.add_customer_message(slug, text)
    notes = [_tokened(100 + n, t) for n, t in enumerate(HOSTILE.values())]
    slug = reamaze.add_conversation("Notes", "Opening", "eve@customer.example",
                                    customer_name=name, tags=["bug"])
    for text in notes:
        reamaze.add_customer_message(slug, text)
    engine = real_redmine_engine(_config(server, project, formatting, tmp_path),
                                 server.admin_key, reamaze)
    try:
        results = run_all_once(engine)
    finally:
        engine.close()
    assert [r.ok and not r.failed for r in results] == [True, True], results

    issues = admin.http.get("/issues.json", params={"project_id": project, "status_id": "*"}
                            ).json()["issues"]
    ids = {i["subject"]: i["id"] for i in issues}
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"X-Redmine-API-Key": server.admin_key}) as html:
        pages = {s: rendered_blocks(html.get(f"/issues/{ids[s]}").text)
                 for s in ("Transcript", "Notes")}
    names = {"Customer", name}

    described = pages["Transcript"]["description"]
    _check(described, [f"Channel: {channel}", f"Customer: {name} <eve@customer.example>",
                       f"Tags: transcript, {tag}", *transcript], names, "description")
    assert "reamaze-sync" not in described.text

    blocks = {k: b for k, b in pages["Notes"].items() if k != "description"}
    for n, entry in enumerate(notes):
        [block] = [b for b in blocks.values() if f"tok{100 + n}a" in b.text]
        _check(block, [entry], names, list(HOSTILE)[n])
