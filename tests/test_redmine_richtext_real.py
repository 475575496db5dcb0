"""A Re:amaze HTML message (``original_body``) against a REAL Redmine 5.0, in textile and in
common_mark: the engine's copy renders with the message's own list, link, code and quote,
and with nothing the customer's text could have injected (tests/redmine_html.py parses
the issue page).
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from e2e_support import real_redmine_engine
from redmine_html import rendered_blocks
from servers.redmine_server import RedmineAdmin

from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.app import run_all_once
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


@pytest.mark.parametrize("formatting", ["textile", "common_mark"])
def test_html_message_renders_with_its_structure(redmine_server: RedmineServer,
                                                 admin: RedmineAdmin, formatting: str,
                                                 tmp_path: Path) -> None:
    """List, nested list, link, inline code, code block and quote render as such; the
    customer's hostile text inside a list item shows as text; the javascript link, the
    image, the script and the comment leave nothing behind."""
    project = f"rt-{uuid.uuid4().hex[:8]}"
    admin.create_project(project)
    redmine_server.set_setting("text_formatting", formatting)
    try:
        reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN)
        slug = reamaze.add_conversation("Rich", "Opening", "eve@customer.example",
                                        tags=["bug"])
        reamaze.add_customer_message(slug, "plain fallback", html=MESSAGE)
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
            blocks = rendered_blocks(client.get(f"/issues/{issue['id']}").text)
    finally:
        redmine_server.set_setting("text_formatting", "textile")

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
