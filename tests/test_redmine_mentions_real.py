"""Mentions against a REAL Redmine 5.0 with mail on: what the engine copies into Redmine
must not make Redmine mail the user a customer happened to name.

Redmine reads mentions from the raw text it stores (lib/redmine/acts/mentionable.rb) with
an ASCII-only ``\\W`` before the ``@``, and only cuts ``<pre>`` (textile) or fenced blocks
(common_mark) out first, so ``café@login`` and ``@login`` in a code span are mentions.

The server is ``mail_redmine`` (redmine_fixtures.py): a second instance that delivers mail
as files and has issue notifications on. The mentioned user is a Reporter of the project
with Redmine's default "only my events" mail setting: a mention is the only reason it would
get mail.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from e2e_support import real_redmine_engine
from servers.redmine_server import RedmineAdmin, wait_for

from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.app import run_all_once
from syncer.sandbox import BRAND, LOGIN, REAMAZE_TOKEN, sandbox_config

if TYPE_CHECKING:
    from pathlib import Path

    from servers.redmine_server import Mailbox, RedmineServer

pytest_plugins = ["redmine_fixtures"]
pytestmark = pytest.mark.redmine

# Each is a customer message; {login} is the user it names. Each is followed by more text
# on its line: Redmine's pattern wants a space, punctuation or a line end after the login.
TRICKY = {
    "plain": "@{login} can you look?",
    "after a letter outside ASCII": "café@{login} can you look?",
    "after CJK": "日本@{login} を確認してください",
    "in a code span": "see `@{login}` please",
    "in a fenced block": "```\n@{login}\n```\nthanks",
    "after a backslash": "a\\@{login} b",
    "in brackets": "[@{login}] here",
}


def _engine_config(server: RedmineServer, project: str, formatting: str,
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
def test_engine_copies_mention_nobody_while_a_direct_mention_mails(
        mail_redmine: tuple[RedmineServer, Mailbox], formatting: str,
        tmp_path: Path) -> None:
    """Notes and a transcript description written by the engine, each holding one of the
    forms Redmine reads as a mention, queue no mail for the named user; a plain ``@login``
    written straight through the API (note and description) does, so the setup can see
    a mention when there is one."""
    server, mailbox = mail_redmine
    server.set_setting("text_formatting", formatting)
    admin = RedmineAdmin(server.url, server.admin_key)
    try:
        _check_no_mention_mail(server, mailbox, admin, formatting, tmp_path)
    finally:
        admin.close()


def _check_no_mention_mail(server: RedmineServer, mailbox: Mailbox, admin: RedmineAdmin,
                           formatting: str, tmp_path: Path) -> None:
    project = f"men-{uuid.uuid4().hex[:8]}"
    admin.create_project(project)
    target = admin.create_user(f"m.t-{uuid.uuid4().hex[:8]}")
    login, address = str(target["login"]), str(target["mail"])
    admin.add_member(project, int(target["id"]), "Reporter")

    reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN)
    # The trailing token tells the notes apart whatever escaping does to the rest.
    texts = {name: f"{form.format(login=login)} form{n}"
             for n, (name, form) in enumerate(TRICKY.items())}
    notes_slug = reamaze.add_conversation("Mentions as notes", "Hello", "c@customer.example",
                                          tags=["bug"])
    for text in texts.values():
        reamaze.add_customer_message(notes_slug, text)
    reamaze.add_conversation("Mentions in the transcript", "\n\n".join(texts.values()),
                             "d@customer.example", customer_name=f"café@{login} x",
                             tags=["transcript", f"é@{login} x"])
    engine = real_redmine_engine(_engine_config(server, project, formatting, tmp_path),
                                 server.admin_key, reamaze)
    try:
        results = run_all_once(engine)
    finally:
        engine.close()
    assert [r.ok and not r.failed for r in results] == [True, True], results

    issues = admin.http.get("/issues.json", params={"project_id": project, "status_id": "*"}
                            ).json()["issues"]
    by_subject = {i["subject"]: i["id"] for i in issues}
    notes_issue = admin.issue(by_subject["Mentions as notes"], include="journals")
    notes = {j["id"]: j["notes"] for j in notes_issue["journals"] if j["notes"]}
    named: dict[tuple[str, int], str] = {
        ("journal", jid): name for jid, note in notes.items()
        for n, name in enumerate(texts) if f" form{n}\n" in note}
    assert sorted(named.values()) == sorted(texts)
    named[("issue", by_subject["Mentions in the transcript"])] = "the transcript description"

    # Positive controls, written straight through the API: a note and a description.
    admin.put_issue(notes_issue["id"], notes=f"@{login} please look")
    control_note = admin.issue(notes_issue["id"], include="journals")["journals"][-1]["id"]
    control_issue = admin.create_issue(project, "Control", description=f"@{login} please")["id"]
    expected = {("journal", control_note), ("issue", control_issue)}
    assert wait_for(lambda: expected <= set(mailbox.sent_to(address))), (
        "a direct mention sent no mail: the setup cannot see mentions",
        mailbox.sent_to(address))
    assert wait_for(mailbox.settled), "mail jobs still running"
    leaked = set(mailbox.sent_to(address)) - expected
    assert not leaked, [named.get(x, x) for x in sorted(leaked)]
