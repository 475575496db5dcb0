"""Reverse creation against the GitHub simulator: a labelled issue opens one Re:amaze
conversation (internal only, nothing emailed), a quiet pass writes nothing, and comments
then flow both ways; an internal note still never reaches GitHub."""

from __future__ import annotations

from pathlib import Path

from e2e_support import run_pass
from github_support import REPO, STAFF, World

from syncer.reconcile_reverse import OPENING
from syncer.sandbox import LOGIN

PUBLIC, INTERNAL = 0, 1


def test_a_labelled_github_issue_gets_one_internal_conversation(tmp_path: Path) -> None:
    """Label ``customer-bug`` plus a Customer line: one conversation for that contact,
    the issue's body only in an internal note, the assignee mapped to Re:amaze staff;
    unlabelled issues get nothing; comments then go both ways and nothing is emailed."""
    w = World(f"sqlite:///{tmp_path / 'state.db'}", staff_to_user={STAFF: "dev-dana"},
              reverse={"enabled": True, "labels": ["customer-bug"],
                       "fallback_contact": "support@acme.example"})
    person = w.gh.person()
    made = person.post(f"/repos/{REPO}/issues", json={
        "title": "Invoices show the wrong currency", "labels": ["customer-bug"],
        "assignees": ["dev-dana"],
        "body": "EUR shown as USD.\n\nCustomer: gina@customer.example"})
    assert made.status_code == 201, made.text
    person.post(f"/repos/{REPO}/issues", json={"title": "Refactor", "body": "internal"})
    engine = w.engine()
    run_pass(engine)
    [conv] = w.reamaze.conversations.values()
    assert conv.author.email == "gina@customer.example"
    assert conv.assignee is not None and conv.assignee.email == STAFF
    msgs = sorted(conv.messages, key=lambda m: m.seq)
    assert msgs[0].body == OPENING and not msgs[0].notified
    details = [m for m in msgs if "EUR shown as USD." in m.body]
    assert [(m.visibility, m.author.email, m.notified) for m in details] == [
        (INTERNAL, LOGIN, False)]
    assert w.comments(1) == []  # nothing echoed back to the issue

    writes = len(w.gh.writes())
    rz_writes = len(w.reamaze.calls("POST")) + len(w.reamaze.calls("PUT"))
    run_pass(engine)
    assert len(w.gh.writes()) == writes
    assert len(w.reamaze.calls("POST")) + len(w.reamaze.calls("PUT")) == rz_writes

    w.gh.sim.clock.advance(5)
    person.post(f"/repos/{REPO}/issues/1/comments", json={"body": "Fixed in the next build."})
    w.reamaze.add_staff_message(conv.slug, "Customer says it is urgent.", email=STAFF)
    w.reamaze.add_staff_message(conv.slug, "INTERNAL-X enterprise customer", email=STAFF,
                                visibility=INTERNAL)
    run_pass(engine)
    copies = [m for m in conv.messages if "next build" in m.body]
    assert [(m.visibility, m.notified) for m in copies] == [(INTERNAL, False)]
    assert any("urgent" in body for body in w.comments(1))
    assert "INTERNAL-X" not in w.everything_on_github()
    assert len(w.reamaze.conversations) == 1
    engine.close()
